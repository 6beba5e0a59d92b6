//! `soma-flow status`: whether each stage would run, and why.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::exec::stage_key;
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
        let (key, extra) = stage_key(stage, plan, &inputs)?;
        match cached(store, &key) {
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
        let Some(prev) = previous.and_then(|r| r.stages.get(&stage.name).map(|s| (r, s))) else {
            let why = if previous.is_some() {
                "new stage"
            } else {
                "never run with this pipeline"
            };
            out.push((stage.name.clone(), Verdict::WouldRun(vec![why.into()])));
            continue;
        };
        let (run, before) = prev;
        let mut reasons = Vec::new();
        if before.version != stage.kind.version() {
            reasons.push(format!(
                "kind `{}` changed (v{} → v{})",
                stage.kind.name(),
                before.version,
                stage.kind.version()
            ));
        }
        for p in &stage.params_used {
            let (old, new) = (run.params.get(p), plan.params.get(p));
            if old != new {
                let show = |v: Option<&serde_json::Value>| {
                    v.map_or("unset".to_string(), |v| v.to_string())
                };
                reasons.push(format!(
                    "param `{p}` changed ({} → {})",
                    show(old),
                    show(new)
                ));
            }
        }
        if reasons.is_empty() && before.with != stage.with {
            let changed = diff_keys(&before.with, &stage.with);
            reasons.push(format!("`with` changed: {}", changed.join(", ")));
        }
        for (port, arts) in &inputs {
            let now: Vec<&str> = arts.iter().map(|a| a.hash.as_str()).collect();
            let then: Vec<&str> = before
                .inputs
                .get(port)
                .map(|v| v.iter().map(String::as_str).collect())
                .unwrap_or_default();
            if now != then {
                reasons.push(format!("input `{port}` changed"));
            }
        }
        if stage.uses_backend && run.backend != plan.backend {
            reasons.push(format!(
                "backend changed ({} → {})",
                run.backend, plan.backend
            ));
        }
        if before.key_material != extra {
            reasons.push("files it depends on changed".into());
        }
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

fn diff_keys(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let mut keys: Vec<String> = a
                .keys()
                .chain(b.keys())
                .filter(|k| a.get(*k) != b.get(*k))
                .cloned()
                .collect();
            keys.dedup();
            keys
        }
        _ => vec!["(whole value)".into()],
    }
}
