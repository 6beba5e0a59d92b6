//! Execution: [`walk`] walks the plan's graph and hands each stage out as soon as its
//! dependencies are done; [`stage`] runs one, as a short pipeline of named steps, up to
//! `--jobs` at a time and within each resource class's capacity; [`job`] runs one
//! outside this process. This module ties them together for a run: the store lock,
//! interrupts, and the run's record (assembled by [`crate::record`]).

mod interrupts;
mod job;
mod shared;
pub mod slots;
pub mod slurm;
mod stage;
mod walk;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;

pub use interrupts::StopOn;
pub use job::stage_job;

use crate::pipeline::Plan;
use crate::record::{self, RunInfo, RunRecord, StageStatus};
use crate::remote::Remote;
use crate::store::Store;
use interrupts::Interrupts;
use shared::Shared;
use stage::Finished;
use walk::{Visitor, Walked};

pub struct ExecOptions {
    pub jobs: usize,
    pub no_cache: bool,
    /// The `--set` overrides, kept in the run record for `rerun`.
    pub overrides: Vec<String>,
    pub stop_on: StopOn,
    /// The cache shared with other machines, if any: looked up on a local miss,
    /// given what ran.
    pub remote: Option<Arc<Remote>>,
}

pub async fn run(plan: Arc<Plan>, store: Store, opts: ExecOptions) -> Result<RunRecord> {
    let lock_store = store.clone();
    let _store_lock = tokio::task::spawn_blocking(move || lock_store.lock_store(false)).await??;
    let shared = Arc::new(Shared::new(
        Arc::clone(&plan),
        store,
        record::new_run_id(),
        opts.overrides.clone(),
        opts.remote.clone(),
        opts.jobs,
        opts.no_cache,
    )?);
    let started = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let deps: Vec<Vec<usize>> = plan
        .stages
        .values()
        .map(|s| s.deps.iter().map(|d| stage_index(&plan, d)).collect())
        .collect();
    let mut interrupts = Interrupts::new(opts.stop_on)?;
    let cached = {
        let shared = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || stage::lookup::cached_here(&shared)).await?
    };
    let stages = Stages {
        shared: Arc::clone(&shared),
        cached: cached.into_iter().map(Mutex::new).collect(),
    };
    let walked = walk::walk(&deps, &stages, interrupts.recv()).await;
    let interrupted = walked.interrupted;
    let done = match interrupted {
        Some(signal) => stop(&shared, &interrupts, signal, walked).await?,
        None => walked.done,
    };
    let stages = plan
        .stages
        .values()
        .zip(done)
        .map(|(s, f)| {
            let f = f.expect("every stage finished or was skipped");
            (s.name.clone(), f.into_record(s))
        })
        .collect();
    let run = RunInfo {
        id: shared.run_id.clone(),
        started,
        duration_ms: shared.t0.elapsed().as_millis() as u64,
        overrides: opts.overrides,
        no_cache: opts.no_cache,
        interrupted: interrupted.is_some(),
    };
    let record = RunRecord::assemble(&plan, run, stages);
    record::save(&shared.store, &record)?;
    Ok(record)
}

fn stage_index(plan: &Plan, name: &str) -> usize {
    plan.stages.get_index_of(name).expect("validated reference")
}

/// The run's stages, as the walk hands them out, with those found in this store before
/// the walk.
struct Stages {
    shared: Arc<Shared>,
    cached: Vec<Mutex<Option<stage::lookup::Cached>>>,
}

impl Visitor for Stages {
    type Done = Finished;

    fn start(
        &self,
        i: usize,
        done: &[Option<Finished>],
    ) -> impl Future<Output = Finished> + Send + 'static {
        let plan = &self.shared.plan;
        let stage = &plan.stages[i];
        let upstream = |name: &str| {
            done[stage_index(plan, name)]
                .as_ref()
                .expect("dependency finished")
        };
        let inputs = stage.input_artifacts(|up| &upstream(up).outputs);
        // The first stage upstream whose remote entry nobody verified, if any.
        let tainted = stage
            .deps
            .iter()
            .find_map(|d| upstream(d).unverified.clone());
        let cached = self.cached[i].lock().expect("not poisoned").take();
        stage::run(Arc::clone(&self.shared), i, inputs, tainted, cached)
    }

    fn succeeded(&self, done: &Finished) -> bool {
        matches!(done.status, StageStatus::Hit | StageStatus::Ran)
    }

    fn skipped(&self, i: usize, cause: usize, caused: &Finished) -> Finished {
        let shared = &self.shared;
        let why = format!(
            "`{}` {}",
            shared.plan.stages[cause].name,
            caused.status.label().to_lowercase()
        );
        let name = &shared.plan.stages[i].name;
        shared
            .progress
            .finished(name, StageStatus::Skipped, Duration::ZERO, Some(&why));
        Finished::without_outputs(StageStatus::Skipped, format!("not run: {why}"), shared)
    }

    fn panicked(&self, i: usize, why: String) -> Finished {
        let message = format!("stage task failed: {why}");
        let name = &self.shared.plan.stages[i].name;
        self.shared
            .progress
            .finished(name, StageStatus::Failed, Duration::ZERO, Some(&message));
        Finished::without_outputs(StageStatus::Failed, message, &self.shared)
    }
}

/// After an interrupt: stops what runs (stage processes when signalled, the run's Slurm
/// jobs either way) and says how each unfinished stage ended.
async fn stop(
    shared: &Arc<Shared>,
    interrupts: &Interrupts,
    signal: &'static str,
    walked: Walked<Finished>,
) -> Result<Vec<Option<Finished>>> {
    shared.progress.warn(&format!(
        "interrupted ({signal}): stopping the running stages; unfinished stages keep \
         nothing (checkpoints are kept), the next run starts them again"
    ));
    // Stage processes are tracked per process, not per run: a signal ends them all; a
    // notified stop (one run among others in the process) leaves them to finish, and
    // what they write is discarded with the run's working folders.
    if matches!(interrupts, Interrupts::Signals { .. }) {
        tokio::task::spawn_blocking(|| crate::process::terminate_all(Duration::from_secs(2)))
            .await?;
    }
    // Slurm jobs are the run's own: cancelled either way.
    let slurm = Arc::clone(&shared.slurm);
    let cancelled = tokio::task::spawn_blocking(move || slurm.cancel_all()).await?;
    if !cancelled.is_empty() {
        shared
            .progress
            .warn(&format!("cancelled Slurm jobs {}", cancelled.join(", ")));
    }
    let ended = walked
        .done
        .into_iter()
        .zip(walked.started)
        .map(|(done, started)| {
            done.or_else(|| {
                let (status, message) = match started {
                    true => (StageStatus::Interrupted, format!("interrupted by {signal}")),
                    false => (
                        StageStatus::Skipped,
                        format!("not run: interrupted by {signal}"),
                    ),
                };
                Some(Finished::without_outputs(status, message, shared))
            })
        });
    Ok(ended.collect())
}
