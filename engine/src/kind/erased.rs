//! The engine's view of a kind: its `with` type erased behind [`DynKind`] (prepared
//! from JSON into a [`Prepared`] stage), so kinds from other crates plug in without
//! the engine knowing them.

use std::path::Path;
use std::sync::Arc;

use super::moved::{self, Moved};
use super::with_error::{explain, value_at};
use super::{
    CachedOutputs, Curve, Inputs, KeyContext, Outcome, Requirements, RunContext, StageKind,
    WithError,
};

/// A stage whose `with` has been validated; object-safe.
pub trait Prepared: Send + Sync {
    fn inputs(&self) -> Inputs;
    fn outputs(&self) -> Vec<String>;
    fn requirements(&self) -> Requirements;
    fn key_material(&self, ctx: &KeyContext<'_>) -> anyhow::Result<serde_json::Value>;
    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<Outcome>;
    fn revalidate(&self, cached: &CachedOutputs<'_>) -> anyhow::Result<()>;
    fn headline(
        &self,
        outputs: &CachedOutputs<'_>,
    ) -> anyhow::Result<Vec<(String, serde_json::Value)>>;
    fn curves(&self, outputs: &CachedOutputs<'_>) -> anyhow::Result<Vec<Curve>>;
    fn irreproducible(&self, output: &str) -> Option<&'static str>;
    fn private(&self, output: &str) -> Option<&'static str>;
    fn needs_verified_inputs(&self) -> bool;
    fn check_files(&self, dir: &Path) -> Result<(), WithError>;
}

struct PreparedStage<K: StageKind> {
    kind: Arc<K>,
    with: K::With,
}

impl<K: StageKind> Prepared for PreparedStage<K> {
    fn inputs(&self) -> Inputs {
        self.kind.inputs(&self.with)
    }
    fn outputs(&self) -> Vec<String> {
        self.kind.outputs(&self.with)
    }
    fn requirements(&self) -> Requirements {
        self.kind.requirements(&self.with)
    }
    fn key_material(&self, ctx: &KeyContext<'_>) -> anyhow::Result<serde_json::Value> {
        self.kind.key_material(&self.with, ctx)
    }
    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<Outcome> {
        self.kind.run(&self.with, ctx)
    }
    fn revalidate(&self, cached: &CachedOutputs<'_>) -> anyhow::Result<()> {
        self.kind.revalidate(&self.with, cached)
    }
    fn headline(
        &self,
        outputs: &CachedOutputs<'_>,
    ) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
        self.kind.headline(&self.with, outputs)
    }
    fn curves(&self, outputs: &CachedOutputs<'_>) -> anyhow::Result<Vec<Curve>> {
        self.kind.curves(&self.with, outputs)
    }
    fn irreproducible(&self, output: &str) -> Option<&'static str> {
        self.kind.irreproducible(&self.with, output)
    }
    fn check_files(&self, dir: &Path) -> Result<(), WithError> {
        self.kind.check_files(&self.with, dir)
    }
    fn private(&self, output: &str) -> Option<&'static str> {
        self.kind.private(&self.with, output)
    }
    fn needs_verified_inputs(&self) -> bool {
        self.kind.needs_verified_inputs(&self.with)
    }
}

/// A kind with its `with` type erased.
pub trait DynKind: Send + Sync {
    fn name(&self) -> &'static str;
    fn version(&self) -> u32;
    fn about(&self) -> &'static str;
    /// Moves old spellings, deserialises and checks `with`.
    fn prepare(&self, with: serde_json::Value) -> Result<PreparedWith, WithError>;
    fn with_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
}

impl<K: StageKind> DynKind for Arc<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn version(&self) -> u32 {
        K::VERSION
    }
    fn about(&self) -> &'static str {
        K::ABOUT
    }
    fn prepare(&self, with: serde_json::Value) -> Result<PreparedWith, WithError> {
        let mut with = with;
        let moved = moved::apply(&mut with, &self.moved());
        let typed = deserialize::<K>(with)
            .and_then(|typed| self.check(&typed).map(|()| typed))
            .map_err(|mut e| {
                for m in &moved {
                    m.old_path(&mut e.path);
                }
                explain::<K::With>(e)
            })?;
        let resolved = serde_json::to_value(&typed).map_err(|e| WithError {
            path: vec![],
            message: e.to_string(),
            help: None,
        })?;
        Ok(PreparedWith {
            stage: Box::new(PreparedStage {
                kind: Arc::clone(self),
                with: typed,
            }),
            with: resolved,
            moved,
        })
    }
    fn with_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<K::With>()
    }
}

/// A kind's `with`, deserialised and checked.
pub struct PreparedWith {
    pub stage: Box<dyn Prepared>,
    /// The `with` as the kind read it, defaults filled in (what the cache key hashes).
    pub with: serde_json::Value,
    /// Keys read under an old spelling.
    pub moved: Vec<Moved>,
}

/// Deserialises a `with`, with serde's path of an error.
fn deserialize<K: StageKind>(mut with: serde_json::Value) -> Result<K::With, WithError> {
    loop {
        let e = match serde_path_to_error::deserialize(&with) {
            Ok(typed) => return Ok(typed),
            Err(e) => e,
        };
        let message = e.inner().to_string();
        let path = crate::yaml::path_from_serde(e.path());
        // One value where a list is taken is that value's list (`status: filled`
        // for `status: [filled]`); each retry turns one more value into a list.
        if message.contains("expected a sequence") {
            if let Some(value) = value_at(&mut with, &path).filter(|v| !v.is_array()) {
                *value = serde_json::Value::Array(vec![value.take()]);
                continue;
            }
        }
        return Err(WithError {
            path,
            message,
            help: None,
        });
    }
}
