//! `soma-flow status`: whether each stage would run, and why.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::key::CacheKey;
use crate::pipeline::Plan;
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
    let mut known: BTreeMap<String, BTreeMap<String, Artifact>> = BTreeMap::new();
    let mut out = Vec::new();
    for stage in plan.stages.values() {
        let upstream_runs: Vec<&String> = stage
            .inputs
            .values()
            .flatten()
            .map(|r| &r.stage)
            .filter(|s| !known.contains_key(*s))
            .collect();
        if let Some(first) = upstream_runs.first() {
            out.push((
                stage.name.clone(),
                Verdict::WouldRun(vec![format!(
                    "upstream `{first}` runs first; its output decides"
                )]),
            ));
            continue;
        }
        let inputs: BTreeMap<String, Vec<Artifact>> = stage
            .inputs
            .iter()
            .map(|(port, refs)| {
                (
                    port.clone(),
                    refs.iter()
                        .map(|r| known[&r.stage][&r.output].clone())
                        .collect(),
                )
            })
            .collect();
        let key = CacheKey::compute(stage, plan, &inputs)?;
        match cached(store, &key.hash) {
            Ok(Some(entry)) => {
                known.insert(stage.name.clone(), entry.outputs);
                out.push((stage.name.clone(), Verdict::Cached));
                continue;
            }
            Err(why) => {
                out.push((stage.name.clone(), Verdict::WouldRun(vec![why])));
                continue;
            }
            Ok(None) => {}
        }
        let Some((run, before)) = previous.and_then(|r| r.stages.get(&stage.name).map(|s| (r, s)))
        else {
            let why = if previous.is_some() {
                "new stage"
            } else {
                "never run with this pipeline"
            };
            out.push((stage.name.clone(), Verdict::WouldRun(vec![why.into()])));
            continue;
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
        out.push((stage.name.clone(), Verdict::WouldRun(reasons)));
    }
    Ok(out)
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
