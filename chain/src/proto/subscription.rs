//! SubscriptionService messages (§2.9): the checkpoint stream the SDK waits on
//! for finality.
//!
//! `CheckpointSummary` holds the fields §2.9 selects; messages it names without
//! fields are carried as their encoded bytes.

use super::common::{FieldMask, Timestamp};
use super::execution::ExecutedTransaction;
use super::ledger::{ObjectSet, ValidatorCommittee};

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SubscribeCheckpointsRequest {
    /// The SDK sends `transactions.digest,sequence_number`.
    #[prost(message, optional, tag = "1")]
    pub read_mask: Option<FieldMask>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SubscribeCheckpointsResponse {
    /// The checkpoint sequence number.
    #[prost(uint64, optional, tag = "1")]
    pub cursor: Option<u64>,
    #[prost(message, optional, tag = "2")]
    pub checkpoint: Option<Checkpoint>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Checkpoint {
    #[prost(uint64, optional, tag = "1")]
    pub sequence_number: Option<u64>,
    #[prost(string, optional, tag = "2")]
    pub digest: Option<String>,
    #[prost(message, optional, tag = "3")]
    pub summary: Option<CheckpointSummary>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub signature: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub contents: Option<Vec<u8>>,
    /// With the SDK's mask only `digest` (Base58) is set.
    #[prost(message, repeated, tag = "6")]
    pub transactions: Vec<ExecutedTransaction>,
    #[prost(message, optional, tag = "7")]
    pub objects: Option<ObjectSet>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CheckpointSummary {
    #[prost(string, optional, tag = "1")]
    pub digest: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub epoch: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub sequence_number: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub total_network_transactions: Option<u64>,
    #[prost(string, optional, tag = "5")]
    pub content_digest: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub previous_digest: Option<String>,
    #[prost(bytes = "vec", optional, tag = "7")]
    pub epoch_rolling_transaction_fees: Option<Vec<u8>>,
    #[prost(message, optional, tag = "8")]
    pub timestamp: Option<Timestamp>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub commitments: Vec<Vec<u8>>,
    #[prost(message, optional, tag = "10")]
    pub end_of_epoch_data: Option<EndOfEpochData>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EndOfEpochData {
    #[prost(message, optional, tag = "1")]
    pub next_epoch_validator_committee: Option<ValidatorCommittee>,
    #[prost(uint64, optional, tag = "4")]
    pub next_epoch_protocol_version: Option<u64>,
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub epoch_commitments: Vec<Vec<u8>>,
}
