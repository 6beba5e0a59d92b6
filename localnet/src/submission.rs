//! SubmitData and ClaimRewards (§6.3, §7.4, §7.5): the first valid submission
//! fills a target and spawns its replacement; claims split the reward once the
//! challenge window has passed, and delete the target.

use soma_flow_chain::{
    target_seed, ObjectID, SomaAddress, SomaTensor, SubmissionManifest, TargetStatus, TargetV1,
};

use crate::effects::{ErrorKind, ExecutionFailure};
use crate::params::BPS;
use crate::state::ModelState;
use crate::store::TxStore;
use crate::targets;

/// The fields of a SubmitData transaction.
pub(crate) struct Submission<'a> {
    pub target_id: ObjectID,
    pub data_manifest: &'a SubmissionManifest,
    pub model_id: ObjectID,
    pub embedding: &'a SomaTensor,
    pub distance_score: &'a SomaTensor,
    pub loss_score: &'a SomaTensor,
    pub bond_coin: ObjectID,
}

fn target_not_found(id: ObjectID) -> ExecutionFailure {
    ExecutionFailure::new(ErrorKind::TargetNotFound, format!("target {id} not found"))
}

pub(crate) fn submit(store: &mut TxStore<'_>, s: Submission<'_>) -> Result<(), ExecutionFailure> {
    let epoch = store.system.epoch;
    let params = store.system.parameters.clone();
    let mut target = store
        .target(&s.target_id)
        .ok_or_else(|| target_not_found(s.target_id))?;
    if target.status != TargetStatus::Open {
        return Err(ExecutionFailure::new(
            ErrorKind::TargetNotOpen,
            format!("target {} is not open", s.target_id),
        ));
    }
    if epoch > target.generation_epoch {
        let detail = format!(
            "generation_epoch={}, current_epoch={epoch}",
            target.generation_epoch
        );
        return Err(ExecutionFailure::other(
            ErrorKind::TargetExpired,
            detail.clone(),
            format!("target expired: {detail}"),
        ));
    }
    if !target.model_ids.contains(&s.model_id) {
        let detail = format!("model_id={}, target_id={}", s.model_id, s.target_id);
        return Err(ExecutionFailure::other(
            ErrorKind::ModelNotInTarget,
            detail.clone(),
            format!("the model is not assigned to the target: {detail}"),
        ));
    }
    let (expected, actual) = (target.embedding.values().len(), s.embedding.values().len());
    if expected != actual {
        let detail = format!("expected={expected}, actual={actual}");
        return Err(ExecutionFailure::other(
            ErrorKind::EmbeddingDimensionMismatch,
            detail.clone(),
            format!("embedding dimension mismatch: {detail}"),
        ));
    }
    let score = s
        .distance_score
        .values()
        .first()
        .copied()
        .ok_or_else(|| ExecutionFailure::invalid_arguments("distance_score holds no value"))?;
    let threshold = target
        .distance_threshold
        .values()
        .first()
        .copied()
        .unwrap_or(f32::NAN);
    if score > threshold {
        let detail = format!("score={score}, threshold={threshold}");
        return Err(ExecutionFailure::other(
            ErrorKind::DistanceExceedsThreshold,
            detail.clone(),
            format!("the distance exceeds the threshold: {detail}"),
        ));
    }
    let size = s.data_manifest.manifest.size();
    if size > params.max_submission_data_size {
        let detail = format!("size={size}, max_size={}", params.max_submission_data_size);
        return Err(ExecutionFailure::other(
            ErrorKind::DataExceedsMaxSize,
            detail.clone(),
            format!("the data is too large: {detail}"),
        ));
    }
    let bond = size
        .checked_mul(params.submission_bond_per_byte)
        .ok_or_else(ExecutionFailure::overflow)?;
    let balance = store.owned_coin(&s.bond_coin)?;
    if balance < bond {
        let detail = format!("required={bond}, provided={balance}");
        return Err(ExecutionFailure::other(
            ErrorKind::InsufficientBond,
            detail.clone(),
            format!("the bond coin is too small: {detail}"),
        ));
    }
    let is_gas = store.gas_id == Some(s.bond_coin);
    if balance == bond && !is_gas {
        store.delete(s.bond_coin);
    } else {
        store.set_coin_balance(s.bond_coin, balance - bond)?;
    }
    let model = store
        .system
        .model_registry
        .models
        .get(&s.model_id)
        .ok_or_else(|| ExecutionFailure::new(ErrorKind::ModelNotFound, "model not found"))?;
    if model.state != ModelState::Active {
        return Err(ExecutionFailure::new(
            ErrorKind::ModelNotActive,
            format!("model {} is not active", s.model_id),
        ));
    }
    target.status = TargetStatus::Filled { fill_epoch: epoch };
    target.submitter = Some(store.sender);
    target.winning_model_id = Some(s.model_id);
    target.winning_model_owner = Some(model.owner);
    target.bond_amount = bond;
    target.winning_data_manifest = Some(s.data_manifest.clone());
    target.winning_embedding = Some(s.embedding.clone());
    target.winning_distance_score = Some(s.distance_score.clone());
    target.winning_loss_score = Some(s.loss_score.clone());
    store.put_target(s.target_id, &target)?;
    let ts = &mut store.system.target_state;
    ts.hits_this_epoch = ts.hits_this_epoch.saturating_add(1);
    spawn_replacement(store)
}

/// §7.5: creation number 0 is consumed unused, the seed is number 1's and the
/// id number 2's; generated for the current epoch, if the budget allows.
fn spawn_replacement(store: &mut TxStore<'_>) -> Result<(), ExecutionFailure> {
    store.next_creation_num();
    let seed_num = store.next_creation_num();
    let seed = target_seed(&store.digest, seed_num);
    let id = store.next_id();
    if !store.system.model_registry.has_active() || !store.system.can_fund_target() {
        return Ok(());
    }
    let epoch = store.system.epoch;
    // A model embedding of another dimension makes the chain's routing panic;
    // here the replacement is simply not spawned.
    let Ok(target) = targets::new_target(&store.system, seed, epoch) else {
        return Ok(());
    };
    targets::fund_target(&mut store.system);
    store.created.insert(id);
    store.put_target(id, &target)
}

fn bps_of(amount: u64, bps: u64) -> u64 {
    (amount as u128 * bps.min(BPS) as u128 / BPS as u128) as u64
}

pub(crate) fn claim(store: &mut TxStore<'_>, target_id: ObjectID) -> Result<(), ExecutionFailure> {
    let epoch = store.system.epoch;
    let params = store.system.parameters.clone();
    let target = store
        .target(&target_id)
        .ok_or_else(|| target_not_found(target_id))?;
    let reward = target.reward_pool;
    let claimer_share = bps_of(reward, params.target_claimer_incentive_bps);
    let claimer = store.sender;
    // Who is paid, in the chain's coin order, and what goes back to the emission pool.
    let (payouts, to_pool): (Vec<(SomaAddress, u64)>, u64) = match target.status {
        TargetStatus::Claimed => {
            return Err(ExecutionFailure::new(
                ErrorKind::TargetAlreadyClaimed,
                format!("target {target_id} is already claimed"),
            ))
        }
        TargetStatus::Filled { fill_epoch } => {
            if epoch <= fill_epoch.saturating_add(1) {
                let detail = format!("fill_epoch={fill_epoch}, current_epoch={epoch}");
                return Err(ExecutionFailure::other(
                    ErrorKind::ChallengeWindowOpen,
                    detail.clone(),
                    format!("the challenge window is open: {detail}"),
                ));
            }
            let submitter = target.submitter.ok_or_else(|| {
                ExecutionFailure::new(
                    ErrorKind::TargetNotFilled,
                    format!("target {target_id} is filled without a submitter"),
                )
            })?;
            let reporters = quorum_reporters(&target, store.validators);
            if reporters.is_empty() {
                let submitter_share = bps_of(reward, params.target_submitter_reward_share_bps);
                let model_share = bps_of(reward, params.target_model_reward_share_bps);
                let rest = reward
                    .saturating_sub(submitter_share)
                    .saturating_sub(model_share)
                    .saturating_sub(claimer_share);
                let mut paid = vec![(submitter, submitter_share + rest)];
                // The owner captured at fill time; without one the chain pays no model
                // share (it stays nowhere, as on the chain).
                paid.extend(target.winning_model_owner.map(|owner| (owner, model_share)));
                paid.extend([(claimer, claimer_share), (submitter, target.bond_amount)]);
                (paid, 0)
            } else {
                // Validators with a quorum of voting power reported the submission: the
                // bond goes to them (split evenly, the first taking the remainder), the
                // reward back to the pool; the claimer still gets its incentive.
                let (bond, n) = (target.bond_amount, reporters.len() as u64);
                let mut paid: Vec<(SomaAddress, u64)> = reporters
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (*r, bond / n + if i == 0 { bond % n } else { 0 }))
                    .collect();
                paid.push((claimer, claimer_share));
                (paid, reward)
            }
        }
        TargetStatus::Open => {
            if epoch <= target.generation_epoch {
                return Err(ExecutionFailure::new(
                    ErrorKind::TargetNotFilled,
                    format!("target {target_id} is open and not yet expired"),
                ));
            }
            (vec![(claimer, claimer_share)], reward - claimer_share)
        }
    };
    for (owner, amount) in payouts {
        if amount > 0 {
            store.create_coin(owner, amount)?;
        }
    }
    let pool = &mut store.system.emission_pool;
    pool.balance = pool.balance.saturating_add(to_pool);
    store.delete(target_id);
    Ok(())
}

/// The reporters of `target`'s submission, in address order, when validators holding
/// at least 2f+1 of the voting power (6 667 of 10 000) reported it; empty otherwise.
fn quorum_reporters(target: &TargetV1, validators: &[(SomaAddress, u64)]) -> Vec<SomaAddress> {
    let reporters: Vec<(SomaAddress, u64)> = target
        .submission_reports
        .iter()
        .filter_map(|r| validators.iter().find(|(v, _)| v == r).copied())
        .collect();
    let power: u64 = reporters.iter().map(|(_, p)| p).sum();
    match power >= QUORUM_THRESHOLD {
        true => reporters.into_iter().map(|(r, _)| r).collect(),
        false => Vec::new(),
    }
}

/// 2f+1 of a committee's 10 000 units of voting power.
const QUORUM_THRESHOLD: u64 = 6_667;

/// ReportSubmission (`add`) and UndoReportSubmission: a validator flags a filled
/// target's submission, only in the epoch right after its fill.
pub(crate) fn report(
    store: &mut TxStore<'_>,
    target_id: ObjectID,
    add: bool,
) -> Result<(), ExecutionFailure> {
    let epoch = store.system.epoch;
    let mut target = store
        .target(&target_id)
        .ok_or_else(|| target_not_found(target_id))?;
    if !store.validators.iter().any(|(v, _)| *v == store.sender) {
        return Err(ExecutionFailure::new(
            ErrorKind::NotAValidator,
            format!("{} is not a validator", store.sender),
        ));
    }
    let fill_epoch = match target.status {
        TargetStatus::Filled { fill_epoch } => fill_epoch,
        TargetStatus::Open => {
            return Err(ExecutionFailure::new(
                ErrorKind::TargetNotFilled,
                format!("target {target_id} is not filled"),
            ))
        }
        TargetStatus::Claimed => {
            return Err(ExecutionFailure::new(
                ErrorKind::TargetAlreadyClaimed,
                format!("target {target_id} is already claimed"),
            ))
        }
    };
    if epoch != fill_epoch.saturating_add(1) {
        let detail = format!("fill_epoch={fill_epoch}, current_epoch={epoch}");
        return Err(ExecutionFailure::other(
            ErrorKind::ChallengeWindowClosed,
            detail.clone(),
            format!("reports are taken only in the epoch after the fill: {detail}"),
        ));
    }
    let sender = store.sender;
    let changed = match add {
        true => {
            target.submission_reports.insert(sender);
            true
        }
        false => target.submission_reports.remove(&sender),
    };
    if !changed {
        return Err(ExecutionFailure::new(
            ErrorKind::ReportRecordNotFound,
            format!("{sender} has not reported target {target_id}"),
        ));
    }
    store.put_target(target_id, &target)
}
