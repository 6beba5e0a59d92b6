//! The ledger's types rendered as `soma.rpc` proto messages (§2.3, §2.8, §2.9):
//! system state with its model registry, effects, checkpoints and epochs.
//!
//! Presence is set even for zeros (§2.0), ids use the rendering each field has
//! on a real node, and model fields follow the per-state table of §2.3. The
//! transaction, object and target conversions shared with the client live in
//! `soma_flow_chain::proto::convert`.

use soma_flow_chain::proto::{self, changed_object, convert, execution_error};
use soma_flow_chain::{Digest, ObjectID};

use crate::checkpoint::Checkpoint;
use crate::effects::{ChangedObject, Effects, ErrorDetails, ExecutionStatus, IdOperation};
use crate::ledger::EpochInfo;
use crate::state::{Model, ModelCommit, ModelState, StakingPool, SystemState};

pub fn timestamp(ms: u64) -> proto::Timestamp {
    proto::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

fn manifest_fields(commit: &ModelCommit) -> proto::PendingModelUpdate {
    proto::PendingModelUpdate {
        manifest: Some((&commit.manifest).into()),
        weights_commitment: Some(commit.weights_commitment.0.to_vec()),
        embedding_commitment: Some(commit.embedding_commitment.0.to_vec()),
        decryption_key_commitment: Some(commit.decryption_key_commitment.0.to_vec()),
        commit_epoch: Some(commit.commit_epoch),
    }
}

pub fn staking_pool(pool: &StakingPool) -> proto::StakingPool {
    proto::StakingPool {
        id: Some(pool.id.to_hex()),
        activation_epoch: pool.activation_epoch,
        deactivation_epoch: pool.deactivation_epoch,
        soma_balance: Some(pool.soma_balance),
        rewards_pool: Some(pool.rewards_pool),
        pool_token_balance: Some(pool.pool_token_balance),
        exchange_rates: pool
            .exchange_rates
            .iter()
            .map(|(epoch, rate)| {
                (
                    *epoch,
                    proto::PoolTokenExchangeRate {
                        soma_amount: Some(rate.soma_amount),
                        pool_token_amount: Some(rate.pool_token_amount),
                    },
                )
            })
            .collect(),
        pending_stake: Some(pool.pending_stake),
        pending_total_soma_withdraw: Some(pool.pending_total_soma_withdraw),
        pending_pool_token_withdraw: Some(pool.pending_pool_token_withdraw),
    }
}

/// A registry entry, with the fields §2.3 lists for its state.
pub fn model(m: &Model) -> proto::Model {
    let commit = m.commit.as_ref().map(manifest_fields);
    let revealed = matches!(m.state, ModelState::Active | ModelState::Inactive);
    proto::Model {
        owner: Some(m.owner.to_hex()),
        architecture_version: Some(m.architecture_version),
        manifest: commit.as_ref().and_then(|c| c.manifest.clone()),
        weights_commitment: commit.as_ref().and_then(|c| c.weights_commitment.clone()),
        embedding_commitment: commit.as_ref().and_then(|c| c.embedding_commitment.clone()),
        decryption_key_commitment: commit
            .as_ref()
            .and_then(|c| c.decryption_key_commitment.clone()),
        commit_epoch: (m.state == ModelState::Pending)
            .then(|| commit.as_ref().and_then(|c| c.commit_epoch))
            .flatten(),
        // A slashed, never revealed model shows 32 zero bytes (§2.3).
        decryption_key: revealed.then(|| {
            m.decryption_key
                .as_ref()
                .map_or(vec![0; 32], |k| k.expose_bytes().to_vec())
        }),
        embedding: if revealed {
            m.embedding_values()
        } else {
            Vec::new()
        },
        staking_pool: Some(staking_pool(&m.staking_pool)),
        commission_rate: Some(m.commission_rate),
        next_epoch_commission_rate: Some(m.next_epoch_commission_rate),
        pending_update: (m.state == ModelState::Active)
            .then(|| m.pending_update.as_ref().map(manifest_fields))
            .flatten(),
        state: Some(m.state.as_str().to_owned()),
        create_epoch: (m.state == ModelState::Created).then_some(m.create_epoch),
    }
}

pub fn system_state(s: &SystemState) -> proto::SystemState {
    let p = &s.parameters;
    let registry = &s.model_registry;
    proto::SystemState {
        epoch: Some(s.epoch),
        epoch_start_timestamp_ms: Some(s.epoch_start_timestamp_ms),
        protocol_version: Some(s.protocol_version),
        parameters: Some(proto::SystemParameters {
            epoch_duration_ms: Some(p.epoch_duration_ms),
            validator_reward_allocation_bps: Some(p.validator_reward_allocation_bps),
            model_min_stake: Some(p.model_min_stake),
            model_architecture_version: Some(p.model_architecture_version),
            model_reveal_slash_rate_bps: Some(p.model_reveal_slash_rate_bps),
            model_tally_slash_rate_bps: Some(p.model_tally_slash_rate_bps),
            target_epoch_fee_collection: Some(p.target_epoch_fee_collection),
            base_fee: Some(p.base_fee),
            write_object_fee: Some(p.write_object_fee),
            value_fee_bps: Some(p.value_fee_bps),
            min_value_fee_bps: Some(p.min_value_fee_bps),
            max_value_fee_bps: Some(p.max_value_fee_bps),
            fee_adjustment_rate_bps: Some(p.fee_adjustment_rate_bps),
            target_models_per_target: Some(p.target_models_per_target),
            target_embedding_dim: Some(p.target_embedding_dim),
            target_initial_distance_threshold: Some(p.target_initial_distance_threshold),
            target_reward_allocation_bps: Some(p.target_reward_allocation_bps),
            target_hits_per_epoch: Some(p.target_hits_per_epoch),
            target_hits_ema_decay_bps: Some(p.target_hits_ema_decay_bps),
            target_difficulty_adjustment_rate_bps: Some(p.target_difficulty_adjustment_rate_bps),
            target_max_distance_threshold: Some(p.target_max_distance_threshold),
            target_min_distance_threshold: Some(p.target_min_distance_threshold),
            target_initial_targets_per_epoch: Some(p.target_initial_targets_per_epoch),
            target_submitter_reward_share_bps: Some(p.target_submitter_reward_share_bps),
            target_model_reward_share_bps: Some(p.target_model_reward_share_bps),
            target_claimer_incentive_bps: Some(p.target_claimer_incentive_bps),
            submission_bond_per_byte: Some(p.submission_bond_per_byte),
            challenger_bond_per_byte: None,
            max_submission_data_size: Some(p.max_submission_data_size),
        }),
        // No validators on a local network (§2.3: a mock sends an empty list).
        validators: Some(proto::ValidatorSet {
            total_stake: Some(s.validators_total_stake),
            ..Default::default()
        }),
        validator_report_records: Default::default(),
        emission_pool: Some(proto::EmissionPool {
            balance: Some(s.emission_pool.balance),
            emission_per_epoch: Some(s.emission_pool.emission_per_epoch),
        }),
        model_registry: Some(proto::ModelRegistry {
            staking_pool_mappings: registry
                .staking_pool_mappings
                .iter()
                .map(|(pool, model)| (pool.to_hex(), model.to_hex()))
                .collect(),
            total_model_stake: Some(registry.total_model_stake),
            model_report_records: registry
                .model_report_records
                .iter()
                .map(|(id, reporters)| {
                    (
                        id.to_hex(),
                        proto::ReporterSet {
                            reporters: reporters.iter().map(|a| a.to_hex()).collect(),
                        },
                    )
                })
                .collect(),
            models: registry
                .models
                .iter()
                .map(|(id, m)| (id.to_hex(), model(m)))
                .collect(),
        }),
        target_state: Some(proto::TargetState {
            distance_threshold: Some(s.target_state.distance_threshold),
            targets_generated_this_epoch: Some(s.target_state.targets_generated_this_epoch),
            hits_this_epoch: Some(s.target_state.hits_this_epoch),
            hits_ema: Some(s.target_state.hits_ema),
            reward_per_target: Some(s.target_state.reward_per_target),
        }),
        submission_report_records: Default::default(),
        safe_mode: Some(s.safe_mode),
        safe_mode_accumulated_fees: Some(s.safe_mode_accumulated_fees),
        safe_mode_accumulated_emissions: Some(s.safe_mode_accumulated_emissions),
    }
}

/// `GetEpoch`'s epoch; the system state only when the mask asks for it.
pub fn epoch(info: &EpochInfo, with_system_state: bool) -> proto::Epoch {
    let params = &info.system_state.parameters;
    proto::Epoch {
        epoch: Some(info.epoch),
        committee: Some(proto::ValidatorCommittee {
            epoch: Some(info.epoch),
            members: Vec::new(),
        }),
        system_state: with_system_state.then(|| system_state(&info.system_state)),
        first_checkpoint: Some(info.first_checkpoint),
        last_checkpoint: info.last_checkpoint,
        start: Some(timestamp(info.start_timestamp_ms)),
        end: info.end_timestamp_ms.map(timestamp),
        protocol_config: Some(proto::ProtocolConfig {
            protocol_version: Some(info.protocol_version),
            feature_flags: Default::default(),
            attributes: params
                .attributes()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        }),
    }
}

fn object_state(
    state: Option<&crate::effects::ObjectState>,
) -> (Option<u64>, Option<String>, Option<proto::Owner>) {
    match state {
        Some(s) => (
            Some(s.version),
            Some(s.digest.to_base58()),
            Some(proto::Owner::from(&s.owner)),
        ),
        None => (None, None, None),
    }
}

fn changed_object(c: &ChangedObject) -> proto::ChangedObject {
    let (input_version, input_digest, input_owner) = object_state(c.input.as_ref());
    let (output_version, output_digest, output_owner) = object_state(c.output.as_ref());
    proto::ChangedObject {
        object_id: Some(c.object_id.to_hex()),
        input_state: Some(if c.input.is_some() {
            changed_object::InputObjectState::Exists
        } else {
            changed_object::InputObjectState::DoesNotExist
        } as i32),
        input_version,
        input_digest,
        input_owner,
        output_state: Some(if c.output.is_some() {
            changed_object::OutputObjectState::ObjectWrite
        } else {
            changed_object::OutputObjectState::DoesNotExist
        } as i32),
        output_version,
        output_digest,
        output_owner,
        id_operation: Some(match c.id_operation {
            IdOperation::None => changed_object::IdOperation::None,
            IdOperation::Created => changed_object::IdOperation::Created,
            IdOperation::Deleted => changed_object::IdOperation::Deleted,
        } as i32),
        object_type: Some(c.object_type.as_str().to_owned()),
    }
}

pub fn effects(e: &Effects) -> proto::TransactionEffects {
    let status = match &e.status {
        ExecutionStatus::Success => proto::ExecutionStatus {
            success: Some(true),
            error: None,
        },
        ExecutionStatus::Failure(f) => proto::ExecutionStatus {
            success: Some(false),
            error: Some(proto::ExecutionError {
                description: Some(f.description.clone()),
                kind: Some(f.kind.proto_value()),
                error_details: f.details.as_ref().map(|d| match d {
                    ErrorDetails::ObjectId(id) => {
                        execution_error::ErrorDetails::ObjectId(id.to_hex())
                    }
                    ErrorDetails::Other(text) => {
                        execution_error::ErrorDetails::OtherError(text.clone())
                    }
                }),
            }),
        },
    };
    proto::TransactionEffects {
        status: Some(status),
        epoch: Some(e.epoch),
        fee: Some(proto::TransactionFee {
            base_fee: Some(e.fee.base_fee),
            operation_fee: Some(e.fee.operation_fee),
            value_fee: Some(e.fee.value_fee),
            total_fee: Some(e.fee.total()),
        }),
        transaction_digest: Some(e.transaction_digest.to_base58()),
        gas_object_index: e.gas_object_index.and_then(|i| u32::try_from(i).ok()),
        dependencies: Vec::new(),
        lamport_version: Some(e.lamport_version),
        changed_objects: e.changed_objects.iter().map(changed_object).collect(),
        unchanged_shared_objects: Vec::new(),
    }
}

/// The executed transaction of `ExecuteTransaction`, with the objects it
/// wrote as they are now.
pub fn executed(
    e: &Effects,
    transaction: Option<proto::Transaction>,
    signatures: Vec<proto::UserSignature>,
    objects: Vec<proto::Object>,
) -> proto::ExecutedTransaction {
    proto::ExecutedTransaction {
        digest: Some(e.transaction_digest.to_base58()),
        transaction,
        signatures,
        effects: Some(effects(e)),
        checkpoint: Some(e.checkpoint),
        timestamp: Some(timestamp(e.timestamp_ms)),
        balance_changes: e
            .balance_changes
            .iter()
            .map(|b| proto::BalanceChange {
                address: Some(b.address.to_hex()),
                amount: Some(b.amount.to_string()),
            })
            .collect(),
        objects: Some(proto::ObjectSet { objects }),
    }
}

/// A streamed checkpoint; transactions carry their digests.
pub fn checkpoint(c: &Checkpoint) -> proto::Checkpoint {
    proto::Checkpoint {
        sequence_number: Some(c.sequence_number),
        digest: Some(c.digest.to_base58()),
        summary: Some(proto::CheckpointSummary {
            digest: Some(c.digest.to_base58()),
            epoch: Some(c.epoch),
            sequence_number: Some(c.sequence_number),
            total_network_transactions: Some(c.total_network_transactions),
            content_digest: None,
            previous_digest: c.previous_digest.as_ref().map(Digest::to_base58),
            epoch_rolling_transaction_fees: None,
            timestamp: Some(timestamp(c.timestamp_ms)),
            commitments: Vec::new(),
            end_of_epoch_data: None,
        }),
        signature: None,
        contents: None,
        transactions: c
            .transactions
            .iter()
            .map(|d| proto::ExecutedTransaction {
                digest: Some(d.to_base58()),
                ..Default::default()
            })
            .collect(),
        objects: None,
    }
}

/// A changed object's id, for listing the objects a transaction wrote.
pub fn written_ids(e: &Effects) -> Vec<ObjectID> {
    e.changed_objects
        .iter()
        .filter(|c| c.output.is_some())
        .map(|c| c.object_id)
        .collect()
}

/// Keeps only the fields of `target` that `mask` names (§2.10).
pub fn mask_target(target: &mut proto::Target, mask: &[&str]) {
    let keep = |name: &str| mask.contains(&name);
    macro_rules! field {
        ($($name:ident),*) => {$(
            if !keep(stringify!($name)) {
                target.$name = Default::default();
            }
        )*};
    }
    field!(
        id,
        embedding,
        model_ids,
        distance_threshold,
        reward_pool,
        generation_epoch,
        status,
        fill_epoch,
        submitter,
        winning_model_id,
        winning_model_owner,
        bond_amount,
        data_url
    );
}

/// Re-exported so the server has one import for object rendering.
pub use convert::{object_to_proto, target_to_proto};
