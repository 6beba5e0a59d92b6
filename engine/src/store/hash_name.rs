//! The names the store gives objects and cache entries: 64 lowercase hex digits.
//!
//! Everything read back from the store (cache entries, run records, directory names)
//! is parsed into [`ContentHash`] before it is joined onto a path, so a tampered entry
//! cannot name `../../elsewhere` or an empty, short or non-ASCII string.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash(String);

impl ContentHash {
    pub fn parse(text: &str) -> Result<ContentHash, String> {
        let ok = text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(ContentHash(text.to_string()))
        } else {
            let shown: String = text.chars().take(80).collect();
            Err(format!(
                "`{}` is not a content hash (expected 64 lowercase hex digits)",
                shown.escape_debug()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The two-digit shard directory the object lives in.
    pub fn shard(&self) -> &str {
        &self.0[..2]
    }

    /// The first 12 digits, for messages.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl TryFrom<String> for ContentHash {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ContentHash::parse(&s)
    }
}

impl From<ContentHash> for String {
    fn from(h: ContentHash) -> String {
        h.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for ContentHash {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::ContentHash;

    #[test]
    fn only_64_lowercase_hex_digits_parse() {
        assert!(ContentHash::parse(&"a".repeat(64)).is_ok());
        for bad in [
            "",
            "ab",
            &"A".repeat(64),
            &"g".repeat(64),
            &"a".repeat(65),
            "../../../../../../tmp/x",
            &format!("{}é", "a".repeat(62)),
        ] {
            assert!(ContentHash::parse(bad).is_err(), "{bad:?} parsed");
        }
        let err = serde_json::from_str::<ContentHash>("\"ab\"").unwrap_err();
        assert!(err.to_string().contains("64 lowercase hex digits"), "{err}");
    }
}
