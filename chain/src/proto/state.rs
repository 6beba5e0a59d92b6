//! StateService messages (§2.5, §2.6): owned objects, balances and targets.

use super::common::FieldMask;
use super::ledger::Object;

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListOwnedObjectsRequest {
    #[prost(string, optional, tag = "1")]
    pub owner: Option<String>,
    /// Default 50, clamped to 1..1000.
    #[prost(uint32, optional, tag = "2")]
    pub page_size: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub page_token: Option<Vec<u8>>,
    #[prost(message, optional, tag = "4")]
    pub read_mask: Option<FieldMask>,
    #[prost(string, optional, tag = "5")]
    pub object_type: Option<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListOwnedObjectsResponse {
    #[prost(message, repeated, tag = "1")]
    pub objects: Vec<Object>,
    /// Absent on the last page.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub next_page_token: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetBalanceRequest {
    #[prost(string, optional, tag = "1")]
    pub owner: Option<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetBalanceResponse {
    /// Sum of Coin balances, 0 if none.
    #[prost(uint64, optional, tag = "1")]
    pub balance: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListTargetsRequest {
    /// open, expired, filled, claimable or claimed (case-insensitive).
    #[prost(string, optional, tag = "1")]
    pub status_filter: Option<String>,
    /// Matches `generation_epoch`.
    #[prost(uint64, optional, tag = "2")]
    pub epoch_filter: Option<u64>,
    /// Default 100, clamped to 1..1000.
    #[prost(uint32, optional, tag = "3")]
    pub page_size: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub page_token: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    pub read_mask: Option<FieldMask>,
    #[prost(string, optional, tag = "6")]
    pub submitter_filter: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListTargetsResponse {
    #[prost(message, repeated, tag = "1")]
    pub targets: Vec<Target>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub next_page_token: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GetTargetRequest {
    #[prost(string, optional, tag = "1")]
    pub target_id: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub read_mask: Option<FieldMask>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetTargetResponse {
    #[prost(message, optional, tag = "1")]
    pub target: Option<Target>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Target {
    /// `0x` + hex with leading zeros stripped.
    #[prost(string, optional, tag = "1")]
    pub id: Option<String>,
    #[prost(float, repeated, tag = "2")]
    pub embedding: Vec<f32>,
    /// KNN-selected models in selection order, `0x`-trimmed hex.
    #[prost(string, repeated, tag = "3")]
    pub model_ids: Vec<String>,
    #[prost(float, optional, tag = "4")]
    pub distance_threshold: Option<f32>,
    #[prost(uint64, optional, tag = "5")]
    pub reward_pool: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    pub generation_epoch: Option<u64>,
    #[prost(string, optional, tag = "7")]
    pub status: Option<String>,
    #[prost(uint64, optional, tag = "8")]
    pub fill_epoch: Option<u64>,
    #[prost(string, optional, tag = "9")]
    pub submitter: Option<String>,
    #[prost(string, optional, tag = "10")]
    pub winning_model_id: Option<String>,
    #[prost(string, optional, tag = "11")]
    pub winning_model_owner: Option<String>,
    #[prost(uint64, optional, tag = "12")]
    pub bond_amount: Option<u64>,
    #[prost(string, optional, tag = "13")]
    pub data_url: Option<String>,
}
