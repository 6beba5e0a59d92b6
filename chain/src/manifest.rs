//! Manifests (§3.4): where weights or data live, with their Blake2b-256 checksum
//! and size, and the canonical URL form the server signs (§2.7).
//!
//! The server rebuilds the signed BCS from the proto with `url::Url::parse(..)`
//! serialization, so a client must sign that same canonical string or the
//! signature will not verify; [`CanonicalUrl`] holds only that form.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::base::Checksum;
use crate::error::{Error, Result};

/// A URL in `url::Url` serialization: lowercase host, default port removed, `/`
/// path added, dot-segments resolved. BCS: a String.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CanonicalUrl(String);

impl CanonicalUrl {
    pub fn parse(url: &str) -> Result<Self> {
        url::Url::parse(url)
            .map(|u| Self(u.into()))
            .map_err(|e| Error::Url {
                url: url.to_owned(),
                reason: e.to_string(),
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CanonicalUrl {
    type Error = Error;
    fn try_from(url: String) -> Result<Self> {
        Self::parse(&url)
    }
}

impl From<CanonicalUrl> for String {
    fn from(url: CanonicalUrl) -> String {
        url.0
    }
}

impl fmt::Display for CanonicalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CanonicalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CanonicalUrl({:?})", self.0)
    }
}

/// `enum Manifest { V1(ManifestV1) }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Manifest {
    V1(ManifestV1),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestV1 {
    pub url: CanonicalUrl,
    pub metadata: Metadata,
}

/// `enum Metadata { V1(MetadataV1) }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Metadata {
    V1(MetadataV1),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataV1 {
    /// Blake2b-256 of the bytes at the URL (the ciphertext, for weights).
    pub checksum: Checksum,
    /// Their length in bytes.
    pub size: u64,
}

/// The data manifest of a SubmitData: a struct wrapper, no extra bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionManifest {
    pub manifest: Manifest,
}

impl Manifest {
    /// A V1 manifest; the URL is canonicalised.
    pub fn new(url: &str, checksum: Checksum, size: u64) -> Result<Self> {
        Ok(Self::V1(ManifestV1 {
            url: CanonicalUrl::parse(url)?,
            metadata: Metadata::V1(MetadataV1 { checksum, size }),
        }))
    }

    /// The manifest of `bytes` published at `url`: checksum and size computed.
    pub fn for_bytes(url: &str, bytes: &[u8]) -> Result<Self> {
        Self::new(url, Checksum::of(bytes), bytes.len() as u64)
    }

    pub fn url(&self) -> &CanonicalUrl {
        match self {
            Self::V1(m) => &m.url,
        }
    }

    pub fn checksum(&self) -> Checksum {
        match self {
            Self::V1(ManifestV1 {
                metadata: Metadata::V1(m),
                ..
            }) => m.checksum,
        }
    }

    pub fn size(&self) -> u64 {
        match self {
            Self::V1(ManifestV1 {
                metadata: Metadata::V1(m),
                ..
            }) => m.size,
        }
    }
}
