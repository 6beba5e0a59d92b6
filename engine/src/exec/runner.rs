//! The stage runner: for one stage the scheduler hands out, compute its key, look it up,
//! else take the key's lock, execute the kind in a fresh working directory, store its
//! outputs and cache entry, and say how it finished.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;

use super::job::{self, Elsewhere};
use super::slots::GPU;
use super::Shared;
use crate::key::CacheKey;
use crate::kind::{shown_notes, CachedOutputs, FetchOutput, Outcome, RunContext};
use crate::pipeline::Executor;
use crate::pipeline::PlannedStage;
use crate::record::{StageRecord, StageStatus};
use crate::remote::{Claim, Lease, LeaseWatch, Lookup, Meter, Remote, RemoteEntry};
use crate::store::{self, Artifact, CacheEntry, Check, Store};

pub(super) struct Finished {
    pub status: StageStatus,
    key: Option<CacheKey>,
    inputs: BTreeMap<String, Vec<String>>,
    pub outputs: BTreeMap<String, Artifact>,
    /// A hit in the remote store: the outputs come down only when a stage needs them.
    remote: bool,
    /// The stage whose remote entry nobody verified that these outputs derive from
    /// (this one, or one upstream).
    pub unverified: Option<String>,
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
            remote: false,
            unverified: None,
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
            remote: self.remote,
            unverified: self.unverified,
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
    let entry = match intact_entry(store, stage, key) {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            tracing::debug!(%key, "cache miss");
            return None;
        }
        Err(unusable) => {
            warn(&match unusable {
                Unusable::Entry(why) => format!("ignoring its cached result: {why}; running again"),
                Unusable::Output(what) => format!("cached output {what}; rebuilding"),
            });
            store.cache_remove(key);
            return None;
        }
    };
    if let Err(why) = still_holds(store, stage, &entry, None) {
        warn(&format!(
            "cached result no longer holds ({why:#}); running again"
        ));
        store.cache_remove(key);
        return None;
    }
    tracing::debug!(%key, "cache hit");
    Some(entry)
}

/// Why a stored entry cannot be used.
pub(super) enum Unusable {
    /// The entry itself: unreadable, unsealed, or another stage's.
    Entry(String),
    /// One of its outputs: "`name` (hash) is missing from the store", ….
    Output(String),
}

/// The entry `store` holds for `key` (`None`: none), if it was made by the stage's
/// kind, names exactly its outputs, and every one of them is present and intact.
pub(super) fn intact_entry(
    store: &Store,
    stage: &PlannedStage,
    key: &str,
) -> Result<Option<CacheEntry>, Unusable> {
    let Some(entry) = store.cache_get(key).map_err(Unusable::Entry)? else {
        return Ok(None);
    };
    entry_fits(&entry, stage).map_err(Unusable::Entry)?;
    for (name, a) in &entry.outputs {
        let problem = match store.check(a) {
            Ok(Check::Ok) => continue,
            Ok(Check::Missing) => "is missing from the store",
            Ok(Check::Corrupt) => "was corrupt (did not match its hash) and has been discarded",
            Err(_) => "could not be read",
        };
        return Err(Unusable::Output(format!(
            "`{name}` ({}) {problem}",
            a.hash.short()
        )));
    }
    Ok(Some(entry))
}

/// Whether the stage's kind still vouches for an entry's outputs (`revalidate`),
/// reading them from `store`, or first through `fetch` (a remote store's result).
fn still_holds(
    store: &Store,
    stage: &PlannedStage,
    entry: &CacheEntry,
    fetch: Option<&FetchOutput<'_>>,
) -> Result<()> {
    let paths = entry
        .outputs
        .iter()
        .map(|(k, a)| (k.clone(), store.path_of(a)))
        .collect();
    stage.prepared.revalidate(&CachedOutputs {
        outputs: &paths,
        store: store.root(),
        fetch,
    })
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

/// The remote store's result for `key`, if it has one that this machine takes, that
/// fits the stage, holds every object it names, and still stands (`revalidate`, which
/// downloads what it reads). Anything else is a warning and a miss: the stage is built
/// here (said unless `quiet`: a machine waiting for another's result looks again and
/// again). An entry that leads to an object that is gone or fails its check is removed
/// from the remote, so that it stops misleading others.
fn remote_lookup(
    shared: &Shared,
    stage: &PlannedStage,
    key: &str,
    quiet: bool,
) -> Option<RemoteEntry> {
    let remote = shared.remote.as_ref()?;
    let found = || -> Result<Option<RemoteEntry>> {
        let Some(found) = remote_entry(remote, stage, key)? else {
            return Ok(None);
        };
        let fetch = |name: &str| -> Result<()> {
            let a = &found.entry.outputs[name];
            download(shared, stage, remote, &format!("output `{name}`"), a)
        };
        if let Err(e) = still_holds(&shared.store, stage, &found.entry, Some(&fetch)) {
            if crate::remote::condemned(&e) {
                remote.remove_entry(&found)?;
            }
            bail!("it no longer holds ({e:#})");
        }
        Ok(Some(found))
    };
    match found() {
        Ok(hit) => hit,
        Err(e) => {
            if !quiet {
                shared.progress.warn(&format!(
                    "{}: the remote store's result is not used: {e:#}; building it here",
                    stage.name
                ));
            }
            None
        }
    }
}

/// The remote's entry for `key` (`None`: none), if this machine takes it, it fits the
/// stage, and the remote holds every object it names. An entry whose objects are gone
/// is removed there, so that it stops misleading others; one this machine does not
/// take is an error that says why.
pub(super) fn remote_entry(
    remote: &Remote,
    stage: &PlannedStage,
    key: &str,
) -> Result<Option<RemoteEntry>> {
    let found = match remote.entry(key)? {
        Lookup::Found(found) => found,
        Lookup::Missing => return Ok(None),
        Lookup::Ignored(why) => bail!("{why}"),
    };
    entry_fits(&found.entry, stage).map_err(anyhow::Error::msg)?;
    remote.check_objects(&found)?;
    Ok(Some(found))
}

enum Claimed {
    /// Another machine built the key while this one waited.
    Built(RemoteEntry),
    Lease(Lease),
}

/// Takes the key's lease in the remote store, or waits while another machine holds it
/// until its result appears (a hit) or its lease expires (it died: build it here).
fn claim_or_wait(
    shared: &Shared,
    stage: &PlannedStage,
    remote: &Arc<Remote>,
    key: &str,
) -> Result<Claimed> {
    let mut told = false;
    let mut watch = LeaseWatch::default();
    loop {
        if let Some(found) = remote_lookup(shared, stage, key, true) {
            return Ok(Claimed::Built(found));
        }
        match remote.claim(key, &mut watch)? {
            Claim::Mine(lease) => return Ok(Claimed::Lease(lease)),
            Claim::Theirs { owner, ttl } => {
                if !told {
                    shared.progress.message(
                        &stage.name,
                        &format!(
                            "{owner} is building it; waiting for its result (its lease is \
                             taken over if it is not renewed for {})",
                            humantime::format_duration(ttl)
                        ),
                    );
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Downloads one artifact from the remote into the local store, showing progress.
fn download(
    shared: &Shared,
    stage: &PlannedStage,
    remote: &Remote,
    what: &str,
    a: &Artifact,
) -> Result<()> {
    let report = |msg: &str| shared.progress.message(&stage.name, msg);
    let meter = Meter::new(format!("downloading {what}"), a.size, &report);
    remote
        .download(&shared.store, a, &meter)
        .with_context(|| format!("{what} ({}) from the remote store", a.hash.short()))
}

/// Brings the inputs a remote hit upstream left in the remote into the local store.
/// One that cannot come down fails the stage; an object found corrupt or missing is
/// removed from the remote, so the stage that makes it is built here next time.
fn fetch_inputs(
    shared: &Shared,
    stage: &PlannedStage,
    remote: &Remote,
    inputs: &BTreeMap<String, Vec<Artifact>>,
) -> Result<()> {
    for (name, arts) in inputs {
        for a in arts {
            if let Check::Missing = shared.store.verify(a)? {
                download(shared, stage, remote, &format!("input `{name}`"), a).map_err(|e| {
                    anyhow!("{e:#}; run again, and the stage that makes it is built here")
                })?;
            }
        }
    }
    Ok(())
}

/// Gives the remote store what a stage built: its outputs, then its entry (create-only,
/// so a key is never published twice), signed unless it derives from an entry nobody
/// verified (`sign`). A stage with an output that must stay on this machine is not
/// shared at all. Failures are warnings: the result stands here.
fn share(shared: &Shared, stage: &PlannedStage, remote: &Remote, entry: &CacheEntry, sign: bool) {
    if let Some((name, why)) = stage.private_output() {
        shared.progress.message(
            &stage.name,
            &format!("not shared with the remote store: output `{name}` {why}"),
        );
        return;
    }
    if let Err(e) = publish(shared, stage, remote, entry, sign) {
        shared.progress.warn(&format!(
            "{}: not shared with the remote store: {e:#}",
            stage.name
        ));
    }
}

/// Uploads a built stage's outputs, then its entry (signed when `sign` holds and this
/// machine signs).
pub(super) fn publish(
    shared: &Shared,
    stage: &PlannedStage,
    remote: &Remote,
    entry: &CacheEntry,
    sign: bool,
) -> Result<()> {
    let outputs: Vec<&Artifact> = entry.outputs.values().collect();
    upload(shared, stage, remote, "uploading outputs", &outputs)?;
    remote.publish_entry(entry, sign)?;
    Ok(())
}

/// Uploads artifacts of the local store that the remote lacks, showing progress.
pub(super) fn upload(
    shared: &Shared,
    stage: &PlannedStage,
    remote: &Remote,
    what: &str,
    artifacts: &[&Artifact],
) -> Result<()> {
    let report = |msg: &str| shared.progress.message(&stage.name, msg);
    let total = artifacts.iter().map(|a| a.size).sum();
    let meter = Meter::new(what.into(), total, &report);
    for a in artifacts {
        remote.upload(&shared.store, a, &meter)?;
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

/// Runs stage `i` on `inputs`; `tainted` names the stage upstream whose remote entry
/// nobody verified, if the inputs derive from one.
pub(super) async fn run_stage(
    shared: &Arc<Shared>,
    i: usize,
    inputs: BTreeMap<String, Vec<Artifact>>,
    tainted: Option<String>,
) -> Finished {
    let start = shared.t0.elapsed();
    let stage = &shared.plan.stages[i];
    let mut f = Finished {
        status: StageStatus::Failed,
        key: None,
        inputs: crate::key::input_hashes(&inputs),
        outputs: BTreeMap::new(),
        remote: false,
        unverified: None,
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
            .map(|entry| (entry, Origin::Local))
            .or_else(|| {
                remote_lookup(&s2, stage, &key.hash, false).map(|found| {
                    let origin = Origin::Remote {
                        unverified: found.unverified,
                    };
                    (found.entry, origin)
                })
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
    if let Some((entry, origin)) = hit {
        f.status = StageStatus::Hit;
        f.remote = origin != Origin::Local;
        f.unverified = origin.unverified(&entry, &stage.name).or(tainted);
        f.outputs = entry.outputs;
        f.notes = shown_notes(entry.notes, false);
        f.elapsed = shared.t0.elapsed() - start;
        let note = f.remote.then_some("in the remote store");
        shared
            .progress
            .finished(&stage.name, StageStatus::Hit, f.elapsed, note);
        return f;
    }

    if let (Some(from), true) = (&tainted, stage.prepared.needs_verified_inputs()) {
        if !shared.remote.as_ref().is_some_and(|r| r.trust().any()) {
            let message = format!(
                "refused: this stage acts for you, and its inputs derive from `{from}`, whose \
                 result came from the remote store unverified (no trusted keys are configured). \
                 Set {} to the address of the machine that built it (it signs with {}), build \
                 it here with --remote none, or set {}=any to take remote entries whoever \
                 wrote them",
                crate::remote::trust::TRUST_ENV,
                crate::remote::trust::KEY_ENV,
                crate::remote::trust::TRUST_ENV,
            );
            return fail(shared, f, &stage.name, message);
        }
    }
    // A Slurm job takes no slot here: the cluster schedules it.
    let on_slurm = shared.plan.executor_of(stage) == Executor::Slurm;
    let job = match on_slurm {
        true => None,
        false => Some(
            Arc::clone(&shared.jobs)
                .acquire_owned()
                .await
                .expect("semaphore never closes"),
        ),
    };
    let class = match stage.requirements.resource.as_ref() {
        Some(c) if !on_slurm => match shared.resources.get(c) {
            Some(slots) => Some((c.as_str(), slots.acquire().await)),
            None => None,
        },
        _ => None,
    };
    let device = match &class {
        Some((c, slot)) if *c == GPU => Some(slot.index),
        _ => None,
    };
    // The timeline shows execution, not time spent waiting for a slot.
    f.start = shared.t0.elapsed();
    shared.progress.started(&stage.name, stage.kind.name());
    // Tries as the stage's `retry` allows, waiting `backoff` (doubled each time) between.
    let tries = stage.execution.attempts;
    let mut failures = Vec::new();
    let mut backoff = stage.execution.backoff;
    let result = loop {
        let (s2, hash, inputs) = (Arc::clone(shared), hash.clone(), inputs.clone());
        let sign = tainted.is_none();
        let run = move || execute(&s2, i, &hash, &inputs, device, sign);
        match tokio::task::spawn_blocking(run).await {
            Ok(Err(e)) if failures.len() + 1 < tries as usize => {
                let e = format!("{e:#}");
                shared.progress.warn(&format!(
                    "{}: attempt {} of {tries} failed ({}); trying again in {}",
                    stage.name,
                    failures.len() + 1,
                    e.lines().next().unwrap_or(""),
                    humantime::format_duration(backoff)
                ));
                failures.push(e);
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            result => break result,
        }
    };
    f.elapsed = shared.t0.elapsed() - f.start;
    f.notes.extend(
        failures
            .iter()
            .enumerate()
            .map(|(n, e)| format!("attempt {} of {tries} failed: {e}", n + 1)),
    );
    let result = result.map(|r| {
        r.map_err(|e| match failures.len() {
            0 => e,
            n => e.context(format!("attempt {} of {tries}", n + 1)),
        })
    });
    match result {
        Ok(Ok(Executed::Found(entry, origin))) => {
            f.status = StageStatus::Hit;
            f.remote = origin != Origin::Local;
            f.unverified = origin.unverified(&entry, &stage.name).or(tainted);
            f.outputs = entry.outputs;
            f.notes.extend(shown_notes(entry.notes, false));
        }
        Ok(Ok(Executed::Built(entry, lease))) => {
            if let Some(remote) = &shared.remote {
                // The upload holds no job slot and no resource class: the next stage
                // may start. The lease is held until the entry is published.
                drop((job, class));
                let (s2, remote, entry) = (Arc::clone(shared), Arc::clone(remote), entry.clone());
                let sign = tainted.is_none();
                let _ = tokio::task::spawn_blocking(move || {
                    share(&s2, &s2.plan.stages[i], &remote, &entry, sign);
                    drop(lease);
                })
                .await;
            }
            f.status = StageStatus::Ran;
            f.unverified = tainted;
            f.outputs = entry.outputs;
            f.notes.extend(shown_notes(entry.notes, true));
        }
        Ok(Ok(Executed::BuiltElsewhere(entry))) => {
            f.status = StageStatus::Ran;
            f.unverified = tainted;
            f.remote = true;
            f.outputs = entry.outputs;
            f.notes.extend(shown_notes(entry.notes, true));
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

pub(super) enum Executed {
    /// Built here, with the remote store's lease on its key if one was taken.
    Built(CacheEntry, Option<Lease>),
    /// Built by another process while this one waited for the key.
    Found(CacheEntry, Origin),
    /// Built by a job on a machine of its own, into the remote store.
    BuiltElsewhere(CacheEntry),
    Deferred(String),
}

/// Where another process built a stage's outputs: on this machine, or elsewhere
/// (through the remote store, whose entry may have been taken unverified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    Local,
    Remote { unverified: bool },
}

impl Origin {
    /// `stage`, when its `entry` from here was taken unverified.
    fn unverified(self, entry: &CacheEntry, stage: &str) -> Option<String> {
        let unverified = match self {
            Origin::Local => entry.unverified,
            Origin::Remote { unverified } => unverified,
        };
        unverified.then(|| stage.to_string())
    }
}

/// Builds stage `i` under its key's lock, unless another process did meanwhile: here,
/// or in a process or Slurm job of its own.
fn execute(
    shared: &Shared,
    i: usize,
    key: &str,
    inputs: &BTreeMap<String, Vec<Artifact>>,
    device: Option<usize>,
    sign: bool,
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
            return Ok(Executed::Found(entry, Origin::Local));
        }
    }
    // Other machines: take the key's lease, or wait for whoever holds it.
    let lease = match &shared.remote {
        Some(remote) if !shared.no_cache => match claim_or_wait(shared, stage, remote, key) {
            Ok(Claimed::Built(found)) => {
                let origin = Origin::Remote {
                    unverified: found.unverified,
                };
                return Ok(Executed::Found(found.entry, origin));
            }
            Ok(Claimed::Lease(lease)) => Some(lease),
            Err(e) => {
                shared.progress.warn(&format!(
                    "{}: cannot claim it in the remote store ({e:#}); building it here",
                    stage.name
                ));
                None
            }
        },
        _ => None,
    };
    tracing::debug!(stage = %stage.name, %key, "running");
    let tag = &key[..16];
    store.clear_stale_tmp(tag);
    let work = store.tmp_dir(tag)?;
    let elsewhere = match shared.plan.executor_of(stage) {
        Executor::Slurm => Some(Elsewhere::Slurm),
        Executor::Local if stage.execution.timeout.is_some() || device.is_some() => {
            Some(Elsewhere::Process { device })
        }
        Executor::Local => None,
    };
    let result = match elsewhere {
        None => execute_in(shared, stage, key, inputs, &work),
        Some(how) => job::run_elsewhere(shared, stage, key, inputs, &work, &how, sign),
    };
    let _ = store::remove_any(&work);
    Ok(match result? {
        Executed::Built(entry, _) => Executed::Built(entry, lease),
        other => other,
    })
}

pub(super) fn execute_in(
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
        unverified: false,
    };
    store.cache_put(&entry)?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(Executed::Built(entry, None))
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
