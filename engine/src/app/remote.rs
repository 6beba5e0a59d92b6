//! `push` and `pull`: move results between the local store and the remote store by
//! hand (a run shares what it builds by itself; these are for what ran without a
//! remote, and for bringing a remote hit's outputs onto this machine).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::{load, recorded_plan, Env, ExitStatus, PipelineArgs, RemoteArgs};
use crate::key::{walk, Keyed};
use crate::pipeline::Plan;
use crate::record::{self, RunRecord, StageRecord};
use crate::remote::{Lookup, Meter, Remote, RemoteEntry};
use crate::store::{Artifact, CacheEntry, Check, Store};
use indicatif::HumanBytes;

/// Progress lines of a transfer, on stderr.
fn say(line: &str) {
    eprintln!("  {line}");
}

/// The recorded run `id`, or the latest one.
fn record_or_latest(store: &Store, id: Option<&str>) -> Result<RunRecord> {
    record::find(store, id.unwrap_or("latest"))
}

/// A recorded run, its plan, and the remote store.
type Recorded = (RunRecord, Plan, Arc<Remote>);

/// A recorded run (or the latest), its plan and the remote store, or the exit status
/// after saying why not.
fn recorded(
    env: &Env,
    store: &Store,
    id: Option<&str>,
    remote: &RemoteArgs,
) -> Result<Result<Recorded, ExitStatus>> {
    let rec = record_or_latest(store, id)?;
    let plan = match recorded_plan(env, &rec) {
        Ok(plan) => plan,
        Err(status) => return Ok(Err(status)),
    };
    let remote = remote.require(plan.remote.as_ref(), env.keys)?;
    Ok(Ok((rec, plan, remote)))
}

/// The stages of a run that have a key and outputs.
fn keyed(rec: &RunRecord) -> impl Iterator<Item = (&String, &StageRecord, &str)> {
    rec.stages.iter().filter_map(|(name, s)| {
        let key = s.key.as_deref().filter(|_| !s.outputs.is_empty())?;
        Some((name, s, key))
    })
}

/// The cache entry a recorded stage stands for: the local store's own, else one made
/// from the record.
fn entry_of(store: &Store, s: &StageRecord, key: &str) -> CacheEntry {
    match store.cache_get(key) {
        Ok(Some(entry)) => entry,
        _ => CacheEntry {
            key: key.to_string(),
            kind: s.kind.clone(),
            outputs: s.outputs.clone(),
            duration_ms: s.duration_ms,
            notes: s.notes.clone(),
            seal: String::new(),
            unverified: false,
        },
    }
}

fn total_size(outputs: &BTreeMap<String, Artifact>) -> u64 {
    outputs.values().map(|a| a.size).sum()
}

/// `soma-flow push [RUN]`: uploads each stage's outputs, then its entry. A stage with
/// a private output is refused and named; a stage whose outputs are no longer stored
/// here fails the push.
pub(super) fn push(
    env: &Env,
    store: &Store,
    id: Option<&str>,
    remote: &RemoteArgs,
) -> Result<ExitStatus> {
    let (rec, plan, remote) = match recorded(env, store, id, remote)? {
        Ok(found) => found,
        Err(status) => return Ok(status),
    };
    eprintln!("pushing run {} to {}", rec.id, remote.url());
    let mut status = ExitStatus::Ok;
    for (name, s, key) in keyed(&rec) {
        let private = plan
            .stages
            .get(name)
            .and_then(|stage| stage.private_output());
        if let Some((output, why)) = private {
            println!("{name:<24} refused: output `{output}` {why}");
            continue;
        }
        let missing = s
            .outputs
            .iter()
            .find(|(_, a)| !matches!(store.verify(a), Ok(Check::Ok)));
        if let Some((output, a)) = missing {
            if s.remote && matches!(remote.entry(key)?, Lookup::Found(_)) {
                println!("{name:<24} in the remote store already");
            } else {
                println!(
                    "{name:<24} FAILED: output `{output}` ({}) is no longer in this store",
                    a.hash.short()
                );
                status = ExitStatus::Failed;
            }
            continue;
        }
        let meter = Meter::new(name.clone(), total_size(&s.outputs), &say);
        let pushed = || -> Result<bool> {
            for a in s.outputs.values() {
                remote.upload(store, a, &meter)?;
            }
            // Signed only when nothing it derives from came unverified.
            let entry = entry_of(store, s, key);
            let sign = !entry.unverified && s.unverified.is_none();
            remote.publish_entry(&entry, sign)
        };
        match pushed() {
            Ok(true) => println!("{name:<24} pushed ({})", HumanBytes(total_size(&s.outputs))),
            Ok(false) => println!("{name:<24} in the remote store already"),
            Err(e) => {
                println!("{name:<24} FAILED: {e:#}");
                status = ExitStatus::Failed;
            }
        }
    }
    Ok(status)
}

/// `soma-flow pull [FILE|RUN]`: brings results into the local store, each output
/// verified, with a local cache entry so that the next run here finds them. A pipeline
/// file pulls every stage the remote has for it with its current params (a stage whose
/// upstream the remote lacks cannot be keyed, and is named); a run pulls its stages.
pub(super) fn pull(
    env: &Env,
    store: &Store,
    target: Option<&str>,
    remote: &RemoteArgs,
) -> Result<ExitStatus> {
    if let Some(file) = target.filter(|t| Path::new(t).is_file()) {
        return pull_pipeline(env, store, file, remote);
    }
    let (rec, _, remote) = match recorded(env, store, target, remote)? {
        Ok(found) => found,
        Err(status) => return Ok(status),
    };
    eprintln!("pulling run {} from {}", rec.id, remote.url());
    let mut status = ExitStatus::Ok;
    for (name, s, key) in keyed(&rec) {
        // The remote's entry, else what the run recorded (this machine's own word).
        let (mut entry, found) = match remote.entry(key)? {
            Lookup::Found(found) => (found.entry.clone(), Some(found)),
            Lookup::Ignored(why) => {
                println!("{name:<24} taken from the run's record: {why}");
                (entry_of(store, s, key), None)
            }
            Lookup::Missing => (entry_of(store, s, key), None),
        };
        entry.unverified |= s.unverified.is_some();
        if let Err(e) = pull_entry(store, &remote, name, &mut entry, found.as_ref()) {
            println!("{name:<24} FAILED: {e:#}");
            status = ExitStatus::Failed;
        }
    }
    Ok(status)
}

/// `pull FILE`: every stage of the pipeline that this store or the remote has a result
/// for, keyed as a run would key it.
fn pull_pipeline(env: &Env, store: &Store, file: &str, remote: &RemoteArgs) -> Result<ExitStatus> {
    let args = PipelineArgs {
        file: file.into(),
        set: Vec::new(),
        backend: None,
    };
    let plan = match load(env, &args) {
        Ok(plan) => plan,
        Err(status) => return Ok(status),
    };
    let remote = remote.require(plan.remote.as_ref(), env.keys)?;
    eprintln!("pulling {file} from {}", remote.url());
    let mut status = ExitStatus::Ok;
    walk(&plan, |stage, keyed| {
        let name = &stage.name;
        let key = match keyed {
            Keyed::After(up) => {
                println!("{name:<24} not pulled: upstream `{up}` is not available");
                return Ok(None);
            }
            Keyed::Key(key) => key.hash,
        };
        let (mut entry, found) = match store.cache_get(&key) {
            Ok(Some(entry)) => (entry, None),
            _ => match remote.entry(&key)? {
                Lookup::Found(found) => (found.entry.clone(), Some(found)),
                Lookup::Ignored(why) => {
                    println!("{name:<24} not pulled: {why}");
                    return Ok(None);
                }
                Lookup::Missing => {
                    println!("{name:<24} not in the remote store");
                    return Ok(None);
                }
            },
        };
        match pull_entry(store, &remote, name, &mut entry, found.as_ref()) {
            Ok(()) => Ok(Some(entry.outputs)),
            Err(e) => {
                println!("{name:<24} FAILED: {e:#}");
                status = ExitStatus::Failed;
                Ok(None)
            }
        }
    })?;
    Ok(status)
}

/// Downloads an entry's outputs (those not here already) and files the entry locally,
/// marked unverified when the remote's was taken so. An output whose object is gone or
/// fails a check condemns the remote's entry (`found`), so that the next run rebuilds it.
fn pull_entry(
    store: &Store,
    remote: &Remote,
    name: &str,
    entry: &mut CacheEntry,
    found: Option<&RemoteEntry>,
) -> Result<()> {
    let meter = Meter::new(name.to_string(), total_size(&entry.outputs), &say);
    for (output, a) in &entry.outputs {
        let downloaded = remote.download(store, a, &meter);
        if let (Err(e), Some(found)) = (&downloaded, found) {
            if crate::remote::condemned(e) {
                remote.remove_entry(found)?;
            }
        }
        downloaded.with_context(|| format!("output `{output}` ({})", a.hash.short()))?;
    }
    entry.unverified |= found.is_some_and(|f| f.unverified);
    store.cache_put(entry)?;
    println!(
        "{name:<24} pulled ({})",
        HumanBytes(total_size(&entry.outputs))
    );
    Ok(())
}
