//! Messages shared by several services: well-known Timestamp and FieldMask,
//! object references, and the manifest messages (§2.3, §2.4).

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.protobuf.FieldMask`: the `read_mask` of requests, e.g. `effects,objects`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FieldMask {
    #[prost(string, repeated, tag = "1")]
    pub paths: Vec<String>,
}

impl FieldMask {
    /// A mask from comma-separated paths.
    pub fn from_paths(paths: &str) -> Self {
        Self {
            paths: paths.split(',').map(str::to_owned).collect(),
        }
    }
}

/// Digests are Base58 strings.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ObjectReference {
    #[prost(string, optional, tag = "1")]
    pub object_id: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub version: Option<u64>,
    #[prost(string, optional, tag = "3")]
    pub digest: Option<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Manifest {
    #[prost(oneof = "manifest::Version", tags = "1")]
    pub version: Option<manifest::Version>,
}

pub mod manifest {
    #[derive(Clone, PartialEq, Eq, prost::Oneof)]
    pub enum Version {
        #[prost(message, tag = "1")]
        V1(super::ManifestV1),
    }
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ManifestV1 {
    #[prost(string, optional, tag = "1")]
    pub url: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<Metadata>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Metadata {
    #[prost(oneof = "metadata::Version", tags = "1")]
    pub version: Option<metadata::Version>,
}

pub mod metadata {
    #[derive(Clone, PartialEq, Eq, prost::Oneof)]
    pub enum Version {
        #[prost(message, tag = "1")]
        V1(super::MetadataV1),
    }
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MetadataV1 {
    /// Blake2b-256, 32 raw bytes.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub checksum: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "2")]
    pub size: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SubmissionManifest {
    #[prost(message, optional, tag = "1")]
    pub manifest: Option<Manifest>,
}
