//! The validated plan: stages connected, ordered, ready to schedule.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::{Executor, SlurmSettings};
use crate::diag::{closest, one_of, Source};
use crate::kind::{DynKind, Prepared, Requirements};
use crate::remote::RemoteSetting;
use crate::store::Artifact;

/// How the engine executes a stage: the settings outside `with`, which never enter its
/// cache key (a result is the same wherever it was built).
#[derive(Debug, Clone, Default)]
pub struct Execution {
    /// The stage's own executor; the plan's ([`Plan::executor`]) otherwise.
    pub executor: Option<Executor>,
    /// The pipeline's Slurm settings with the stage's over them.
    pub slurm: SlurmSettings,
    pub timeout: Option<std::time::Duration>,
    /// Tries in all (1: no retry), and the first wait between them.
    pub attempts: u32,
    pub backoff: std::time::Duration,
}

/// A reference to another stage's output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutputRef {
    pub stage: String,
    pub output: String,
}

impl fmt::Display for OutputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.stage, self.output)
    }
}

pub struct PlannedStage {
    pub name: String,
    pub kind: Arc<dyn DynKind>,
    pub prepared: Box<dyn Prepared>,
    /// `with` after interpolation, with defaults filled in: what enters the cache key.
    pub with: Json,
    /// Params interpolated into `with`, for explaining why a stage reruns.
    pub params_used: BTreeSet<String>,
    pub inputs: BTreeMap<String, Vec<OutputRef>>,
    /// Every stage this one waits for (inputs and `needs`).
    pub deps: BTreeSet<String>,
    pub outputs: Vec<String>,
    /// The kind's, with the stage's own `resource` if it gives one.
    pub requirements: Requirements,
    pub execution: Execution,
}

impl PlannedStage {
    /// The first output that must not leave this machine, and why
    /// ([`crate::StageKind::private`]).
    pub fn private_output(&self) -> Option<(&str, &'static str)> {
        self.outputs
            .iter()
            .find_map(|o| self.prepared.private(o).map(|why| (o.as_str(), why)))
    }

    /// Its inputs' artifacts, by input name, taken from `outputs_of` each upstream stage.
    pub fn input_artifacts<'a>(
        &self,
        outputs_of: impl Fn(&str) -> &'a BTreeMap<String, Artifact>,
    ) -> BTreeMap<String, Vec<Artifact>> {
        let input = |refs: &Vec<OutputRef>| {
            let arts = refs.iter().map(|r| outputs_of(&r.stage)[&r.output].clone());
            arts.collect()
        };
        self.inputs
            .iter()
            .map(|(port, refs)| (port.clone(), input(refs)))
            .collect()
    }
}

/// A validated pipeline, ready to schedule.
pub struct Plan {
    pub source: Source,
    /// Paths in the pipeline are relative to this directory.
    pub dir: PathBuf,
    pub name: String,
    pub backend: String,
    pub params: IndexMap<String, Json>,
    pub resources: IndexMap<String, usize>,
    /// The pipeline's `remote` store, if it names one.
    pub remote: Option<RemoteSetting>,
    /// Where stages without an `executor` of their own execute (`--executor` sets it).
    pub executor: Executor,
    /// In topological order.
    pub stages: IndexMap<String, PlannedStage>,
    /// What loaded but should change (an old spelling), located in the file.
    pub warnings: Vec<crate::diag::Diagnostic>,
}

impl Plan {
    /// The plan of `targets` and every stage they need, in the same order (all of it
    /// when `targets` is empty). An unknown name is an error naming the stages there are.
    pub fn only(mut self, targets: &[String]) -> Result<Plan, String> {
        if targets.is_empty() {
            return Ok(self);
        }
        let names = || self.stages.keys().map(String::as_str);
        let mut todo = Vec::new();
        for target in targets {
            if !self.stages.contains_key(target) {
                let hint = closest(target, names())
                    .map(|c| format!("did you mean `{c}`? "))
                    .unwrap_or_default();
                return Err(format!(
                    "{}: no stage `{target}`; {hint}stages: {}",
                    self.source.path.display(),
                    one_of(names())
                ));
            }
            todo.push(target.clone());
        }
        let mut keep = BTreeSet::new();
        while let Some(name) = todo.pop() {
            if let Some(stage) = self.stages.get(&name) {
                todo.extend(stage.deps.iter().filter(|d| !keep.contains(*d)).cloned());
                keep.insert(name);
            }
        }
        self.stages.retain(|name, _| keep.contains(name));
        Ok(self)
    }

    /// Where stage `stage` executes.
    pub fn executor_of(&self, stage: &PlannedStage) -> Executor {
        stage.execution.executor.unwrap_or(self.executor)
    }

    pub fn pipeline_hash(&self) -> String {
        blake3::hash(self.source.text.as_bytes())
            .to_hex()
            .to_string()
    }
}
