//! `soma-flow status`: whether each stage would run, and why.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::key::{walk, Keyed};
use crate::pipeline::{Plan, PlannedStage};
use crate::record::{RunRecord, StageStatus};
use crate::store::{Artifact, CacheEntry, Check, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Cached,
    WouldRun(Vec<String>),
}

pub fn explain(
    plan: &Plan,
    store: &Store,
    previous: Option<&RunRecord>,
) -> Result<Vec<(String, Verdict)>> {
    let mut out = Vec::new();
    walk(plan, |stage, keyed| {
        let (verdict, outputs) = verdict(plan, store, previous, stage, keyed);
        out.push((stage.name.clone(), verdict));
        Ok(outputs)
    })?;
    Ok(out)
}

/// One stage's verdict, and its outputs when cached.
fn verdict(
    plan: &Plan,
    store: &Store,
    previous: Option<&RunRecord>,
    stage: &PlannedStage,
    keyed: Keyed<'_>,
) -> (Verdict, Option<BTreeMap<String, Artifact>>) {
    let would_run = |why: Vec<String>| (Verdict::WouldRun(why), None);
    let key = match keyed {
        Keyed::After(first) => {
            return would_run(vec![format!(
                "upstream `{first}` runs first; its output decides"
            )])
        }
        Keyed::Key(key) => key,
    };
    match cached(store, &key.hash) {
        Ok(Some(entry)) => return (Verdict::Cached, Some(entry.outputs)),
        Err(why) => return would_run(vec![why]),
        Ok(None) => {}
    }
    let Some((run, before)) = previous.and_then(|r| r.stages.get(&stage.name).map(|s| (r, s)))
    else {
        let why = if previous.is_some() {
            "new stage"
        } else {
            "never run with this pipeline"
        };
        return would_run(vec![why.into()]);
    };
    let mut reasons = key.changes_since(stage, plan, run, before);
    if reasons.is_empty() {
        reasons.push(match before.status {
            StageStatus::Failed => "it failed last time".into(),
            StageStatus::Deferred => "it was deferred last time".into(),
            StageStatus::Skipped => "it was skipped last time".into(),
            _ => "its cached outputs are gone (removed by gc or by hand)".into(),
        });
    }
    would_run(reasons)
}

/// The key's cache entry if it is this store's and every output in it is intact,
/// checked as `run` checks it but without removing anything.
fn cached(store: &Store, key: &str) -> Result<Option<CacheEntry>, String> {
    let Some(entry) = store.cache_get(key)? else {
        return Ok(None);
    };
    for (name, a) in &entry.outputs {
        match store.verify(a) {
            Ok(Check::Ok) => {}
            Ok(Check::Missing) => return Ok(None),
            Ok(Check::Corrupt) | Err(_) => {
                return Err(format!(
                    "cached output `{name}` ({}) is corrupt (does not match its hash)",
                    a.hash.short()
                ))
            }
        }
    }
    Ok(Some(entry))
}
