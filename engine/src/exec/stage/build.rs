//! Building a stage in this process: its inputs linked read-only into a fresh working
//! directory (and checked before and after), the kind run, its outputs published into
//! the store and its cache entry written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use super::lookup::Origin;
use super::share::fetch_inputs;
use crate::exec::shared::Shared;
use crate::kind::{Outcome, RunContext};
use crate::pipeline::PlannedStage;
use crate::remote::Lease;
use crate::store::{Artifact, CacheEntry, Check, Store};

/// How executing a stage ended (its failures are errors).
pub(in crate::exec) enum Executed {
    /// Built here, with the remote store's lease on its key if one was taken.
    Built(CacheEntry, Option<Lease>),
    /// Built by another process while this one waited for the key.
    Found(CacheEntry, Origin),
    /// Built by a job on a machine of its own, into the remote store.
    BuiltElsewhere(CacheEntry),
    Deferred(String),
}

pub(in crate::exec) fn execute_in(
    shared: &Shared,
    stage: &PlannedStage,
    key: &str,
    inputs: &BTreeMap<String, Vec<Artifact>>,
    work: &Path,
) -> Result<Executed> {
    let store = &shared.store;
    let outputs_dir = work.join("outputs");
    std::fs::create_dir_all(&outputs_dir)?;
    if let Some(remote) = &shared.remote {
        fetch_inputs(shared, stage, remote, inputs)?;
    }
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
    let entry = CacheEntry {
        key: key.to_string(),
        kind: stage.kind.name().to_string(),
        outputs: publish_outputs(store, stage, &outputs_dir)?,
        duration_ms: t.elapsed().as_millis() as u64,
        notes: notes.into_inner().expect("notes lock"),
        seal: String::new(),
        unverified: false,
    };
    store.cache_put(&entry)?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(Executed::Built(entry, None))
}

/// Moves each declared output from `outputs_dir` into the store.
fn publish_outputs(
    store: &Store,
    stage: &PlannedStage,
    outputs_dir: &Path,
) -> Result<BTreeMap<String, Artifact>> {
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
    Ok(outputs)
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
