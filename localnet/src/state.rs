//! The `SystemState` object's contents (§2.3): epoch, parameters, emission
//! pool, model registry with staking pools, and target state.
//!
//! SOMA-RPC.md documents these as proto messages, not as BCS, so the BCS of
//! this struct (the SystemState object's `contents`) is this crate's own layout;
//! everything a client reads (proto fields, model states) follows the document.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use soma_flow_chain::{DecryptionKey, Digest, Manifest, ObjectID, SomaAddress, SomaTensor};

use crate::f32_bits;
use crate::params::{SystemParameters, BPS};

/// `PoolTokenExchangeRate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTokenExchangeRate {
    pub soma_amount: u64,
    pub pool_token_amount: u64,
}

/// A model's staking pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StakingPool {
    pub id: ObjectID,
    /// `None` while pre-active (Created or Pending): stakes count at once.
    pub activation_epoch: Option<u64>,
    pub deactivation_epoch: Option<u64>,
    pub soma_balance: u64,
    pub rewards_pool: u64,
    pub pool_token_balance: u64,
    pub exchange_rates: BTreeMap<u64, PoolTokenExchangeRate>,
    /// Stake added to an active pool, counted at the next epoch boundary.
    pub pending_stake: u64,
    pub pending_total_soma_withdraw: u64,
    pub pending_pool_token_withdraw: u64,
}

impl StakingPool {
    pub fn new(id: ObjectID) -> Self {
        Self {
            id,
            activation_epoch: None,
            deactivation_epoch: None,
            soma_balance: 0,
            rewards_pool: 0,
            pool_token_balance: 0,
            exchange_rates: BTreeMap::new(),
            pending_stake: 0,
            pending_total_soma_withdraw: 0,
            pending_pool_token_withdraw: 0,
        }
    }

    pub fn is_preactive(&self) -> bool {
        self.activation_epoch.is_none()
    }

    /// Pool tokens for `amount` at the current rate (1:1 on an empty pool).
    fn tokens_for(&self, amount: u64) -> u64 {
        if self.soma_balance == 0 || self.pool_token_balance == 0 {
            amount
        } else {
            (amount as u128 * self.pool_token_balance as u128 / self.soma_balance as u128) as u64
        }
    }

    /// Adds a stake: at once when pre-active, else at the next boundary.
    pub fn add_stake(&mut self, amount: u64) -> Option<()> {
        if self.is_preactive() {
            let tokens = self.tokens_for(amount);
            self.soma_balance = self.soma_balance.checked_add(amount)?;
            self.pool_token_balance = self.pool_token_balance.checked_add(tokens)?;
        } else {
            self.pending_stake = self.pending_stake.checked_add(amount)?;
        }
        Some(())
    }

    /// Folds `pending_stake` into the balance (epoch boundary, §6.4 6f).
    pub fn process_pending_stake(&mut self) {
        if self.pending_stake > 0 {
            let tokens = self.tokens_for(self.pending_stake);
            self.soma_balance = self.soma_balance.saturating_add(self.pending_stake);
            self.pool_token_balance = self.pool_token_balance.saturating_add(tokens);
            self.pending_stake = 0;
        }
    }

    /// Removes `rate_bps` of the balance; returns the amount slashed.
    pub fn slash(&mut self, rate_bps: u64) -> u64 {
        let slashed = (self.soma_balance as u128 * rate_bps.min(BPS) as u128 / BPS as u128) as u64;
        self.soma_balance -= slashed;
        slashed
    }
}

/// The lifecycle state of a model (proto `Model.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelState {
    Created,
    Pending,
    Active,
    Inactive,
}

impl ModelState {
    /// The proto string: `created`, `pending`, `active`, `inactive`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }
}

/// A committed manifest and its three commitments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCommit {
    pub manifest: Manifest,
    pub weights_commitment: Digest,
    pub embedding_commitment: Digest,
    pub decryption_key_commitment: Digest,
    pub commit_epoch: u64,
}

/// A model: an entry of the registry, not an object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub owner: SomaAddress,
    pub architecture_version: u64,
    pub state: ModelState,
    /// The current manifest and commitments (Pending and later). For a Pending
    /// model `commit.commit_epoch` is the commit epoch.
    pub commit: Option<ModelCommit>,
    /// Set once revealed (Active); zero key and empty embedding when a Pending
    /// model was slashed unrevealed.
    pub decryption_key: Option<DecryptionKey>,
    pub embedding: Option<SomaTensor>,
    pub staking_pool: StakingPool,
    pub commission_rate: u64,
    pub next_epoch_commission_rate: u64,
    /// An Active model's committed update, revealable in `commit_epoch + 1`.
    pub pending_update: Option<ModelCommit>,
    pub create_epoch: u64,
}

impl Model {
    /// The embedding values of an Active model.
    pub fn embedding_values(&self) -> Vec<f32> {
        self.embedding
            .as_ref()
            .map(SomaTensor::values)
            .unwrap_or_default()
    }
}

/// `ModelRegistry`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelRegistry {
    /// Ascending ModelId byte order: the KNN candidate order (§7.3).
    pub models: BTreeMap<ObjectID, Model>,
    /// Pool id → model id.
    pub staking_pool_mappings: BTreeMap<ObjectID, ObjectID>,
    pub total_model_stake: u64,
    pub model_report_records: BTreeMap<ObjectID, BTreeSet<SomaAddress>>,
}

impl ModelRegistry {
    pub fn has_active(&self) -> bool {
        self.models.values().any(|m| m.state == ModelState::Active)
    }

    /// Σ Active `soma_balance`.
    pub fn active_stake(&self) -> u64 {
        self.models
            .values()
            .filter(|m| m.state == ModelState::Active)
            .fold(0u64, |acc, m| {
                acc.saturating_add(m.staking_pool.soma_balance)
            })
    }
}

/// `EmissionPool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmissionPool {
    pub balance: u64,
    pub emission_per_epoch: u64,
}

/// `TargetState` (§7.6).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    #[serde(with = "f32_bits")]
    pub distance_threshold: f32,
    pub targets_generated_this_epoch: u64,
    pub hits_this_epoch: u64,
    pub hits_ema: u64,
    pub reward_per_target: u64,
}

/// The system state (object `0x…05`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemState {
    pub epoch: u64,
    pub epoch_start_timestamp_ms: u64,
    pub protocol_version: u64,
    pub parameters: SystemParameters,
    /// A local network has no validators: `ValidatorSet.total_stake`.
    pub validators_total_stake: u64,
    pub emission_pool: EmissionPool,
    pub model_registry: ModelRegistry,
    pub target_state: TargetState,
    pub safe_mode: bool,
    pub safe_mode_accumulated_fees: u64,
    pub safe_mode_accumulated_emissions: u64,
}

impl SystemState {
    /// Whether `(generated + 1) × reward_per_target` fits the epoch's target
    /// budget and the emission pool can pay one more target (§7.1, §7.5).
    pub fn can_fund_target(&self) -> bool {
        let reward = self.target_state.reward_per_target;
        let budget = self
            .parameters
            .target_epoch_budget(self.emission_pool.emission_per_epoch);
        let needed = (self.target_state.targets_generated_this_epoch as u128 + 1) * reward as u128;
        self.emission_pool.balance >= reward && needed <= budget as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preactive_stake_counts_at_once_active_stake_next_epoch() {
        let mut pool = StakingPool::new(ObjectID([1; 32]));
        pool.add_stake(10).unwrap();
        assert_eq!(
            (
                pool.soma_balance,
                pool.pool_token_balance,
                pool.pending_stake
            ),
            (10, 10, 0)
        );
        pool.activation_epoch = Some(1);
        pool.add_stake(5).unwrap();
        assert_eq!((pool.soma_balance, pool.pending_stake), (10, 5));
        pool.process_pending_stake();
        assert_eq!(
            (
                pool.soma_balance,
                pool.pool_token_balance,
                pool.pending_stake
            ),
            (15, 15, 0)
        );
        pool.activation_epoch = None;
        assert!(
            pool.add_stake(u64::MAX).is_none(),
            "an overflowing stake is refused"
        );
    }

    #[test]
    fn slashing_takes_the_rate_rounded_down() {
        let mut pool = StakingPool::new(ObjectID([1; 32]));
        pool.add_stake(7).unwrap();
        assert_eq!(pool.slash(5000), 3);
        assert_eq!(pool.soma_balance, 4);
        assert_eq!(pool.slash(20_000), 4, "the rate is capped at 100%");
        assert_eq!(pool.soma_balance, 0);
    }
}
