//! Step 3: admission. A stage that acts for the user is refused inputs derived from a
//! remote entry nobody verified; then it waits for a job slot (none for a Slurm job: the
//! cluster schedules it) and a slot of its resource class (for class `gpu`, a device).

use tokio::sync::OwnedSemaphorePermit;

use crate::exec::shared::Shared;
use crate::exec::slots::{Slot, GPU};
use crate::pipeline::{Executor, PlannedStage};
use crate::remote::trust::{KEY_ENV, TRUST_ENV};

/// The refusal, if `stage` acts for the user and its inputs derive from `tainted`, an
/// upstream stage whose remote entry nobody verified, and the run does not take remote
/// entries from anyone (`trust: any`).
pub(super) fn refusal(
    shared: &Shared,
    stage: &PlannedStage,
    tainted: Option<&str>,
) -> Option<String> {
    let from = tainted?;
    let anyone = shared.remote.as_ref().is_some_and(|r| r.trust().any());
    if anyone || !stage.prepared.needs_verified_inputs() {
        return None;
    }
    Some(format!(
        "refused: this stage acts for you, and its inputs derive from `{from}`, whose \
         result came from the remote store unverified (no trusted keys are configured). \
         Set {TRUST_ENV} to the address of the machine that built it (it signs with \
         {KEY_ENV}), build it here with --remote none, or set {TRUST_ENV}=any to take \
         remote entries whoever wrote them"
    ))
}

/// What a stage holds while it executes; dropping it lets the next stage in.
pub(super) struct Admission {
    _job: Option<OwnedSemaphorePermit>,
    _slot: Option<Slot>,
    /// The GPU the stage was given, if its class is `gpu`.
    pub device: Option<usize>,
}

/// Waits until `stage` may execute.
pub(super) async fn admit(shared: &Shared, stage: &PlannedStage) -> Admission {
    // A Slurm job takes no slot here: the cluster schedules it.
    if shared.plan.executor_of(stage) == Executor::Slurm {
        return Admission {
            _job: None,
            _slot: None,
            device: None,
        };
    }
    let job = std::sync::Arc::clone(&shared.jobs)
        .acquire_owned()
        .await
        .expect("semaphore never closes");
    let class = stage.requirements.resource.as_deref();
    let slot = match class.and_then(|c| shared.resources.get(c)) {
        Some(slots) => Some(slots.acquire().await),
        None => None,
    };
    Admission {
        _job: Some(job),
        device: slot
            .as_ref()
            .filter(|_| class == Some(GPU))
            .map(|s| s.index),
        _slot: slot,
    }
}
