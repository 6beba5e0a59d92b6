//! Targets: building one (arrgen embedding §7.2, KNN-routed models §7.3, the
//! current threshold and reward) and reading them back the way `ListTargets`
//! and `GetTarget` do (§2.6): status filters, virtual statuses, order, paging.

use std::str::FromStr;

use soma_flow_chain::{
    arrgen, ObjectID, ObjectType, SomaAddress, SomaTensor, TargetStatus, TargetV1,
};

use crate::ledger::Ledger;
use crate::state::{ModelState, SystemState};
use crate::store::Obj;
use crate::LedgerError;
use soma_flow_chain::knn::{self, Candidate, DimensionMismatch};

/// A new Open target from `seed`, routed against the registry as it is now.
pub(crate) fn new_target(
    system: &SystemState,
    seed: u64,
    generation_epoch: u64,
) -> Result<TargetV1, DimensionMismatch> {
    let params = &system.parameters;
    let dim = usize::try_from(params.target_embedding_dim).unwrap_or(usize::MAX);
    let embedding = arrgen::target_embedding(seed, dim);
    let active: Vec<(ObjectID, Vec<f32>, u64)> = system
        .model_registry
        .models
        .iter()
        .filter(|(_, m)| m.state == ModelState::Active)
        .map(|(id, m)| (*id, m.embedding_values(), m.staking_pool.soma_balance))
        .collect();
    let candidates: Vec<Candidate<'_>> = active
        .iter()
        .map(|(id, e, s)| Candidate {
            id: *id,
            embedding: e,
            stake: *s,
        })
        .collect();
    let k = usize::try_from(params.target_models_per_target).unwrap_or(usize::MAX);
    let model_ids = knn::select(&embedding, &candidates, k)?;
    Ok(TargetV1 {
        embedding: SomaTensor::vector(&embedding),
        model_ids,
        distance_threshold: SomaTensor::scalar(system.target_state.distance_threshold),
        reward_pool: system.target_state.reward_per_target,
        generation_epoch,
        status: TargetStatus::Open,
        submitter: None,
        winning_model_id: None,
        winning_model_owner: None,
        bond_amount: 0,
        winning_data_manifest: None,
        winning_embedding: None,
        winning_distance_score: None,
        winning_loss_score: None,
        submission_reports: Default::default(),
    })
}

/// Pays one target's reward out of the emission pool.
pub(crate) fn fund_target(system: &mut SystemState) {
    let reward = system.target_state.reward_per_target;
    system.emission_pool.balance = system.emission_pool.balance.saturating_sub(reward);
    let ts = &mut system.target_state;
    ts.targets_generated_this_epoch = ts.targets_generated_this_epoch.saturating_add(1);
}

/// `ListTargets.status_filter` (case-insensitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    /// Open and generated this epoch.
    Open,
    /// Open and generated before this epoch (listed as `claimable`).
    Expired,
    /// Filled (listed as `claimable` once `current > fill_epoch + 1`).
    Filled,
    /// Expired-open targets and Filled ones past the window.
    Claimable,
    /// Claimed (none in practice: a claim deletes the target).
    Claimed,
}

impl FromStr for StatusFilter {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self, LedgerError> {
        match s.to_ascii_lowercase().as_str() {
            "open" => Ok(Self::Open),
            "expired" => Ok(Self::Expired),
            "filled" => Ok(Self::Filled),
            "claimable" => Ok(Self::Claimable),
            "claimed" => Ok(Self::Claimed),
            _ => Err(LedgerError::InvalidStatusFilter(s.to_owned())),
        }
    }
}

/// The raw status string (`GetTarget`).
pub fn raw_status(status: &TargetStatus) -> &'static str {
    match status {
        TargetStatus::Open => "open",
        TargetStatus::Filled { .. } => "filled",
        TargetStatus::Claimed => "claimed",
    }
}

/// The status `ListTargets` shows: `claimable` for expired-open targets and for
/// filled ones past the challenge window.
pub fn listed_status(target: &TargetV1, epoch: u64) -> &'static str {
    match target.status {
        TargetStatus::Open if target.generation_epoch < epoch => "claimable",
        TargetStatus::Filled { fill_epoch } if epoch > fill_epoch.saturating_add(1) => "claimable",
        ref s => raw_status(s),
    }
}

fn matches(filter: StatusFilter, target: &TargetV1, epoch: u64) -> bool {
    let expired_open = target.status == TargetStatus::Open && target.generation_epoch < epoch;
    let claimable_filled = matches!(target.status, TargetStatus::Filled { fill_epoch } if epoch > fill_epoch.saturating_add(1));
    match filter {
        StatusFilter::Open => {
            target.status == TargetStatus::Open && target.generation_epoch == epoch
        }
        StatusFilter::Expired => expired_open,
        StatusFilter::Filled => matches!(target.status, TargetStatus::Filled { .. }),
        StatusFilter::Claimable => expired_open || claimable_filled,
        StatusFilter::Claimed => target.status == TargetStatus::Claimed,
    }
}

/// Where a page of targets resumes: the index key `(status, epoch, id)` of
/// the last target returned.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TargetCursor {
    pub status: String,
    pub generation_epoch: u64,
    pub id: ObjectID,
}

impl TargetCursor {
    /// The opaque page token.
    pub fn to_bytes(&self) -> Vec<u8> {
        bcs::to_bytes(&(&self.status, self.generation_epoch, self.id)).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LedgerError> {
        let (status, generation_epoch, id): (String, u64, ObjectID) =
            bcs::from_bytes(bytes).map_err(|_| LedgerError::InvalidPageToken)?;
        Ok(Self {
            status,
            generation_epoch,
            id,
        })
    }
}

/// A `ListTargets` request.
#[derive(Clone, Debug, Default)]
pub struct TargetQuery {
    pub status: Option<StatusFilter>,
    /// `generation_epoch` equals this.
    pub epoch: Option<u64>,
    pub submitter: Option<SomaAddress>,
    /// Default 100, clamped to 1..=1000.
    pub page_size: Option<u32>,
    pub cursor: Option<TargetCursor>,
}

/// One listed target.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetEntry {
    pub id: ObjectID,
    pub version: u64,
    /// The listed status (see [`listed_status`]).
    pub status: &'static str,
    pub target: TargetV1,
}

/// A page of targets and the cursor of the next one, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetPage {
    pub targets: Vec<TargetEntry>,
    pub next_cursor: Option<TargetCursor>,
}

impl Ledger {
    /// A target by id, raw (`GetTarget`); `None` once claimed (deleted).
    pub fn target(&self, id: &ObjectID) -> Option<TargetV1> {
        let inner = self.data.objects.get(id)?;
        (inner.data.object_type == ObjectType::Target)
            .then(|| Obj::from_inner(inner)?.decode())
            .flatten()
    }

    /// `ListTargets`: ordered by (raw status, generation_epoch, id).
    pub fn list_targets(&self, query: &TargetQuery) -> TargetPage {
        let epoch = self.data.system.epoch;
        let page_size = query.page_size.unwrap_or(100).clamp(1, 1000) as usize;
        let mut all: Vec<(TargetCursor, TargetEntry)> = self
            .data
            .objects
            .iter()
            .filter(|(_, o)| o.data.object_type == ObjectType::Target)
            .filter_map(|(id, o)| {
                let target: TargetV1 = Obj::from_inner(o)?.decode()?;
                let key = TargetCursor {
                    status: raw_status(&target.status).to_owned(),
                    generation_epoch: target.generation_epoch,
                    id: *id,
                };
                let entry = TargetEntry {
                    id: *id,
                    version: o.data.version,
                    status: listed_status(&target, epoch),
                    target,
                };
                Some((key, entry))
            })
            .filter(|(_, e)| query.status.is_none_or(|f| matches(f, &e.target, epoch)))
            .filter(|(_, e)| query.epoch.is_none_or(|g| e.target.generation_epoch == g))
            .filter(|(_, e)| {
                query
                    .submitter
                    .is_none_or(|s| e.target.submitter == Some(s))
            })
            .filter(|(k, _)| query.cursor.as_ref().is_none_or(|c| k > c))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let next_cursor = (all.len() > page_size).then(|| all[page_size - 1].0.clone());
        TargetPage {
            targets: all.into_iter().take(page_size).map(|(_, e)| e).collect(),
            next_cursor,
        }
    }
}
