//! CreateModel, CommitModel, RevealModel, AddStakeToModel, SetModelCommissionRate
//! and DeactivateModel (§6.3; the last two as `types/src/system_state/mod.rs`
//! at the testnet tag has them), each rule in the chain's evaluation order: the
//! first failing rule decides the error.

use soma_flow_chain::{
    DecryptionKey, Digest, ObjectID, ObjectType, Owner, SomaTensor, StakedSomaV1,
};

use crate::effects::{ErrorKind, ExecutionFailure};
use crate::params::BPS;
use crate::state::{Model, ModelCommit, ModelState, PoolTokenExchangeRate, StakingPool};
use crate::store::TxStore;

fn model_not_found(id: ObjectID) -> ExecutionFailure {
    ExecutionFailure::new(ErrorKind::ModelNotFound, format!("model {id} not found"))
}

fn not_owner(id: ObjectID) -> ExecutionFailure {
    ExecutionFailure::new(
        ErrorKind::NotModelOwner,
        format!("the sender does not own model {id}"),
    )
}

fn balance_error(needed: u64, have: u64) -> ExecutionFailure {
    ExecutionFailure::new(
        ErrorKind::InsufficientCoinBalance,
        format!("the coin holds {have}, {needed} is needed"),
    )
}

fn gas_balance(store: &TxStore<'_>) -> u64 {
    store
        .gas_id
        .and_then(|g| store.get(&g))
        .and_then(|o| o.coin_balance())
        .unwrap_or(0)
}

/// Creates the sender's StakedSoma for `principal` in `pool`, active next epoch.
fn create_staked_soma(
    store: &mut TxStore<'_>,
    pool_id: ObjectID,
    principal: u64,
) -> Result<(), ExecutionFailure> {
    let id = store.next_id();
    let staked = StakedSomaV1 {
        pool_id,
        stake_activation_epoch: store.system.epoch + 1,
        principal,
    };
    let owner = Owner::AddressOwner(store.sender);
    store.create(id, ObjectType::StakedSoma, owner, &staked)
}

pub(crate) fn create(
    store: &mut TxStore<'_>,
    stake: u64,
    commission_rate: u64,
    architecture_version: u64,
    value_fee: u64,
) -> Result<(), ExecutionFailure> {
    let params = store.system.parameters.clone();
    if architecture_version != params.model_architecture_version {
        return Err(ExecutionFailure::new(
            ErrorKind::ModelArchitectureVersionMismatch,
            format!(
                "architecture version {architecture_version}, the chain's is {}",
                params.model_architecture_version
            ),
        ));
    }
    if stake < params.model_min_stake {
        return Err(ExecutionFailure::new(
            ErrorKind::ModelMinStakeNotMet,
            format!(
                "stake {stake} is below the minimum {}",
                params.model_min_stake
            ),
        ));
    }
    if commission_rate > BPS {
        return Err(ExecutionFailure::new(
            ErrorKind::ModelCommissionRateTooHigh,
            format!("commission rate {commission_rate} exceeds 10000 bps"),
        ));
    }
    let gas = gas_balance(store);
    let needed = stake
        .saturating_add(value_fee)
        .saturating_add(params.write_object_fee.saturating_mul(3));
    if gas < needed {
        return Err(balance_error(needed, gas));
    }
    let model_id = store.next_id();
    let pool_id = store.next_id();
    let gas_id = store.gas_id.ok_or_else(|| balance_error(needed, 0))?;
    store.set_coin_balance(gas_id, gas - stake)?;
    let mut pool = StakingPool::new(pool_id);
    pool.add_stake(stake)
        .ok_or_else(ExecutionFailure::overflow)?;
    let epoch = store.system.epoch;
    let registry = &mut store.system.model_registry;
    registry.staking_pool_mappings.insert(pool_id, model_id);
    registry.models.insert(
        model_id,
        Model {
            owner: store.sender,
            architecture_version,
            state: ModelState::Created,
            commit: None,
            decryption_key: None,
            embedding: None,
            staking_pool: pool,
            commission_rate,
            next_epoch_commission_rate: commission_rate,
            pending_update: None,
            create_epoch: epoch,
        },
    );
    create_staked_soma(store, pool_id, stake)
}

pub(crate) fn commit(
    store: &mut TxStore<'_>,
    model_id: ObjectID,
    mut commit: ModelCommit,
) -> Result<(), ExecutionFailure> {
    let (sender, epoch) = (store.sender, store.system.epoch);
    let model = store
        .system
        .model_registry
        .models
        .get_mut(&model_id)
        .ok_or_else(|| model_not_found(model_id))?;
    commit.commit_epoch = epoch;
    match model.state {
        ModelState::Created => {
            if model.owner != sender {
                return Err(not_owner(model_id));
            }
            model.state = ModelState::Pending;
            model.commit = Some(commit);
        }
        ModelState::Active => {
            if model.owner != sender {
                return Err(not_owner(model_id));
            }
            model.pending_update = Some(commit);
        }
        ModelState::Pending | ModelState::Inactive => {
            return Err(ExecutionFailure::model_invalid_state())
        }
    }
    Ok(())
}

/// The reveal checks shared by a Pending model and an Active update.
fn check_reveal(
    commit: &ModelCommit,
    epoch: u64,
    key: &DecryptionKey,
    embedding: &SomaTensor,
) -> Result<(), ExecutionFailure> {
    if epoch != commit.commit_epoch.saturating_add(1) {
        return Err(ExecutionFailure::new(
            ErrorKind::ModelRevealEpochMismatch,
            format!(
                "committed in epoch {}, revealable only in epoch {}, now {epoch}",
                commit.commit_epoch,
                commit.commit_epoch.saturating_add(1)
            ),
        ));
    }
    if key.commitment() != commit.decryption_key_commitment {
        return Err(ExecutionFailure::new(
            ErrorKind::ModelDecryptionKeyCommitmentMismatch,
            "Blake2b-256 of the key is not the committed decryption key commitment",
        ));
    }
    let bytes = bcs::to_bytes(embedding).map_err(|_| ExecutionFailure::overflow())?;
    if Digest::of(&bytes) != commit.embedding_commitment {
        return Err(ExecutionFailure::new(
            ErrorKind::ModelEmbeddingCommitmentMismatch,
            "Blake2b-256 of the embedding tensor is not the committed embedding commitment",
        ));
    }
    Ok(())
}

pub(crate) fn reveal(
    store: &mut TxStore<'_>,
    model_id: ObjectID,
    key: &DecryptionKey,
    embedding: &SomaTensor,
) -> Result<(), ExecutionFailure> {
    let (sender, epoch) = (store.sender, store.system.epoch);
    let registry = &mut store.system.model_registry;
    let model = registry
        .models
        .get_mut(&model_id)
        .ok_or_else(|| model_not_found(model_id))?;
    match model.state {
        ModelState::Pending => {
            if model.owner != sender {
                return Err(not_owner(model_id));
            }
            let commit = model
                .commit
                .as_ref()
                .ok_or_else(ExecutionFailure::model_invalid_state)?;
            check_reveal(commit, epoch, key, embedding)?;
            model.state = ModelState::Active;
            model.decryption_key = Some(key.clone());
            model.embedding = Some(embedding.clone());
            let pool = &mut model.staking_pool;
            pool.activation_epoch = Some(epoch);
            pool.exchange_rates.insert(
                epoch,
                PoolTokenExchangeRate {
                    soma_amount: pool.soma_balance,
                    pool_token_amount: pool.pool_token_balance,
                },
            );
            let stake = pool.soma_balance;
            registry.total_model_stake = registry.total_model_stake.saturating_add(stake);
        }
        ModelState::Active => {
            if model.owner != sender {
                return Err(not_owner(model_id));
            }
            let update = model.pending_update.as_ref().ok_or_else(|| {
                ExecutionFailure::new(
                    ErrorKind::ModelNoPendingUpdate,
                    format!("model {model_id} has no pending update to reveal"),
                )
            })?;
            check_reveal(update, epoch, key, embedding)?;
            model.commit = model.pending_update.take();
            model.decryption_key = Some(key.clone());
            model.embedding = Some(embedding.clone());
        }
        ModelState::Created | ModelState::Inactive => {
            return Err(ExecutionFailure::model_invalid_state())
        }
    }
    Ok(())
}

pub(crate) fn add_stake(
    store: &mut TxStore<'_>,
    model_id: ObjectID,
    coin: ObjectID,
    amount: Option<u64>,
    value_fee: u64,
) -> Result<(), ExecutionFailure> {
    let write_fee = store.system.parameters.write_object_fee;
    let balance = store.owned_coin(&coin)?;
    let is_gas = store.gas_id == Some(coin);
    let stake = match (amount, is_gas) {
        (Some(a), true) => {
            let needed = a
                .saturating_add(value_fee)
                .saturating_add(write_fee.saturating_mul(2));
            if balance < needed {
                return Err(balance_error(needed, balance));
            }
            a
        }
        (Some(a), false) => {
            if balance < a {
                return Err(balance_error(a, balance));
            }
            a
        }
        (None, true) => {
            let held = value_fee.saturating_add(write_fee);
            balance
                .checked_sub(held)
                .ok_or_else(|| balance_error(held, balance))?
        }
        (None, false) => balance,
    };
    if stake == 0 {
        return Err(ExecutionFailure::invalid_arguments(
            "Stake amount cannot be 0!",
        ));
    }
    let model = store
        .system
        .model_registry
        .models
        .get_mut(&model_id)
        .ok_or_else(|| model_not_found(model_id))?;
    if model.state == ModelState::Inactive {
        return Err(ExecutionFailure::new(
            ErrorKind::ModelAlreadyInactive,
            format!("model {model_id} is inactive"),
        ));
    }
    model
        .staking_pool
        .add_stake(stake)
        .ok_or_else(ExecutionFailure::overflow)?;
    let pool_id = model.staking_pool.id;
    let rest = balance - stake;
    if rest == 0 && !is_gas {
        store.delete(coin);
    } else {
        store.set_coin_balance(coin, rest)?;
    }
    create_staked_soma(store, pool_id, stake)
}

/// An Active model of the sender's, or the chain's error: not found, not active
/// (checked before the owner), not the owner.
fn own_active<'s>(
    store: &'s mut TxStore<'_>,
    model_id: ObjectID,
) -> Result<&'s mut crate::state::Model, ExecutionFailure> {
    let sender = store.sender;
    let model = store
        .system
        .model_registry
        .models
        .get_mut(&model_id)
        .ok_or_else(|| model_not_found(model_id))?;
    if model.state != ModelState::Active {
        return Err(ExecutionFailure::new(
            ErrorKind::ModelNotActive,
            format!("model {model_id} is {}, not active", model.state.as_str()),
        ));
    }
    if model.owner != sender {
        return Err(not_owner(model_id));
    }
    Ok(model)
}

/// Stages `new_rate` for the next epoch boundary (§6.4 6e). The rate is checked
/// first, then the model.
pub(crate) fn set_commission_rate(
    store: &mut TxStore<'_>,
    model_id: ObjectID,
    new_rate: u64,
) -> Result<(), ExecutionFailure> {
    if new_rate > BPS {
        return Err(ExecutionFailure::new(
            ErrorKind::ModelCommissionRateTooHigh,
            format!("commission rate {new_rate} exceeds 10000 bps"),
        ));
    }
    own_active(store, model_id)?.next_epoch_commission_rate = new_rate;
    Ok(())
}

/// The owner withdraws an Active model: it becomes Inactive at once, its pool is
/// deactivated this epoch and its stake leaves `total_model_stake`.
pub(crate) fn deactivate(
    store: &mut TxStore<'_>,
    model_id: ObjectID,
) -> Result<(), ExecutionFailure> {
    let epoch = store.system.epoch;
    let model = own_active(store, model_id)?;
    model.state = ModelState::Inactive;
    model.pending_update = None;
    model.staking_pool.deactivation_epoch = Some(epoch);
    let stake = model.staking_pool.soma_balance;
    let registry = &mut store.system.model_registry;
    registry.total_model_stake = registry.total_model_stake.saturating_sub(stake);
    registry.model_report_records.remove(&model_id);
    Ok(())
}
