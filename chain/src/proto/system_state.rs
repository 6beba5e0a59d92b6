//! `SystemState` and what it nests (§2.3): parameters, validators, staking
//! pools, the emission pool, the model registry and the target state.
//!
//! Validator field types are not given by §2.3; they are inferred from the field
//! names (keys and proofs `bytes`, addresses `string`, amounts `uint64`).

use std::collections::BTreeMap;

use super::common::Manifest;

#[derive(Clone, PartialEq, prost::Message)]
pub struct SystemState {
    #[prost(uint64, optional, tag = "1")]
    pub epoch: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub epoch_start_timestamp_ms: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub protocol_version: Option<u64>,
    #[prost(message, optional, tag = "4")]
    pub parameters: Option<SystemParameters>,
    #[prost(message, optional, tag = "5")]
    pub validators: Option<ValidatorSet>,
    #[prost(btree_map = "string, message", tag = "6")]
    pub validator_report_records: BTreeMap<String, ReporterSet>,
    #[prost(message, optional, tag = "7")]
    pub emission_pool: Option<EmissionPool>,
    #[prost(message, optional, tag = "11")]
    pub model_registry: Option<ModelRegistry>,
    #[prost(message, optional, tag = "12")]
    pub target_state: Option<TargetState>,
    /// Always empty.
    #[prost(btree_map = "string, message", tag = "13")]
    pub submission_report_records: BTreeMap<String, ReporterSet>,
    #[prost(bool, optional, tag = "14")]
    pub safe_mode: Option<bool>,
    #[prost(uint64, optional, tag = "15")]
    pub safe_mode_accumulated_fees: Option<u64>,
    #[prost(uint64, optional, tag = "16")]
    pub safe_mode_accumulated_emissions: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SystemParameters {
    #[prost(uint64, optional, tag = "1")]
    pub epoch_duration_ms: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub validator_reward_allocation_bps: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub model_min_stake: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub model_architecture_version: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub model_reveal_slash_rate_bps: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    pub model_tally_slash_rate_bps: Option<u64>,
    #[prost(uint64, optional, tag = "7")]
    pub target_epoch_fee_collection: Option<u64>,
    #[prost(uint64, optional, tag = "8")]
    pub base_fee: Option<u64>,
    #[prost(uint64, optional, tag = "9")]
    pub write_object_fee: Option<u64>,
    #[prost(uint64, optional, tag = "10")]
    pub value_fee_bps: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub min_value_fee_bps: Option<u64>,
    #[prost(uint64, optional, tag = "12")]
    pub max_value_fee_bps: Option<u64>,
    #[prost(uint64, optional, tag = "13")]
    pub fee_adjustment_rate_bps: Option<u64>,
    #[prost(uint64, optional, tag = "14")]
    pub target_models_per_target: Option<u64>,
    #[prost(uint64, optional, tag = "15")]
    pub target_embedding_dim: Option<u64>,
    #[prost(float, optional, tag = "16")]
    pub target_initial_distance_threshold: Option<f32>,
    #[prost(uint64, optional, tag = "17")]
    pub target_reward_allocation_bps: Option<u64>,
    #[prost(uint64, optional, tag = "18")]
    pub target_hits_per_epoch: Option<u64>,
    #[prost(uint64, optional, tag = "19")]
    pub target_hits_ema_decay_bps: Option<u64>,
    #[prost(uint64, optional, tag = "20")]
    pub target_difficulty_adjustment_rate_bps: Option<u64>,
    #[prost(float, optional, tag = "21")]
    pub target_max_distance_threshold: Option<f32>,
    #[prost(float, optional, tag = "22")]
    pub target_min_distance_threshold: Option<f32>,
    #[prost(uint64, optional, tag = "23")]
    pub target_initial_targets_per_epoch: Option<u64>,
    #[prost(uint64, optional, tag = "24")]
    pub target_submitter_reward_share_bps: Option<u64>,
    #[prost(uint64, optional, tag = "25")]
    pub target_model_reward_share_bps: Option<u64>,
    #[prost(uint64, optional, tag = "26")]
    pub target_claimer_incentive_bps: Option<u64>,
    #[prost(uint64, optional, tag = "27")]
    pub submission_bond_per_byte: Option<u64>,
    /// Deprecated, never set.
    #[prost(uint64, optional, tag = "28")]
    pub challenger_bond_per_byte: Option<u64>,
    #[prost(uint64, optional, tag = "30")]
    pub max_submission_data_size: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TargetState {
    #[prost(float, optional, tag = "1")]
    pub distance_threshold: Option<f32>,
    #[prost(uint64, optional, tag = "2")]
    pub targets_generated_this_epoch: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub hits_this_epoch: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub hits_ema: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub reward_per_target: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReporterSet {
    #[prost(string, repeated, tag = "1")]
    pub reporters: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EmissionPool {
    #[prost(uint64, optional, tag = "1")]
    pub balance: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub emission_per_epoch: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ValidatorSet {
    #[prost(uint64, optional, tag = "1")]
    pub total_stake: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub validators: Vec<Validator>,
    #[prost(message, repeated, tag = "3")]
    pub pending_validators: Vec<Validator>,
    #[prost(uint32, repeated, tag = "4")]
    pub pending_removals: Vec<u32>,
    #[prost(btree_map = "string, string", tag = "5")]
    pub staking_pool_mappings: BTreeMap<String, String>,
    #[prost(btree_map = "string, message", tag = "6")]
    pub inactive_validators: BTreeMap<String, Validator>,
    #[prost(btree_map = "string, uint64", tag = "7")]
    pub at_risk_validators: BTreeMap<String, u64>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Validator {
    #[prost(string, optional, tag = "1")]
    pub soma_address: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub protocol_pubkey: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub network_pubkey: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub worker_pubkey: Option<Vec<u8>>,
    #[prost(string, optional, tag = "5")]
    pub net_address: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub p2p_address: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub primary_address: Option<String>,
    #[prost(uint64, optional, tag = "8")]
    pub voting_power: Option<u64>,
    #[prost(uint64, optional, tag = "9")]
    pub commission_rate: Option<u64>,
    #[prost(uint64, optional, tag = "10")]
    pub next_epoch_stake: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub next_epoch_commission_rate: Option<u64>,
    #[prost(message, optional, tag = "12")]
    pub staking_pool: Option<StakingPool>,
    #[prost(bytes = "vec", optional, tag = "13")]
    pub next_epoch_protocol_pubkey: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "14")]
    pub next_epoch_network_pubkey: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "15")]
    pub next_epoch_worker_pubkey: Option<Vec<u8>>,
    #[prost(string, optional, tag = "16")]
    pub next_epoch_net_address: Option<String>,
    #[prost(string, optional, tag = "17")]
    pub next_epoch_p2p_address: Option<String>,
    #[prost(string, optional, tag = "18")]
    pub next_epoch_primary_address: Option<String>,
    #[prost(string, optional, tag = "19")]
    pub proxy_address: Option<String>,
    #[prost(string, optional, tag = "20")]
    pub next_epoch_proxy_address: Option<String>,
    #[prost(bytes = "vec", optional, tag = "21")]
    pub proof_of_possession: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "22")]
    pub next_epoch_proof_of_possession: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StakingPool {
    #[prost(string, optional, tag = "1")]
    pub id: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub activation_epoch: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub deactivation_epoch: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub soma_balance: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub rewards_pool: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    pub pool_token_balance: Option<u64>,
    #[prost(btree_map = "uint64, message", tag = "7")]
    pub exchange_rates: BTreeMap<u64, PoolTokenExchangeRate>,
    #[prost(uint64, optional, tag = "8")]
    pub pending_stake: Option<u64>,
    #[prost(uint64, optional, tag = "9")]
    pub pending_total_soma_withdraw: Option<u64>,
    #[prost(uint64, optional, tag = "10")]
    pub pending_pool_token_withdraw: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PoolTokenExchangeRate {
    #[prost(uint64, optional, tag = "1")]
    pub soma_amount: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub pool_token_amount: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelRegistry {
    /// Pool id → model id.
    #[prost(btree_map = "string, string", tag = "3")]
    pub staking_pool_mappings: BTreeMap<String, String>,
    #[prost(uint64, optional, tag = "5")]
    pub total_model_stake: Option<u64>,
    #[prost(btree_map = "string, message", tag = "6")]
    pub model_report_records: BTreeMap<String, ReporterSet>,
    /// Keyed by `0x` + 64 hex ModelId.
    #[prost(btree_map = "string, message", tag = "7")]
    pub models: BTreeMap<String, Model>,
}

/// A registry entry; which fields are set depends on `state` (§2.3).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Model {
    /// 64 hex digits, no `0x`.
    #[prost(string, optional, tag = "1")]
    pub owner: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub architecture_version: Option<u64>,
    #[prost(message, optional, tag = "3")]
    pub manifest: Option<Manifest>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub weights_commitment: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub embedding_commitment: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "6")]
    pub decryption_key_commitment: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "7")]
    pub commit_epoch: Option<u64>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub decryption_key: Option<Vec<u8>>,
    #[prost(float, repeated, tag = "9")]
    pub embedding: Vec<f32>,
    #[prost(message, optional, tag = "10")]
    pub staking_pool: Option<StakingPool>,
    #[prost(uint64, optional, tag = "11")]
    pub commission_rate: Option<u64>,
    #[prost(uint64, optional, tag = "12")]
    pub next_epoch_commission_rate: Option<u64>,
    #[prost(message, optional, tag = "13")]
    pub pending_update: Option<PendingModelUpdate>,
    /// `created`, `pending`, `active` or `inactive`.
    #[prost(string, optional, tag = "14")]
    pub state: Option<String>,
    #[prost(uint64, optional, tag = "15")]
    pub create_epoch: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PendingModelUpdate {
    #[prost(message, optional, tag = "1")]
    pub manifest: Option<Manifest>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub weights_commitment: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub embedding_commitment: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub decryption_key_commitment: Option<Vec<u8>>,
    #[prost(uint64, optional, tag = "5")]
    pub commit_epoch: Option<u64>,
}
