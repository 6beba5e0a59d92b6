//! Runs a plan: stages start as soon as their dependencies are done, up to `--jobs` at a
//! time and one per resource class; each is restored from the cache when its key is known.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value as Json;
use tokio::sync::{mpsc, Semaphore};

use crate::kind::{CachedOutputs, KeyContext, Outcome, RunContext};
use crate::pipeline::{Plan, PlannedStage};
use crate::progress::Progress;
use crate::record::{self, RunRecord, RunStatus, StageRecord, StageStatus};
use crate::store::{self, Artifact, CacheEntry, Check, Store};

pub struct ExecOptions {
    pub jobs: usize,
    pub no_cache: bool,
    /// The `--set` overrides, kept in the run record for `rerun`.
    pub overrides: Vec<String>,
}

/// JSON with object keys sorted, so that equal values always hash equally.
pub fn canonical_json(v: &Json) -> String {
    fn sort(v: &Json) -> Json {
        match v {
            Json::Object(m) => {
                let sorted: BTreeMap<&String, Json> = m.iter().map(|(k, v)| (k, sort(v))).collect();
                Json::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Json::Array(a) => Json::Array(a.iter().map(sort).collect()),
            _ => v.clone(),
        }
    }
    sort(v).to_string()
}

/// The cache key of a stage given its input artifacts, and the kind's extra key material.
pub fn stage_key(
    stage: &PlannedStage,
    plan: &Plan,
    inputs: &BTreeMap<String, Vec<Artifact>>,
) -> Result<(String, Json)> {
    let extra = stage
        .prepared
        .key_material(&KeyContext {
            stage: &stage.name,
            pipeline_dir: &plan.dir,
        })
        .with_context(|| format!("stage `{}`: cannot compute its cache key", stage.name))?;
    let material = serde_json::json!({
        "kind": stage.kind.name(),
        "version": stage.kind.version(),
        "with": stage.with,
        "inputs": input_hashes(inputs),
        "backend": if stage.uses_backend { Json::String(plan.backend.clone()) } else { Json::Null },
        "extra": extra,
    });
    let key = blake3::hash(canonical_json(&material).as_bytes())
        .to_hex()
        .to_string();
    tracing::debug!(stage = %stage.name, %key, "cache key");
    Ok((key, extra))
}

fn input_hashes(inputs: &BTreeMap<String, Vec<Artifact>>) -> BTreeMap<String, Vec<String>> {
    inputs
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|a| a.hash.to_string()).collect()))
        .collect()
}

/// The stored outputs for a key, if the entry is this store's, names exactly the
/// stage's outputs, every one of them is present and intact, and the stage still
/// vouches for them. Anything else is a miss (with a warning), and an untrustworthy
/// entry is removed.
pub fn lookup(
    store: &Store,
    stage: &PlannedStage,
    key: &str,
    warn: &dyn Fn(&str),
) -> Option<CacheEntry> {
    let entry = match store.cache_get(key) {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            tracing::debug!(%key, "cache miss");
            return None;
        }
        Err(why) => {
            warn(&format!("ignoring its cached result: {why}; running again"));
            store.cache_remove(key);
            return None;
        }
    };
    if let Err(why) = entry_fits(&entry, stage) {
        warn(&format!("ignoring its cached result: {why}; running again"));
        store.cache_remove(key);
        return None;
    }
    for (name, a) in &entry.outputs {
        let problem = match store.check(a) {
            Ok(Check::Ok) => continue,
            Ok(Check::Missing) => "is missing from the store",
            Ok(Check::Corrupt) => "was corrupt (did not match its hash) and has been discarded",
            Err(_) => "could not be read",
        };
        warn(&format!(
            "cached output `{name}` ({}) {problem}; rebuilding",
            a.hash.short()
        ));
        store.cache_remove(key);
        return None;
    }
    let paths = entry
        .outputs
        .iter()
        .map(|(k, a)| (k.clone(), store.path_of(a)))
        .collect();
    let cached = CachedOutputs {
        outputs: &paths,
        store: store.root(),
    };
    if let Err(why) = stage.prepared.revalidate(&cached) {
        warn(&format!(
            "cached result no longer holds ({why:#}); running again"
        ));
        store.cache_remove(key);
        return None;
    }
    tracing::debug!(%key, "cache hit");
    Some(entry)
}

/// Whether a (sealed) entry was made by this stage's kind and names exactly its outputs.
fn entry_fits(entry: &CacheEntry, stage: &PlannedStage) -> Result<(), String> {
    if entry.kind != stage.kind.name() {
        return Err(format!(
            "its cache entry was made by kind `{}`, not `{}`",
            entry.kind,
            stage.kind.name()
        ));
    }
    let names: Vec<&String> = entry.outputs.keys().collect();
    let mut declared: Vec<&String> = stage.outputs.iter().collect();
    declared.sort();
    if names != declared {
        return Err(format!(
            "its cache entry names outputs {names:?}, but the stage declares {declared:?}"
        ));
    }
    Ok(())
}

/// Every input must be intact when a stage starts and still when it ends: inputs are
/// read-only links into the store, and a stage that writes through one anyway (or
/// anything else that changes a stored object meanwhile) fails instead of caching a
/// result built on changed data. The damaged object is discarded, so the stage that
/// made it runs again next time.
fn check_inputs(
    store: &Store,
    inputs: &BTreeMap<String, Vec<Artifact>>,
    after_run: bool,
) -> Result<()> {
    for (name, arts) in inputs {
        for a in arts {
            match store.check(a)? {
                Check::Ok => {}
                Check::Missing | Check::Corrupt if after_run => anyhow::bail!(
                    "input `{name}` ({}) changed while the stage ran; stages must not write to \
                     their inputs (read-only links into the store). The damaged object was \
                     discarded and is rebuilt by the next run",
                    a.hash.short()
                ),
                Check::Missing | Check::Corrupt => anyhow::bail!(
                    "input `{name}` ({}) is missing or corrupt in the store; it was discarded \
                     and is rebuilt by the next run",
                    a.hash.short()
                ),
            }
        }
    }
    Ok(())
}

struct Shared {
    plan: Arc<Plan>,
    store: Store,
    progress: Progress,
    jobs: Arc<Semaphore>,
    resources: HashMap<String, Arc<Semaphore>>,
    no_cache: bool,
    run_id: String,
    t0: Instant,
}

struct Finished {
    status: StageStatus,
    key: Option<String>,
    key_material: Json,
    inputs: BTreeMap<String, Vec<String>>,
    outputs: BTreeMap<String, Artifact>,
    message: Option<String>,
    notes: Vec<String>,
    start: Duration,
    elapsed: Duration,
}

impl Finished {
    /// A stage that produced nothing (skipped, or cut short by an interrupt), now.
    fn without_outputs(status: StageStatus, message: String, shared: &Shared) -> Finished {
        Finished {
            status,
            key: None,
            key_material: Json::Null,
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            message: Some(message),
            notes: Vec::new(),
            start: shared.t0.elapsed(),
            elapsed: Duration::ZERO,
        }
    }
}

pub async fn run(plan: Arc<Plan>, store: Store, opts: ExecOptions) -> Result<RunRecord> {
    let lock_store = store.clone();
    let _store_lock = tokio::task::spawn_blocking(move || lock_store.lock_store(false)).await??;
    let n = plan.stages.len();
    let mut resources = HashMap::new();
    for s in plan.stages.values() {
        if let Some(class) = &s.resource {
            let cap = plan.resources.get(class).copied().unwrap_or(1).max(1);
            resources
                .entry(class.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(cap)));
        }
    }
    let shared = Arc::new(Shared {
        progress: Progress::new(n),
        jobs: Arc::new(Semaphore::new(opts.jobs.max(1))),
        resources,
        no_cache: opts.no_cache,
        run_id: record::new_run_id(),
        t0: Instant::now(),
        store,
        plan: Arc::clone(&plan),
    });
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
        let shared = Arc::clone(&shared);
        let tx = tx.clone();
        *running += 1;
        tokio::spawn(async move {
            let f = run_stage(&shared, i, inputs).await;
            let _ = tx.send((i, f));
        });
    };

    let ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    for i in ready {
        spawn(i, &results, &mut running);
    }
    let mut interrupts = Interrupts::new()?;
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
        tokio::task::spawn_blocking(|| crate::process::terminate_all(Duration::from_secs(2)))
            .await?;
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

    let mut stages = indexmap::IndexMap::new();
    for (i, s) in plan.stages.values().enumerate() {
        let f = results[i]
            .take()
            .expect("every stage finished or was skipped");
        stages.insert(
            s.name.clone(),
            StageRecord {
                kind: s.kind.name().to_string(),
                version: s.kind.version(),
                status: f.status,
                key: f.key,
                start_ms: f.start.as_millis() as u64,
                duration_ms: f.elapsed.as_millis() as u64,
                with: s.with.clone(),
                params_used: s.params_used.iter().cloned().collect(),
                inputs: f.inputs,
                key_material: f.key_material,
                outputs: f.outputs,
                message: f.message,
                notes: f.notes,
            },
        );
    }
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

/// SIGINT, SIGTERM and SIGHUP, listened to for the whole run so that none is lost.
#[cfg(unix)]
struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Interrupts {
    fn new() -> Result<Interrupts> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The name of the next signal received.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

#[cfg(not(unix))]
struct Interrupts;

#[cfg(not(unix))]
impl Interrupts {
    fn new() -> Result<Interrupts> {
        Ok(Interrupts)
    }
    async fn recv(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
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

async fn run_stage(
    shared: &Arc<Shared>,
    i: usize,
    inputs: BTreeMap<String, Vec<Artifact>>,
) -> Finished {
    let start = shared.t0.elapsed();
    let stage = &shared.plan.stages[i];
    let mut f = Finished {
        status: StageStatus::Failed,
        key: None,
        key_material: Json::Null,
        inputs: input_hashes(&inputs),
        outputs: BTreeMap::new(),
        message: None,
        notes: Vec::new(),
        start,
        elapsed: Duration::ZERO,
    };

    // Key and cache lookup need no job slot: a fully cached pipeline never waits.
    let s2 = Arc::clone(shared);
    let inputs2 = inputs.clone();
    let keyed = tokio::task::spawn_blocking(move || {
        let stage = &s2.plan.stages[i];
        let (key, extra) = stage_key(stage, &s2.plan, &inputs2)?;
        let hit = if s2.no_cache {
            None
        } else {
            lookup(&s2.store, stage, &key, &|w| {
                s2.progress.warn(&format!("{}: {w}", stage.name))
            })
        };
        anyhow::Ok((key, extra, hit))
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r);
    let (key, extra, hit) = match keyed {
        Ok(k) => k,
        Err(e) => return fail(shared, f, &stage.name, format!("{e:#}")),
    };
    f.key = Some(key.clone());
    f.key_material = extra;
    if let Some(entry) = hit {
        f.status = StageStatus::Hit;
        f.outputs = entry.outputs;
        f.notes = entry.notes;
        f.elapsed = shared.t0.elapsed() - start;
        shared
            .progress
            .finished(&stage.name, StageStatus::Hit, f.elapsed, None);
        return f;
    }

    let _job = Arc::clone(&shared.jobs)
        .acquire_owned()
        .await
        .expect("semaphore never closes");
    let _class = match stage
        .resource
        .as_ref()
        .and_then(|c| shared.resources.get(c))
    {
        Some(sem) => Some(
            Arc::clone(sem)
                .acquire_owned()
                .await
                .expect("semaphore never closes"),
        ),
        None => None,
    };
    // The timeline shows execution, not time spent waiting for a slot.
    f.start = shared.t0.elapsed();
    shared.progress.started(&stage.name, stage.kind.name());
    let s2 = Arc::clone(shared);
    let result = tokio::task::spawn_blocking(move || execute(&s2, i, &key, &inputs)).await;
    f.elapsed = shared.t0.elapsed() - f.start;
    match result {
        Ok(Ok(Executed::Done(entry, cached))) => {
            f.status = if cached {
                StageStatus::Hit
            } else {
                StageStatus::Ran
            };
            f.outputs = entry.outputs;
            f.notes = entry.notes;
        }
        Ok(Ok(Executed::Deferred(reason))) => {
            f.status = StageStatus::Deferred;
            f.message = Some(reason);
        }
        Ok(Err(e)) => return fail(shared, f, &stage.name, format!("{e:#}")),
        Err(e) => return fail(shared, f, &stage.name, format!("stage task failed: {e}")),
    }
    shared
        .progress
        .finished(&stage.name, f.status, f.elapsed, f.message.as_deref());
    f
}

fn fail(shared: &Shared, mut f: Finished, stage: &str, message: String) -> Finished {
    f.status = StageStatus::Failed;
    f.elapsed = shared.t0.elapsed() - f.start;
    shared
        .progress
        .finished(stage, StageStatus::Failed, f.elapsed, Some(&message));
    f.message = Some(message);
    f
}

enum Executed {
    /// Outputs, and whether another process produced them while we waited.
    Done(CacheEntry, bool),
    Deferred(String),
}

fn execute(
    shared: &Shared,
    i: usize,
    key: &str,
    inputs: &BTreeMap<String, Vec<Artifact>>,
) -> Result<Executed> {
    let stage = &shared.plan.stages[i];
    let store = &shared.store;
    let _lock = match store.try_lock_key(key)? {
        Some(l) => l,
        None => {
            shared.progress.waiting(&stage.name);
            store.lock_key(key)?
        }
    };
    if !shared.no_cache {
        if let Some(entry) = lookup(store, stage, key, &|w| {
            shared.progress.warn(&format!("{}: {w}", stage.name))
        }) {
            return Ok(Executed::Done(entry, true));
        }
    }
    tracing::debug!(stage = %stage.name, %key, "running");
    let tag = &key[..16];
    store.clear_stale_tmp(tag);
    let work = store.tmp_dir(tag)?;
    let result = execute_in(shared, stage, key, inputs, &work);
    let _ = store::remove_any(&work);
    result
}

fn execute_in(
    shared: &Shared,
    stage: &PlannedStage,
    key: &str,
    inputs: &BTreeMap<String, Vec<Artifact>>,
    work: &Path,
) -> Result<Executed> {
    let store = &shared.store;
    let outputs_dir = work.join("outputs");
    std::fs::create_dir_all(&outputs_dir)?;
    check_inputs(store, inputs, false)?;
    let input_paths = link_inputs(store, work, inputs)?;
    let scratch = store.scratch_dir(key);
    std::fs::create_dir_all(&scratch)?;
    let pipeline_dir = std::path::absolute(&shared.plan.dir)?;
    let log_dir = store.logs_dir(&shared.run_id);
    std::fs::create_dir_all(&log_dir)?;
    let log = log_dir.join(format!("{}.log", stage.name));
    let report = |msg: &str| shared.progress.message(&stage.name, msg);
    let notes = std::sync::Mutex::new(Vec::new());
    let input_refs: BTreeMap<String, Vec<String>> = stage
        .inputs
        .iter()
        .map(|(port, refs)| (port.clone(), refs.iter().map(ToString::to_string).collect()))
        .collect();
    let ctx = RunContext {
        stage: &stage.name,
        workdir: work,
        inputs: &input_paths,
        input_refs: &input_refs,
        outputs_dir: &outputs_dir,
        scratch: &scratch,
        store: store.root(),
        pipeline_dir: &pipeline_dir,
        backend: &shared.plan.backend,
        log: &log,
        progress: &report,
        notes: &notes,
    };
    let t = Instant::now();
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage.prepared.run(&ctx)))
            .unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(anyhow::anyhow!("stage panicked: {msg}"))
            })?;
    check_inputs(store, inputs, true)?;
    if let Outcome::Deferred(reason) = outcome {
        return Ok(Executed::Deferred(reason));
    }
    let mut outputs = BTreeMap::new();
    for name in &stage.outputs {
        let path = outputs_dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            anyhow::bail!("declared output `{name}` was not written (expected outputs/{name} in the stage's working directory)");
        }
        let artifact = store.publish(&path)?;
        tracing::debug!(stage = %stage.name, output = %name, hash = %artifact.hash, size = artifact.size, "stored");
        outputs.insert(name.clone(), artifact);
    }
    let entry = CacheEntry {
        key: key.to_string(),
        kind: stage.kind.name().to_string(),
        outputs,
        duration_ms: t.elapsed().as_millis() as u64,
        notes: notes.into_inner().expect("notes lock"),
        seal: String::new(),
    };
    store.cache_put(&entry)?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(Executed::Done(entry, false))
}

/// Links each input artifact at `inputs/<name>` (or `inputs/<name>/<i>` for lists).
fn link_inputs(
    store: &Store,
    work: &Path,
    inputs: &BTreeMap<String, Vec<Artifact>>,
) -> Result<BTreeMap<String, Vec<PathBuf>>> {
    let dir = work.join("inputs");
    std::fs::create_dir_all(&dir)?;
    let mut out = BTreeMap::new();
    for (name, arts) in inputs {
        let paths: Vec<PathBuf> = arts.iter().map(|a| store.path_of(a)).collect();
        if paths.len() == 1 {
            symlink(&paths[0], &dir.join(name))?;
        } else {
            std::fs::create_dir_all(dir.join(name))?;
            for (i, p) in paths.iter().enumerate() {
                symlink(p, &dir.join(name).join(i.to_string()))?;
            }
        }
        out.insert(name.clone(), paths);
    }
    Ok(out)
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("cannot link input {}", link.display()))
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> Result<()> {
    if target.is_dir() {
        std::os::windows::fs::symlink_dir(target, link)?;
    } else {
        std::fs::copy(target, link)?;
    }
    Ok(())
}
