//! Steps 1 and 2: the stage's key, and its result looked up, here and then in the
//! remote store. An entry is used only if it fits the stage, every output is present and
//! intact, and the stage's kind still vouches for it; anything else is a miss, and an
//! entry that cannot be trusted is removed.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use super::share::download;
use crate::exec::shared::Shared;
use crate::key::CacheKey;
use crate::kind::{CachedOutputs, FetchOutput};
use crate::pipeline::PlannedStage;
use crate::remote::{Lookup, Remote, RemoteEntry};
use crate::store::{Artifact, CacheEntry, Check, Store};

/// Where a stage's result was found: built here (this store), or elsewhere (through the
/// remote store, whose entry may have been taken unverified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::exec) enum Origin {
    Local,
    Remote { unverified: bool },
}

impl Origin {
    /// `stage`, when its `entry` from here was taken unverified.
    pub(in crate::exec) fn unverified(self, entry: &CacheEntry, stage: &str) -> Option<String> {
        let unverified = match self {
            Origin::Local => entry.unverified,
            Origin::Remote { unverified } => unverified,
        };
        unverified.then(|| stage.to_string())
    }

    /// A result found in the remote store, with where it came from.
    pub(in crate::exec) fn remote(found: RemoteEntry) -> (CacheEntry, Origin) {
        let origin = Origin::Remote {
            unverified: found.unverified,
        };
        (found.entry, origin)
    }
}

/// Stage `i`'s key, and its result if the cache holds one (here first, then in the
/// remote store), unless the run says `--no-cache`.
pub(in crate::exec) fn key_and_lookup(
    shared: &Shared,
    i: usize,
    inputs: &BTreeMap<String, Vec<Artifact>>,
) -> Result<(CacheKey, Option<(CacheEntry, Origin)>)> {
    let stage = &shared.plan.stages[i];
    let key = CacheKey::compute(stage, &shared.plan, inputs)?;
    if shared.no_cache {
        return Ok((key, None));
    }
    let hit = local(shared, stage, &key.hash)
        .map(|entry| (entry, Origin::Local))
        .or_else(|| remote(shared, stage, &key.hash, false).map(Origin::remote));
    Ok((key, hit))
}

/// A stage's key and its result in this store, found before the walk.
pub(in crate::exec) type Cached = (CacheKey, CacheEntry);

/// The stages whose results this store already holds, found in one pass in the plan's
/// order on this thread: a rerun with nothing to do hands no stage to a blocking thread
/// and back. A stage is looked up once every stage it depends on is found, its `needs`
/// too (not [`crate::key::walk`], which follows inputs only): a `needs` stage that runs
/// may change what the stage's revalidation sees (`reveal` before the fetch of what was
/// revealed). What is not found here is looked up again when the walk reaches it (and
/// in the remote store).
pub(in crate::exec) fn cached_here(shared: &Shared) -> Vec<Option<Cached>> {
    let plan = &shared.plan;
    let mut found: Vec<Option<Cached>> = Vec::with_capacity(plan.stages.len());
    for stage in plan.stages.values() {
        let upstream_found = stage.deps.iter().all(|d| {
            let i = plan
                .stages
                .get_index_of(d.as_str())
                .expect("validated reference");
            found[i].is_some()
        });
        let hit = (upstream_found && !shared.no_cache)
            .then(|| {
                let inputs = stage.input_artifacts(|up| {
                    let i = plan.stages.get_index_of(up).expect("validated reference");
                    &found[i].as_ref().expect("found above").1.outputs
                });
                let key = CacheKey::compute(stage, plan, &inputs).ok()?;
                local(shared, stage, &key.hash).map(|entry| (key, entry))
            })
            .flatten();
        found.push(hit);
    }
    found
}

/// The stored outputs for a key, if the entry is this store's, names exactly the
/// stage's outputs, every one of them is present and intact, and the stage still
/// vouches for them. Anything else is a miss (with a warning), and an untrustworthy
/// entry is removed.
pub(in crate::exec) fn local(
    shared: &Shared,
    stage: &PlannedStage,
    key: &str,
) -> Option<CacheEntry> {
    let store = &shared.store;
    let warn = |w: &str| shared.progress.warn(&format!("{}: {w}", stage.name));
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
pub(in crate::exec) enum Unusable {
    /// The entry itself: unreadable, unsealed, or another stage's.
    Entry(String),
    /// One of its outputs: "`name` (hash) is missing from the store", ….
    Output(String),
}

/// The entry `store` holds for `key` (`None`: none), if it was made by the stage's
/// kind, names exactly its outputs, and every one of them is present and intact.
pub(in crate::exec) fn intact_entry(
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
pub(in crate::exec) fn remote(
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
pub(in crate::exec) fn remote_entry(
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
