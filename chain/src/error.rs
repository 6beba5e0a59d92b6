//! The crate's one error type. Messages name what was expected; none of them ever
//! contains secret key material.

/// Anything that can go wrong parsing, decoding, signing or verifying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// BCS bytes that do not decode as the expected type (truncated, garbage,
    /// trailing bytes, or a value its type rejects).
    #[error("malformed BCS: {0}")]
    Bcs(#[from] bcs::Error),
    /// A SomaTensor whose dtype, byte length or shape is inconsistent.
    #[error("invalid tensor: {0}")]
    Tensor(String),
    /// An address, object id or digest string in none of the accepted forms.
    #[error("invalid {what}: expected {expected}")]
    Parse {
        what: &'static str,
        expected: &'static str,
    },
    /// A secret key in none of the accepted forms. Deliberately carries no detail
    /// from the input.
    #[error(
        "invalid secret key: expected 32 bytes as 64 hex digits (optional 0x), \
         a Bech32 `somaprivkey1…` string, or a 12/24-word BIP-39 mnemonic"
    )]
    SecretKey,
    /// A manifest URL that `url::Url` does not parse.
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Rng(String),
    /// A protobuf message field that is absent, or present with a value that does
    /// not convert to the protocol's type (§2.0: the server rejects these).
    #[error("invalid proto field `{field}`: {reason}")]
    Proto { field: String, reason: String },
    /// A signature the server would reject.
    #[error("invalid signature: {0}")]
    Signature(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
