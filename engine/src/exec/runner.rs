//! The stage runner: for one stage the scheduler hands out, compute its key, look it up,
//! else take the key's lock, execute the kind in a fresh working directory, store its
//! outputs and cache entry, and say how it finished.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value as Json;

use super::Shared;
use crate::key::CacheKey;
use crate::kind::{CachedOutputs, Outcome, RunContext};
use crate::pipeline::PlannedStage;
use crate::record::{StageRecord, StageStatus};
use crate::store::{self, Artifact, CacheEntry, Check, Store};

pub(super) struct Finished {
    pub status: StageStatus,
    key: Option<CacheKey>,
    inputs: BTreeMap<String, Vec<String>>,
    pub outputs: BTreeMap<String, Artifact>,
    message: Option<String>,
    notes: Vec<String>,
    start: Duration,
    elapsed: Duration,
}

impl Finished {
    /// A stage that produced nothing (skipped, or cut short by an interrupt), now.
    pub(super) fn without_outputs(
        status: StageStatus,
        message: String,
        shared: &Shared,
    ) -> Finished {
        Finished {
            status,
            key: None,
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            message: Some(message),
            notes: Vec::new(),
            start: shared.t0.elapsed(),
            elapsed: Duration::ZERO,
        }
    }

    /// The stage's record in the run.
    pub(super) fn into_record(self, stage: &PlannedStage) -> StageRecord {
        let (key, key_material) = match self.key {
            Some(k) => (Some(k.hash), k.extra),
            None => (None, Json::Null),
        };
        StageRecord {
            kind: stage.kind.name().to_string(),
            version: stage.kind.version(),
            status: self.status,
            key,
            start_ms: self.start.as_millis() as u64,
            duration_ms: self.elapsed.as_millis() as u64,
            with: stage.with.clone(),
            params_used: stage.params_used.iter().cloned().collect(),
            inputs: self.inputs,
            key_material,
            outputs: self.outputs,
            message: self.message,
            notes: self.notes,
        }
    }
}

/// The stored outputs for a key, if the entry is this store's, names exactly the
/// stage's outputs, every one of them is present and intact, and the stage still
/// vouches for them. Anything else is a miss (with a warning), and an untrustworthy
/// entry is removed.
fn lookup(
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

pub(super) async fn run_stage(
    shared: &Arc<Shared>,
    i: usize,
    inputs: BTreeMap<String, Vec<Artifact>>,
) -> Finished {
    let start = shared.t0.elapsed();
    let stage = &shared.plan.stages[i];
    let mut f = Finished {
        status: StageStatus::Failed,
        key: None,
        inputs: crate::key::input_hashes(&inputs),
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
        let key = CacheKey::compute(stage, &s2.plan, &inputs2)?;
        let hit = if s2.no_cache {
            None
        } else {
            lookup(&s2.store, stage, &key.hash, &|w| {
                s2.progress.warn(&format!("{}: {w}", stage.name))
            })
        };
        anyhow::Ok((key, hit))
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r);
    let (key, hit) = match keyed {
        Ok(k) => k,
        Err(e) => return fail(shared, f, &stage.name, format!("{e:#}")),
    };
    let hash = key.hash.clone();
    f.key = Some(key);
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
        .requirements
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
    let result = tokio::task::spawn_blocking(move || execute(&s2, i, &hash, &inputs)).await;
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
