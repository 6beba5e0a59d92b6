//! The client's errors, and the chain's execution error kinds (§2.8) in words.
//!
//! Every error that comes from the network names the URL it came from, so a
//! user can tell a down fullnode from a down faucet; a failed transaction says
//! why in a sentence, not as an enum number.

use tonic::Code;

use crate::proto::{execution_error::ErrorDetails, ExecutionError, ExecutionErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A URL that does not parse as an http(s) endpoint.
    #[error("invalid endpoint URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// Transient failures (unreachable, timed out) that outlived the retries.
    #[error("{url} is unreachable ({method}, {attempts} attempts): {message}")]
    Unreachable {
        url: String,
        method: &'static str,
        attempts: u32,
        message: String,
    },
    /// The server answered with a non-transient error status.
    #[error("{url} refused {method} ({code:?}): {message}")]
    Rpc {
        url: String,
        method: &'static str,
        code: Code,
        message: String,
    },
    /// The server's answer does not make sense (missing or malformed fields).
    #[error("{url} sent a malformed {method} response: {source}")]
    Malformed {
        url: String,
        method: &'static str,
        source: crate::Error,
    },
    /// The transaction was executed and failed; fees were charged.
    #[error("transaction {digest} failed: {reason}")]
    Failed {
        digest: String,
        /// The chain's error kind.
        kind: ExecutionErrorKind,
        reason: String,
    },
    /// The transaction executed, but its checkpoint did not arrive in time.
    #[error("transaction {digest} executed but its checkpoint did not arrive within {seconds} s")]
    FinalityTimeout { digest: String, seconds: u64 },
    /// The server speaks a protocol version this client does not; nothing was signed.
    #[error(
        "{url} runs SOMA protocol version {version}; this soma-flow speaks versions {}–{} \
         and signs nothing for another (a newer soma-flow may speak it)",
        supported.start(), supported.end()
    )]
    UnsupportedProtocol {
        url: String,
        version: u64,
        supported: std::ops::RangeInclusive<u64>,
    },
    /// The account has no coin able to pay.
    #[error("address {address} has no coin with at least {needed} shannons (ask the faucet)")]
    NoGas { address: String, needed: u64 },
    /// A client-side check failed before anything was sent.
    #[error("{0}")]
    Invalid(String),
    /// Local encoding or signing failed.
    #[error(transparent)]
    Chain(#[from] crate::Error),
}

pub type ClientResult<T> = Result<T, ClientError>;

impl ClientError {
    /// The server answered NOT_FOUND: an object or target the call names is gone.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ClientError::Rpc {
                code: Code::NotFound,
                ..
            }
        )
    }
}

/// gRPC codes worth retrying with backoff.
pub fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted
    )
}

/// Whether a rejection is an owned-coin lock conflict the SDK retries (§9.6).
pub fn is_lock_conflict(message: &str) -> bool {
    [
        "already locked",
        "ObjectLockConflict",
        "not available for consumption",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// The coin id in `Object (0x…, …) already locked …` or `… is not available
/// for consumption` (§1.4, §9.6): the coin to avoid on the next attempt.
pub fn locked_object(message: &str) -> Option<crate::ObjectID> {
    let start = message.find("Object (")? + "Object (".len();
    let rest = &message[start..];
    rest[..rest.find(',')?].trim().parse().ok()
}

/// A failed execution in words: the sentence for its kind, then the details.
pub fn describe_failure(error: &ExecutionError) -> String {
    let kind = error
        .kind
        .and_then(|k| ExecutionErrorKind::try_from(k).ok())
        .unwrap_or(ExecutionErrorKind::Unknown);
    let mut text = sentence(kind).to_owned();
    match &error.error_details {
        Some(ErrorDetails::ObjectId(id)) => text.push_str(&format!(" (object {id})")),
        Some(ErrorDetails::OtherError(other)) => text.push_str(&format!(" ({other})")),
        None => {}
    }
    if kind == ExecutionErrorKind::Unknown {
        if let Some(description) = &error.description {
            text.push_str(&format!(": {description}"));
        }
    }
    text
}

/// One sentence per error kind a model owner or data submitter can meet.
pub fn sentence(kind: ExecutionErrorKind) -> &'static str {
    use ExecutionErrorKind as K;
    match kind {
        K::InsufficientGas => "the gas coin cannot pay the transaction fees",
        K::InvalidOwnership => "an input object is not owned by the sender",
        K::ObjectNotFound => "an input object does not exist",
        K::InvalidObjectType => "an input object has the wrong type (a coin was expected)",
        K::InvalidArguments => "the transaction's arguments are invalid",
        K::ModelNotFound => "the model does not exist",
        K::NotModelOwner => "the sender is not the model's owner",
        K::ModelNotActive => "the model is not active",
        K::InsufficientCoinBalance => "the coin's balance is too low for this amount plus fees",
        K::ModelNotPending => "the model has no pending commit",
        K::ModelAlreadyInactive => "the model is inactive",
        K::ModelRevealEpochMismatch => {
            "wrong epoch: a commit can only be revealed in the epoch right after it"
        }
        K::ModelEmbeddingCommitmentMismatch => {
            "commitment mismatch: the embedding differs from the committed one"
        }
        K::ModelDecryptionKeyCommitmentMismatch => {
            "commitment mismatch: the decryption key differs from the committed one"
        }
        K::ModelNoPendingUpdate => "the active model has no pending update to reveal",
        K::ModelArchitectureVersionMismatch => {
            "the architecture version is not the one the chain accepts"
        }
        K::ModelCommissionRateTooHigh => "the commission rate is above 10000 bps",
        K::ModelMinStakeNotMet => "stake too low: below the chain's minimum model stake",
        K::NoActiveModels => "there are no active models",
        K::TargetNotFound => "the target does not exist",
        K::TargetNotOpen => "the target is not open",
        K::TargetExpired => "the target expired with its generation epoch",
        K::TargetNotFilled => "the target was not filled and is not yet claimable",
        K::ChallengeWindowOpen => "the target's rewards are not claimable yet",
        K::TargetAlreadyClaimed => "the target's rewards were already claimed",
        K::ModelNotInTarget => "the model is not one of the target's models",
        K::EmbeddingDimensionMismatch => "the embedding has the wrong dimension",
        K::DistanceExceedsThreshold => "the distance is above the target's threshold",
        K::InsufficientBond => "the bond coin cannot cover the submission bond",
        K::DataExceedsMaxSize => "the data is larger than the chain allows",
        K::OtherError => "the chain rejected the operation",
        _ => "the transaction failed",
    }
}
