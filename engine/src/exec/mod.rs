//! The scheduler: walks the plan's graph and hands each stage to the runner
//! ([`runner`]) as soon as its dependencies are done, up to `--jobs` at a time and within
//! each resource class's capacity; skips what depends on a stage that did not finish;
//! stops on an interrupt; and saves the run's record.

mod job;
mod runner;
pub mod slots;
pub mod slurm;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::{mpsc, Notify, Semaphore};

pub use job::stage_job;

use crate::pipeline::Plan;
use crate::progress::Progress;
use crate::record::{self, RunRecord, RunStatus, StageStatus};
use crate::remote::Remote;
use crate::store::{Artifact, Store};
use runner::{run_stage, Finished};
use slots::Slots;
use slurm::Slurm;

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

/// What interrupts a run: its running stages are stopped, unstarted ones skipped, and
/// the run is recorded as interrupted.
#[derive(Clone)]
pub enum StopOn {
    /// SIGINT, SIGTERM or SIGHUP (the command line).
    Signals,
    /// A notification (a program embedding the engine, or a test). Stage processes
    /// are not signalled: several runs may share the process.
    Notified(Arc<Notify>),
}

/// What the runner needs of the run.
struct Shared {
    plan: Arc<Plan>,
    store: Store,
    progress: Arc<Progress>,
    jobs: Arc<Semaphore>,
    resources: HashMap<String, Arc<Slots>>,
    no_cache: bool,
    remote: Option<Arc<Remote>>,
    run_id: String,
    /// The `--set` overrides the plan was loaded with (a job loads it again).
    overrides: Vec<String>,
    slurm: Arc<Slurm>,
    t0: Instant,
}

impl Shared {
    fn new(
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

pub async fn run(plan: Arc<Plan>, store: Store, opts: ExecOptions) -> Result<RunRecord> {
    let lock_store = store.clone();
    let _store_lock = tokio::task::spawn_blocking(move || lock_store.lock_store(false)).await??;
    let n = plan.stages.len();
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

    let index = |name: &str| plan.stages.get_index_of(name).expect("validated reference");
    let mut waiting: Vec<usize> = plan.stages.values().map(|s| s.deps.len()).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, s) in plan.stages.values().enumerate() {
        for d in &s.deps {
            dependents[index(d)].push(i);
        }
    }
    let mut results: Vec<Option<Finished>> = (0..n).map(|_| None).collect();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Finished)>();
    let mut running = 0usize;

    let spawn = |i: usize, results: &Vec<Option<Finished>>, running: &mut usize| {
        let stage = &plan.stages[i];
        let inputs: BTreeMap<String, Vec<Artifact>> = stage
            .inputs
            .iter()
            .map(|(port, refs)| {
                let arts = refs
                    .iter()
                    .map(|r| {
                        results[index(&r.stage)]
                            .as_ref()
                            .expect("dependency finished")
                            .outputs[&r.output]
                            .clone()
                    })
                    .collect();
                (port.clone(), arts)
            })
            .collect();
        // The first stage upstream whose remote entry nobody verified, if any.
        let tainted = stage.deps.iter().find_map(|d| {
            let up = results[index(d)].as_ref().expect("dependency finished");
            up.unverified.clone()
        });
        let shared = Arc::clone(&shared);
        let tx = tx.clone();
        *running += 1;
        tokio::spawn(async move {
            let f = run_stage(&shared, i, inputs, tainted).await;
            let _ = tx.send((i, f));
        });
    };

    let ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    for i in ready {
        spawn(i, &results, &mut running);
    }
    let mut interrupts = Interrupts::new(opts.stop_on)?;
    let mut interrupted = None;
    while running > 0 {
        let (i, f) = tokio::select! {
            msg = rx.recv() => msg.expect("senders live while stages run"),
            signal = interrupts.recv() => {
                interrupted = Some(signal);
                break;
            }
        };
        running -= 1;
        let ok = matches!(f.status, StageStatus::Hit | StageStatus::Ran);
        let why = format!(
            "`{}` {}",
            plan.stages[i].name,
            f.status.label().to_lowercase()
        );
        results[i] = Some(f);
        if ok {
            for &d in &dependents[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 && results[d].is_none() {
                    spawn(d, &results, &mut running);
                }
            }
        } else {
            skip_dependents(i, &dependents, &mut results, &why, &shared);
        }
    }

    if let Some(signal) = interrupted {
        shared.progress.warn(&format!(
            "interrupted ({signal}): stopping the running stages; unfinished stages keep \
             nothing (checkpoints are kept), the next run starts them again"
        ));
        // Stage processes are tracked per process, not per run: a signal ends them
        // all; a notified stop (one run among others in the process) leaves them to
        // finish, and what they write is discarded with the run's working folders.
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
        for i in 0..n {
            if results[i].is_none() {
                // A stage is started exactly when its last dependency finishes.
                let (status, message) = if waiting[i] == 0 {
                    (StageStatus::Interrupted, format!("interrupted by {signal}"))
                } else {
                    (
                        StageStatus::Skipped,
                        format!("not run: interrupted by {signal}"),
                    )
                };
                results[i] = Some(Finished::without_outputs(status, message, &shared));
            }
        }
    }

    let stages: indexmap::IndexMap<_, _> = plan
        .stages
        .values()
        .zip(results)
        .map(|(s, f)| {
            let f = f.expect("every stage finished or was skipped");
            (s.name.clone(), f.into_record(s))
        })
        .collect();
    let status = if interrupted.is_some() {
        RunStatus::Interrupted
    } else if stages.values().any(|s| s.status == StageStatus::Failed) {
        RunStatus::Failed
    } else if stages
        .values()
        .any(|s| matches!(s.status, StageStatus::Deferred | StageStatus::Skipped))
    {
        RunStatus::Deferred
    } else {
        RunStatus::Ok
    };
    let record = RunRecord {
        id: shared.run_id.clone(),
        started,
        duration_ms: shared.t0.elapsed().as_millis() as u64,
        pipeline: std::path::absolute(&plan.source.path)
            .unwrap_or_else(|_| plan.source.path.clone()),
        name: plan.name.clone(),
        pipeline_hash: plan.pipeline_hash(),
        pipeline_source: plan.source.text.clone(),
        overrides: opts.overrides,
        params: plan.params.clone(),
        backend: plan.backend.clone(),
        no_cache: opts.no_cache,
        soma_flow_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: record::git_commit(&plan.dir),
        status,
        stages,
    };
    record::save(&shared.store, &record)?;
    Ok(record)
}

/// The run's interrupt source. Signals are listened to for the whole run so that none
/// is lost.
enum Interrupts {
    #[cfg(unix)]
    Signals {
        int: tokio::signal::unix::Signal,
        term: tokio::signal::unix::Signal,
        hup: tokio::signal::unix::Signal,
    },
    #[cfg(not(unix))]
    Signals,
    Notified(Arc<Notify>),
}

impl Interrupts {
    fn new(stop_on: StopOn) -> Result<Interrupts> {
        Ok(match stop_on {
            #[cfg(unix)]
            StopOn::Signals => {
                use tokio::signal::unix::{signal, SignalKind};
                Interrupts::Signals {
                    int: signal(SignalKind::interrupt())?,
                    term: signal(SignalKind::terminate())?,
                    hup: signal(SignalKind::hangup())?,
                }
            }
            #[cfg(not(unix))]
            StopOn::Signals => Interrupts::Signals,
            StopOn::Notified(n) => Interrupts::Notified(n),
        })
    }

    /// The name of the next interrupt.
    async fn recv(&mut self) -> &'static str {
        match self {
            #[cfg(unix)]
            Interrupts::Signals { int, term, hup } => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            },
            #[cfg(not(unix))]
            Interrupts::Signals => {
                let _ = tokio::signal::ctrl_c().await;
                "Ctrl-C"
            }
            Interrupts::Notified(n) => {
                n.notified().await;
                "a stop request"
            }
        }
    }
}

fn skip_dependents(
    i: usize,
    dependents: &[Vec<usize>],
    results: &mut [Option<Finished>],
    why: &str,
    shared: &Shared,
) {
    for &d in &dependents[i] {
        if results[d].is_none() {
            let name = &shared.plan.stages[d].name;
            shared
                .progress
                .finished(name, StageStatus::Skipped, Duration::ZERO, Some(why));
            results[d] = Some(Finished::without_outputs(
                StageStatus::Skipped,
                format!("not run: {why}"),
                shared,
            ));
            skip_dependents(d, dependents, results, why, shared);
        }
    }
}
