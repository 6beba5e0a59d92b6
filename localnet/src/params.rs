//! The chain parameters (`SystemParameters`, §2.3) with their protocol v5
//! defaults, and the genesis configuration of a local network.
//!
//! `value_fee_bps` is live state: it starts at the protocol value and is
//! adjusted at every epoch boundary (§6.2). `target_embedding_dim` and
//! `model_architecture_version` are settings of a local network (`--small-model`
//! uses 16), so the caller always chooses the dimension.

use serde::{Deserialize, Serialize};
use soma_flow_chain::SomaAddress;

use crate::f32_bits;

/// The protocol version this ledger implements.
pub const PROTOCOL_VERSION: u64 = 5;
use soma_flow_chain::SHANNONS_PER_SOMA;
/// The basis-point denominator.
pub const BPS: u64 = 10_000;

/// Every field of proto `SystemParameters` (§2.3), by its name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemParameters {
    pub epoch_duration_ms: u64,
    pub validator_reward_allocation_bps: u64,
    pub model_min_stake: u64,
    pub model_architecture_version: u64,
    pub model_reveal_slash_rate_bps: u64,
    pub model_tally_slash_rate_bps: u64,
    pub target_epoch_fee_collection: u64,
    pub base_fee: u64,
    pub write_object_fee: u64,
    pub value_fee_bps: u64,
    pub min_value_fee_bps: u64,
    pub max_value_fee_bps: u64,
    pub fee_adjustment_rate_bps: u64,
    pub target_models_per_target: u64,
    pub target_embedding_dim: u64,
    #[serde(with = "f32_bits")]
    pub target_initial_distance_threshold: f32,
    pub target_reward_allocation_bps: u64,
    pub target_hits_per_epoch: u64,
    pub target_hits_ema_decay_bps: u64,
    pub target_difficulty_adjustment_rate_bps: u64,
    #[serde(with = "f32_bits")]
    pub target_max_distance_threshold: f32,
    #[serde(with = "f32_bits")]
    pub target_min_distance_threshold: f32,
    pub target_initial_targets_per_epoch: u64,
    pub target_submitter_reward_share_bps: u64,
    pub target_model_reward_share_bps: u64,
    pub target_claimer_incentive_bps: u64,
    pub submission_bond_per_byte: u64,
    pub max_submission_data_size: u64,
}

impl SystemParameters {
    /// The protocol v5 defaults (§2.3 table), with the embedding dimension of
    /// the caller's choice (2048 on testnet, 16 with localnet `--small-model`).
    pub fn v5(target_embedding_dim: u64) -> Self {
        Self {
            epoch_duration_ms: 86_400_000,
            validator_reward_allocation_bps: 7000,
            model_min_stake: SHANNONS_PER_SOMA,
            model_architecture_version: 1,
            model_reveal_slash_rate_bps: 5000,
            model_tally_slash_rate_bps: 9500,
            target_epoch_fee_collection: 1_000_000_000,
            base_fee: 1000,
            write_object_fee: 300,
            value_fee_bps: 10,
            min_value_fee_bps: 1,
            max_value_fee_bps: 50,
            fee_adjustment_rate_bps: 1250,
            target_models_per_target: 3,
            target_embedding_dim,
            target_initial_distance_threshold: 1.05,
            target_reward_allocation_bps: 8000,
            target_hits_per_epoch: 86_400,
            target_hits_ema_decay_bps: 9000,
            target_difficulty_adjustment_rate_bps: 10_000,
            target_max_distance_threshold: 2.0,
            target_min_distance_threshold: 0.95,
            target_initial_targets_per_epoch: 100,
            target_submitter_reward_share_bps: 4975,
            target_model_reward_share_bps: 4975,
            target_claimer_incentive_bps: 50,
            submission_bond_per_byte: 65,
            max_submission_data_size: 1_048_576,
        }
    }

    /// Every parameter by its proto field name, as `ProtocolConfig.attributes`
    /// renders them (decimal; f32 with Rust `Display`, e.g. `"1.05"`).
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let u = |name, v: u64| (name, v.to_string());
        let f = |name, v: f32| (name, v.to_string());
        vec![
            u("epoch_duration_ms", self.epoch_duration_ms),
            u(
                "validator_reward_allocation_bps",
                self.validator_reward_allocation_bps,
            ),
            u("model_min_stake", self.model_min_stake),
            u(
                "model_architecture_version",
                self.model_architecture_version,
            ),
            u(
                "model_reveal_slash_rate_bps",
                self.model_reveal_slash_rate_bps,
            ),
            u(
                "model_tally_slash_rate_bps",
                self.model_tally_slash_rate_bps,
            ),
            u(
                "target_epoch_fee_collection",
                self.target_epoch_fee_collection,
            ),
            u("base_fee", self.base_fee),
            u("write_object_fee", self.write_object_fee),
            u("value_fee_bps", self.value_fee_bps),
            u("min_value_fee_bps", self.min_value_fee_bps),
            u("max_value_fee_bps", self.max_value_fee_bps),
            u("fee_adjustment_rate_bps", self.fee_adjustment_rate_bps),
            u("target_models_per_target", self.target_models_per_target),
            u("target_embedding_dim", self.target_embedding_dim),
            f(
                "target_initial_distance_threshold",
                self.target_initial_distance_threshold,
            ),
            u(
                "target_reward_allocation_bps",
                self.target_reward_allocation_bps,
            ),
            u("target_hits_per_epoch", self.target_hits_per_epoch),
            u("target_hits_ema_decay_bps", self.target_hits_ema_decay_bps),
            u(
                "target_difficulty_adjustment_rate_bps",
                self.target_difficulty_adjustment_rate_bps,
            ),
            f(
                "target_max_distance_threshold",
                self.target_max_distance_threshold,
            ),
            f(
                "target_min_distance_threshold",
                self.target_min_distance_threshold,
            ),
            u(
                "target_initial_targets_per_epoch",
                self.target_initial_targets_per_epoch,
            ),
            u(
                "target_submitter_reward_share_bps",
                self.target_submitter_reward_share_bps,
            ),
            u(
                "target_model_reward_share_bps",
                self.target_model_reward_share_bps,
            ),
            u(
                "target_claimer_incentive_bps",
                self.target_claimer_incentive_bps,
            ),
            u("submission_bond_per_byte", self.submission_bond_per_byte),
            u("max_submission_data_size", self.max_submission_data_size),
        ]
    }

    /// `floor(amount × floor(value_fee_bps / 2) / 10000)` in u128 (§6.2).
    pub fn value_fee(&self, amount: u64) -> u64 {
        let fee = amount as u128 * (self.value_fee_bps / 2) as u128 / BPS as u128;
        fee as u64
    }

    /// The per-epoch target budget: `⌊emission_per_epoch × target_reward_allocation_bps / 10000⌋`.
    pub fn target_epoch_budget(&self, emission_per_epoch: u64) -> u64 {
        (emission_per_epoch as u128 * self.target_reward_allocation_bps as u128 / BPS as u128)
            as u64
    }

    /// `reward_per_target` (§7.6 step 3, v3+).
    pub fn reward_per_target(&self, emission_per_epoch: u64) -> u64 {
        self.target_epoch_budget(emission_per_epoch) / self.target_hits_per_epoch.max(1)
    }
}

/// What a local network starts from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenesisConfig {
    /// Chain parameters; `parameters.epoch_duration_ms` is the epoch length.
    pub parameters: SystemParameters,
    /// The start of epoch 0 (and the genesis checkpoint's time).
    pub genesis_timestamp_ms: u64,
    /// Funded accounts: each gets one Coin of the given balance, in this order.
    pub accounts: Vec<(SomaAddress, u64)>,
    /// The emission pool's initial balance.
    pub emission_pool_balance: u64,
    /// `emission_pool.emission_per_epoch`.
    pub emission_per_epoch: u64,
    /// The faucet account's secret key bytes (it signs real PayCoins).
    pub faucet_secret_key: [u8; 32],
    /// The faucet account's initial coin.
    pub faucet_balance: u64,
    /// The protocol version the network reports ([`PROTOCOL_VERSION`]; another
    /// only to test that clients refuse a protocol they do not speak).
    #[serde(default = "protocol_version")]
    pub protocol_version: u64,
    /// Validators (address, voting power of 10 000) that may report submissions; none
    /// by default, as the SDK reads the committee's keys and a local network has none.
    #[serde(default)]
    pub validators: Vec<(SomaAddress, u64)>,
}

fn protocol_version() -> u64 {
    PROTOCOL_VERSION
}

impl GenesisConfig {
    /// v5 defaults with the given embedding dimension, no funded accounts, a
    /// faucet of 10^9 SOMA and an emission pool of 10^9 SOMA paying 10^6 SOMA
    /// per epoch. (The real localnet's emission numbers are not documented.)
    pub fn new(target_embedding_dim: u64) -> Self {
        Self {
            parameters: SystemParameters::v5(target_embedding_dim),
            genesis_timestamp_ms: 0,
            accounts: Vec::new(),
            emission_pool_balance: 1_000_000_000 * SHANNONS_PER_SOMA,
            emission_per_epoch: 1_000_000 * SHANNONS_PER_SOMA,
            faucet_secret_key: [0xfa; 32],
            faucet_balance: 1_000_000_000 * SHANNONS_PER_SOMA,
            protocol_version: PROTOCOL_VERSION,
            validators: Vec::new(),
        }
    }

    /// Adds a funded account.
    pub fn with_account(mut self, address: SomaAddress, balance: u64) -> Self {
        self.accounts.push((address, balance));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_fee_uses_half_the_bps_rounded_down() {
        let mut p = SystemParameters::v5(16);
        assert_eq!(p.value_fee(SHANNONS_PER_SOMA), 500_000);
        p.value_fee_bps = 11;
        assert_eq!(p.value_fee(SHANNONS_PER_SOMA), 500_000);
        p.value_fee_bps = 1;
        assert_eq!(p.value_fee(SHANNONS_PER_SOMA), 0);
        p.value_fee_bps = 50;
        assert_eq!(
            p.value_fee(u64::MAX),
            (u64::MAX as u128 * 25 / 10_000) as u64
        );
    }

    #[test]
    fn attributes_render_floats_with_display() {
        let attrs = SystemParameters::v5(16).attributes();
        assert_eq!(attrs.len(), 28);
        let get = |k| attrs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("target_initial_distance_threshold").as_deref(),
            Some("1.05")
        );
        assert_eq!(get("model_architecture_version").as_deref(), Some("1"));
        assert_eq!(get("target_embedding_dim").as_deref(), Some("16"));
    }
}
