//! A stage's cache key: what it is computed from, the hash, and why it differs from the
//! key a recorded run had. `run` computes it, `status` explains it and the run records
//! keep its fields, all through [`CacheKey`].

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde_json::Value as Json;

use crate::kind::KeyContext;
use crate::pipeline::{Plan, PlannedStage};
use crate::record::{RunRecord, StageRecord};
use crate::store::Artifact;

/// How far [`walk`] got with a stage.
pub enum Keyed<'p> {
    /// An upstream stage whose outputs are not known, so this one cannot be keyed.
    After(&'p str),
    Key(Box<CacheKey>),
}

/// Keys `plan`'s stages in order from their upstream stages' outputs, as a run would
/// without running anything: `visit` gets each stage with its key (or the upstream it
/// waits for) and returns the stage's outputs when it knows them (cached here, or in a
/// remote store), which key the stages after it.
pub fn walk<'p>(
    plan: &'p Plan,
    mut visit: impl FnMut(&'p PlannedStage, Keyed<'p>) -> Result<Option<BTreeMap<String, Artifact>>>,
) -> Result<()> {
    let mut known: BTreeMap<&str, BTreeMap<String, Artifact>> = BTreeMap::new();
    for stage in plan.stages.values() {
        let refs = || stage.inputs.values().flatten();
        let keyed = match refs().find(|r| !known.contains_key(r.stage.as_str())) {
            Some(up) => Keyed::After(&up.stage),
            None => {
                let inputs = stage.input_artifacts(|up| &known[up]);
                Keyed::Key(Box::new(CacheKey::compute(stage, plan, &inputs)?))
            }
        };
        if let Some(outputs) = visit(stage, keyed)? {
            known.insert(&stage.name, outputs);
        }
    }
    Ok(())
}

/// The key of one stage and the material it hashes.
#[derive(Debug, Clone)]
pub struct CacheKey {
    /// The BLAKE3 hash of the material, in hex.
    pub hash: String,
    pub kind: &'static str,
    pub version: u32,
    /// `with` after interpolation and defaults.
    pub with: Json,
    /// Input artifact hashes per input name.
    pub inputs: BTreeMap<String, Vec<String>>,
    /// The run's backend, for stages that run on one.
    pub backend: Option<String>,
    /// The kind's own material ([`crate::StageKind::key_material`]).
    pub extra: Json,
}

impl CacheKey {
    pub fn compute(
        stage: &PlannedStage,
        plan: &Plan,
        inputs: &BTreeMap<String, Vec<Artifact>>,
    ) -> Result<CacheKey> {
        let extra = stage
            .prepared
            .key_material(&KeyContext {
                stage: &stage.name,
                pipeline_dir: &plan.dir,
            })
            .with_context(|| format!("stage `{}`: cannot compute its cache key", stage.name))?;
        let mut key = CacheKey {
            hash: String::new(),
            kind: stage.kind.name(),
            version: stage.kind.version(),
            with: stage.with.clone(),
            inputs: input_hashes(inputs),
            backend: stage.requirements.backend.then(|| plan.backend.clone()),
            extra,
        };
        let material = serde_json::json!({
            "kind": key.kind,
            "version": key.version,
            "with": key.with,
            "inputs": key.inputs,
            "backend": key.backend,
            "extra": key.extra,
        });
        key.hash = blake3::hash(canonical_json(&material).as_bytes())
            .to_hex()
            .to_string();
        tracing::debug!(stage = %stage.name, key = %key.hash, "cache key");
        Ok(key)
    }

    /// Why this key is not the one `before` (the same stage in the recorded `run`) had:
    /// one reason per part of the material that changed, empty when none did.
    pub fn changes_since(
        &self,
        stage: &PlannedStage,
        plan: &Plan,
        run: &RunRecord,
        before: &StageRecord,
    ) -> Vec<String> {
        let mut reasons = Vec::new();
        if before.version != self.version {
            reasons.push(format!(
                "kind `{}` changed (v{} → v{})",
                self.kind, before.version, self.version
            ));
        }
        // A param reaches the key through `with`: name the param, not the field.
        for p in &stage.params_used {
            let (old, new) = (run.params.get(p), plan.params.get(p));
            if old != new {
                let show = |v: Option<&Json>| v.map_or("unset".to_string(), Json::to_string);
                reasons.push(format!(
                    "param `{p}` changed ({} → {})",
                    show(old),
                    show(new)
                ));
            }
        }
        if reasons.is_empty() && before.with != self.with {
            let changed = changed_fields(&before.with, &self.with);
            reasons.push(format!("`with` changed: {}", changed.join(", ")));
        }
        let ports: BTreeSet<&String> = self.inputs.keys().chain(before.inputs.keys()).collect();
        for port in ports {
            if self.inputs.get(port) != before.inputs.get(port) {
                reasons.push(format!("input `{port}` changed"));
            }
        }
        if let Some(backend) = &self.backend {
            if *backend != run.backend {
                reasons.push(format!("backend changed ({} → {backend})", run.backend));
            }
        }
        if before.key_material != self.extra {
            reasons.push("files it depends on changed".into());
        }
        reasons
    }
}

/// Each input's artifact hashes, by input name.
pub(crate) fn input_hashes(
    inputs: &BTreeMap<String, Vec<Artifact>>,
) -> BTreeMap<String, Vec<String>> {
    inputs
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|a| a.hash.to_string()).collect()))
        .collect()
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

/// The top-level fields that differ between two `with` values, each once, in order.
fn changed_fields(a: &Json, b: &Json) -> Vec<String> {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => a
            .keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect(),
        _ => vec!["(whole value)".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_field_is_named_once() {
        let a = serde_json::json!({"x": 1, "y": 2, "z": 3});
        let b = serde_json::json!({"x": 2, "y": 3, "z": 3, "w": 0});
        assert_eq!(changed_fields(&a, &b), ["w", "x", "y"]);
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: Json =
            serde_json::from_str(r#"{"b": {"d": 1, "c": 2}, "a": [1, {"f": 0, "e": 1}]}"#).unwrap();
        let b: Json =
            serde_json::from_str(r#"{"a": [1, {"e": 1, "f": 0}], "b": {"c": 2, "d": 1}}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }
}
