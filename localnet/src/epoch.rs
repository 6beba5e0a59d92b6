//! `Ledger::advance_epoch`: the ChangeEpoch transaction (§6.4) in the chain's
//! order: value-fee adjustment and `epoch++`, target difficulty and reward
//! (§7.6), model slashing and stake processing, then target generation (§7.1).
//! If it cannot complete (a model embedding of the wrong dimension makes the
//! chain's routing panic), the chain enters safe mode: only the epoch and its
//! start time change.

use soma_flow_chain::{
    derive_id, target_seed, DecryptionKey, ObjectID, SomaTensor, TransactionData, TransactionKind,
};

use crate::checkpoint::EpochRecord;
use crate::effects::{Effects, ExecutionStatus, TransactionFee};
use crate::ledger::{Ledger, SYSTEM_ADDRESS};
use crate::params::BPS;
use crate::state::{ModelState, SystemState};
use crate::store::TxStore;
use crate::targets;
use crate::LedgerError;
use soma_flow_chain::knn::DimensionMismatch;

/// §6.2: the new `value_fee_bps` after an epoch that collected `fees`.
pub fn adjusted_value_fee_bps(params: &crate::params::SystemParameters, fees: u64) -> u64 {
    let bps = params.value_fee_bps as u128;
    let target = params.target_epoch_fee_collection.max(1) as u128;
    let ratio = fees as u128 * BPS as u128 / target;
    let cap = bps * params.fee_adjustment_rate_bps as u128 / BPS as u128;
    let next = if ratio > BPS as u128 {
        let up = (bps * (ratio - BPS as u128) / BPS as u128).min(cap);
        (bps + up).min(params.max_value_fee_bps as u128)
    } else {
        let down = (bps * (BPS as u128 - ratio) / BPS as u128).min(cap);
        bps.saturating_sub(down)
            .max(params.min_value_fee_bps as u128)
    };
    next as u64
}

/// §7.6 steps 1–2: the new EMA and distance threshold after `hits` fills.
pub fn adjust_difficulty(system: &mut SystemState) {
    let params = &system.parameters;
    let ts = &mut system.target_state;
    let hits = ts.hits_this_epoch;
    let decay = params.target_hits_ema_decay_bps.min(BPS);
    let ema = if ts.hits_ema == 0 {
        hits
    } else {
        ((decay as u128 * ts.hits_ema as u128 + (BPS - decay) as u128 * hits as u128) / BPS as u128)
            as u64
    };
    ts.hits_ema = ema;
    if ema == 0 || ema == params.target_hits_per_epoch {
        return;
    }
    let mut z = (1.0f32 - ts.distance_threshold) / 0.022;
    let step =
        (z.abs() * params.target_difficulty_adjustment_rate_bps as f32 / BPS as f32).max(2.0);
    z = if ema > params.target_hits_per_epoch {
        z + step
    } else {
        z - step
    };
    let z_min = (1.0f32 - params.target_max_distance_threshold) / 0.022;
    let z_max = (1.0f32 - params.target_min_distance_threshold) / 0.022;
    z = z.clamp(z_min, z_max);
    ts.distance_threshold = 1.0 - 0.022 * z;
}

/// §6.4 step 6 (b)–(f) at the boundary into `new_epoch`.
fn process_models(system: &mut SystemState, new_epoch: u64) {
    let slash_bps = system.parameters.model_reveal_slash_rate_bps;
    let registry = &mut system.model_registry;
    for model in registry.models.values_mut() {
        match model.state {
            ModelState::Created if model.create_epoch.saturating_add(1) < new_epoch => {
                model.staking_pool.slash(slash_bps);
                model
                    .staking_pool
                    .deactivation_epoch
                    .get_or_insert(new_epoch);
            }
            ModelState::Pending => {
                let commit_epoch = model.commit.as_ref().map_or(0, |c| c.commit_epoch);
                if commit_epoch.saturating_add(1) < new_epoch {
                    model.staking_pool.slash(slash_bps);
                    model
                        .staking_pool
                        .deactivation_epoch
                        .get_or_insert(new_epoch);
                    model.state = ModelState::Inactive;
                    model.decryption_key = Some(DecryptionKey::from_bytes([0; 32]));
                    model.embedding = Some(SomaTensor::vector(&[]));
                }
            }
            ModelState::Active => {
                if model
                    .pending_update
                    .as_ref()
                    .is_some_and(|u| u.commit_epoch.saturating_add(1) < new_epoch)
                {
                    model.pending_update = None;
                }
                model.commission_rate = model.next_epoch_commission_rate;
                model.staking_pool.process_pending_stake();
            }
            _ => {}
        }
    }
    registry.total_model_stake = registry.active_stake();
}

impl Ledger {
    /// Ends the current epoch now (by the wall clock, never before the epoch's
    /// start), as the admin service and the epoch clock do.
    pub fn advance_epoch_now(&mut self) -> Result<Effects, LedgerError> {
        self.advance_epoch_at(crate::now_ms())
    }

    /// Ends the current epoch at the wall time `now_ms`, or at its start if
    /// the clock is behind it.
    pub(crate) fn advance_epoch_at(&mut self, now_ms: u64) -> Result<Effects, LedgerError> {
        let start = self.data.system.epoch_start_timestamp_ms;
        self.advance_epoch(now_ms.max(start))
    }

    /// Ends the current epoch at `timestamp_ms` (the new epoch's start), as
    /// the localnet admin's AdvanceEpoch does. Returns the ChangeEpoch
    /// transaction's effects; the targets it generated are its created objects.
    pub fn advance_epoch(&mut self, timestamp_ms: u64) -> Result<Effects, LedgerError> {
        let old = self.data.system.epoch;
        let start = self.data.system.epoch_start_timestamp_ms;
        if timestamp_ms < start {
            return Err(LedgerError::TimestampBeforeEpochStart {
                timestamp_ms,
                epoch_start_ms: start,
            });
        }
        // The epoch's last transactions get their checkpoint; the epoch change
        // gets one of its own, the epoch's last.
        self.close_checkpoint()?;
        let new_epoch = old + 1;
        let tx = TransactionData::new(
            TransactionKind::ChangeEpoch {
                epoch: new_epoch,
                epoch_start_timestamp_ms: timestamp_ms,
                protocol_version: self.data.system.protocol_version,
                fees: self.data.epoch_fees,
                epoch_randomness: Vec::new(),
            },
            SYSTEM_ADDRESS,
            Vec::new(),
        );
        let digest = tx.digest()?;
        let lamport = self.data.system_version + 1;
        let mut store = TxStore::new(
            &self.data.objects,
            self.data.system.clone(),
            digest,
            SYSTEM_ADDRESS,
        );
        store.system_written = true;
        if change_epoch(&mut store, self.data.epoch_fees, new_epoch, timestamp_ms).is_err() {
            store = TxStore::new(
                &self.data.objects,
                self.data.system.clone(),
                digest,
                SYSTEM_ADDRESS,
            );
            store.system_written = true;
            let system = &mut store.system;
            system.epoch = new_epoch;
            system.epoch_start_timestamp_ms = timestamp_ms;
            system.safe_mode = true;
            system.safe_mode_accumulated_fees = system
                .safe_mode_accumulated_fees
                .saturating_add(self.data.epoch_fees);
        }
        let writes = store.into_writes();
        let mut effects = self.commit(
            writes,
            lamport,
            ExecutionStatus::Success,
            TransactionFee::default(),
        )?;
        effects.epoch = old;
        effects.timestamp_ms = timestamp_ms;
        let effects = self.record(tx, Vec::new(), effects)?;
        self.seal(true)?;
        self.data.epoch_fees = 0;
        if let Some(last) = self.data.epochs.last_mut() {
            last.end_timestamp_ms = Some(timestamp_ms);
            last.last_checkpoint = Some(effects.checkpoint);
        }
        self.data.epochs.push(EpochRecord {
            epoch: new_epoch,
            start_timestamp_ms: timestamp_ms,
            end_timestamp_ms: None,
            first_checkpoint: effects.checkpoint + 1,
            last_checkpoint: None,
            system_state: self.data.system.clone(),
        });
        Ok(effects)
    }
}

/// The ChangeEpoch executor on a working copy; an error (why it could not
/// complete) means safe mode.
fn change_epoch(
    store: &mut TxStore<'_>,
    fees: u64,
    new_epoch: u64,
    timestamp_ms: u64,
) -> Result<(), String> {
    let system = &mut store.system;
    // 3. Rewards (no validators on a local network) and the value fee.
    system.parameters.value_fee_bps = adjusted_value_fee_bps(&system.parameters, fees);
    system.epoch = new_epoch;
    system.epoch_start_timestamp_ms = timestamp_ms;
    system.safe_mode = false;
    // 4. Targets: difficulty, counters, reward.
    adjust_difficulty(system);
    system.target_state.hits_this_epoch = 0;
    system.target_state.targets_generated_this_epoch = 0;
    system.target_state.reward_per_target = system
        .parameters
        .reward_per_target(system.emission_pool.emission_per_epoch);
    // 6. Models.
    process_models(system, new_epoch);
    // 8. Targets (§7.1), only with an Active model.
    if !store.system.model_registry.has_active() {
        return Ok(());
    }
    let limit = store.system.parameters.target_initial_targets_per_epoch;
    let mut created: Vec<(ObjectID, soma_flow_chain::TargetV1)> = Vec::new();
    for _ in 0..limit {
        if !store.system.can_fund_target() {
            break;
        }
        let n = store.next_creation_num();
        let (id, seed) = (derive_id(&store.digest, n), target_seed(&store.digest, n));
        let target = targets::new_target(&store.system, seed, new_epoch)
            .map_err(|e: DimensionMismatch| e.to_string())?;
        targets::fund_target(&mut store.system);
        created.push((id, target));
    }
    for (id, target) in created {
        store.created.insert(id);
        store.put_target(id, &target).map_err(|f| f.description)?;
    }
    Ok(())
}
