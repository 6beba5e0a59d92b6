//! The pipeline file's types, as written: the JSON Schema is generated from them.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::SlurmSettings;
use crate::duration::HumanDuration;
use crate::remote::RemoteSetting;

/// A soma-flow pipeline: stages of a DAG, connected by the artifacts they exchange.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Shown in run records and reports.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The backend of the stages that compute on one (soma-flow: `ndarray`, `cuda`,
    /// `tch`); `--backend` overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Default parameter values, used as `${params.NAME}` in `with`; `--set NAME=VALUE` overrides.
    #[serde(default)]
    pub params: IndexMap<String, Json>,
    /// How many stages of each resource class may run at once (default 1 per class).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub resources: IndexMap<String, usize>,
    /// A cache shared with other machines: `s3://bucket/prefix`, `gs://…`, `az://…` or
    /// `file://…`, credentials from the environment; `--remote` and
    /// `SOMA_FLOW_REMOTE` override it. `{ url, trust }` also says whose entries to take
    /// (`SOMA_FLOW_REMOTE_TRUST` overrides `trust`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteSetting>,
    /// Where stages execute unless they name their own `executor`: `local` (default)
    /// or `slurm`; `--executor` overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Executor>,
    /// The Slurm settings of every stage that runs on Slurm; a stage's own `slurm`
    /// overrides them key by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmSettings>,
    /// The stages, by name (letters, digits, `_` and `-`).
    pub stages: IndexMap<String, StageDecl>,
}

/// One stage of the pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageDecl {
    /// The stage kind, e.g. `command`, `train`, `score`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Named inputs, each `<stage>.<output>` or a list of them.
    #[serde(default)]
    pub inputs: IndexMap<String, InputRef>,
    /// Stages that must finish first, without passing data.
    #[serde(default)]
    pub needs: Vec<String>,
    /// The kind's parameters.
    #[serde(default)]
    pub with: Json,
    /// Resource class (e.g. `gpu`); stages of one class never exceed its capacity.
    /// Each stage of class `gpu` gets a device of its own (`CUDA_VISIBLE_DEVICES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Where this stage executes (`local` or `slurm`), over the pipeline's `executor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Executor>,
    /// This stage's Slurm settings, over the pipeline's `slurm`, key by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmSettings>,
    /// How long the stage may run (e.g. `2h`); then it is stopped (its process group
    /// killed, or its Slurm job cancelled) and fails, or is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Try a failed (or timed-out) stage again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

/// Where a stage executes.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    /// On this machine: in the soma-flow process, or in a process of its own when it
    /// has a `timeout` or a `gpu` device.
    #[default]
    Local,
    /// As a Slurm job (`sbatch`) that runs soma-flow for exactly this stage, reading and
    /// writing the store on a filesystem the cluster's nodes share, or (with
    /// `slurm.store`) a store on its node and the remote store.
    Slurm,
}

/// How often a failed stage is tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Tries in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait before the second try, doubled before each further one.
    #[serde(default = "Retry::default_backoff")]
    pub backoff: HumanDuration,
}

impl Retry {
    fn default_backoff() -> HumanDuration {
        "10s".parse().expect("a duration")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum InputRef {
    One(String),
    Many(Vec<String>),
}
