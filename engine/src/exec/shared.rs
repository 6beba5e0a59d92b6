//! What every step of a run needs: the plan, the store, progress, the slots stages
//! take, the remote store and the Slurm client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use tokio::sync::Semaphore;

use super::slots::Slots;
use super::slurm::Slurm;
use crate::pipeline::Plan;
use crate::progress::Progress;
use crate::remote::Remote;
use crate::store::Store;

/// What every step of a run needs, shared by the stages it runs.
pub(super) struct Shared {
    pub(super) plan: Arc<Plan>,
    pub(super) store: Store,
    pub(super) progress: Arc<Progress>,
    pub(super) jobs: Arc<Semaphore>,
    /// Keys and lookups at a time: one per core. They need no job slot (a cached
    /// pipeline never waits), but each holds a blocking thread, and a large graph
    /// would otherwise start a thread (and its allocator heap) per ready stage.
    pub(super) lookups: Semaphore,
    pub(super) resources: HashMap<String, Arc<Slots>>,
    pub(super) no_cache: bool,
    pub(super) remote: Option<Arc<Remote>>,
    pub(super) run_id: String,
    /// The `--set` overrides the plan was loaded with (a job loads it again).
    pub(super) overrides: Vec<String>,
    pub(super) slurm: Arc<Slurm>,
    pub(super) t0: Instant,
}

impl Shared {
    pub(super) fn new(
        plan: Arc<Plan>,
        store: Store,
        run_id: String,
        overrides: Vec<String>,
        remote: Option<Arc<Remote>>,
        jobs: usize,
        no_cache: bool,
    ) -> Result<Shared> {
        let mut resources = HashMap::new();
        for s in plan.stages.values() {
            if let Some(class) = &s.requirements.resource {
                let cap = plan.resources.get(class).copied().unwrap_or(1).max(1);
                resources
                    .entry(class.clone())
                    .or_insert_with(|| Slots::new(cap));
            }
        }
        Ok(Shared {
            progress: Arc::new(Progress::new(plan.stages.len())),
            jobs: Arc::new(Semaphore::new(jobs.max(1))),
            lookups: Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())),
            resources,
            no_cache,
            remote,
            run_id,
            overrides,
            slurm: Slurm::new()?,
            t0: Instant::now(),
            store,
            plan,
        })
    }
}
