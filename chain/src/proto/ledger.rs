//! LedgerService messages (§2.1, §2.2, §2.4): service info, epochs and protocol
//! config, objects and owners.

use std::collections::BTreeMap;

use super::common::{FieldMask, Timestamp};
use super::system_state::SystemState;

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetServiceInfoRequest {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetServiceInfoResponse {
    /// Genesis checkpoint digest, Base58.
    #[prost(string, optional, tag = "1")]
    pub chain_id: Option<String>,
    /// `testnet` or `localnet`.
    #[prost(string, optional, tag = "2")]
    pub chain: Option<String>,
    #[prost(uint64, optional, tag = "3")]
    pub epoch: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub checkpoint_height: Option<u64>,
    #[prost(message, optional, tag = "5")]
    pub timestamp: Option<Timestamp>,
    #[prost(uint64, optional, tag = "6")]
    pub lowest_available_checkpoint: Option<u64>,
    #[prost(uint64, optional, tag = "7")]
    pub lowest_available_checkpoint_objects: Option<u64>,
    /// e.g. `soma-node/0.1.21`.
    #[prost(string, optional, tag = "8")]
    pub server: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetEpochRequest {
    /// Absent: the current epoch.
    #[prost(uint64, optional, tag = "1")]
    pub epoch: Option<u64>,
    #[prost(message, optional, tag = "2")]
    pub read_mask: Option<FieldMask>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetEpochResponse {
    #[prost(message, optional, tag = "1")]
    pub epoch: Option<Epoch>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Epoch {
    #[prost(uint64, optional, tag = "1")]
    pub epoch: Option<u64>,
    #[prost(message, optional, tag = "2")]
    pub committee: Option<ValidatorCommittee>,
    #[prost(message, optional, tag = "3")]
    pub system_state: Option<SystemState>,
    #[prost(uint64, optional, tag = "4")]
    pub first_checkpoint: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub last_checkpoint: Option<u64>,
    #[prost(message, optional, tag = "6")]
    pub start: Option<Timestamp>,
    #[prost(message, optional, tag = "7")]
    pub end: Option<Timestamp>,
    #[prost(message, optional, tag = "8")]
    pub protocol_config: Option<ProtocolConfig>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ValidatorCommittee {
    #[prost(uint64, optional, tag = "1")]
    pub epoch: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub members: Vec<ValidatorCommitteeMember>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ValidatorCommitteeMember {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub authority_key: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "2")]
    pub weight: Option<u64>,
    /// A message §2.2 does not describe, kept as its encoded bytes.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub network_metadata: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ProtocolConfig {
    #[prost(uint64, optional, tag = "1")]
    pub protocol_version: Option<u64>,
    #[prost(btree_map = "string, bool", tag = "2")]
    pub feature_flags: BTreeMap<String, bool>,
    /// Every protocol constant by field name, as a decimal string.
    #[prost(btree_map = "string, string", tag = "3")]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetObjectRequest {
    #[prost(string, optional, tag = "1")]
    pub object_id: Option<String>,
    /// Absent: the latest version.
    #[prost(uint64, optional, tag = "2")]
    pub version: Option<u64>,
    #[prost(message, optional, tag = "3")]
    pub read_mask: Option<FieldMask>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetObjectResponse {
    #[prost(message, optional, tag = "1")]
    pub object: Option<Object>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Object {
    /// 64 hex digits, no `0x`.
    #[prost(string, optional, tag = "1")]
    pub object_id: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub version: Option<u64>,
    /// Base58 ObjectDigest (the SDK ignores it and recomputes it).
    #[prost(string, optional, tag = "3")]
    pub digest: Option<String>,
    #[prost(message, optional, tag = "4")]
    pub owner: Option<Owner>,
    /// `SystemState`, `Coin`, `StakedSoma` or `Target`.
    #[prost(string, optional, tag = "5")]
    pub object_type: Option<String>,
    /// BCS of the struct without the 32-byte id prefix.
    #[prost(bytes = "vec", optional, tag = "6")]
    pub contents: Option<Vec<u8>>,
    /// Base58 transaction digest.
    #[prost(string, optional, tag = "7")]
    pub previous_transaction: Option<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Owner {
    #[prost(enumeration = "OwnerKind", optional, tag = "1")]
    pub kind: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub address: Option<String>,
    /// The initial shared version, when SHARED.
    #[prost(uint64, optional, tag = "3")]
    pub version: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum OwnerKind {
    Unknown = 0,
    Address = 1,
    Shared = 2,
    Immutable = 3,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ObjectSet {
    #[prost(message, repeated, tag = "1")]
    pub objects: Vec<Object>,
}
