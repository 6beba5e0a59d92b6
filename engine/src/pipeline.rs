//! The pipeline file: its Rust types (the JSON Schema is generated from them), and
//! loading it into a validated [`Plan`] with every problem located at file:line:column.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::dag;
use crate::diag::{closest, one_of, Diagnostic, Diagnostics, Source};
use crate::duration::HumanDuration;
pub use crate::exec::slurm::SlurmSettings;
use crate::kind::{unknown_field, DynKind, Inputs, Prepared, Registry, Requirements};
use crate::params;
use crate::remote::RemoteSetting;
use crate::yaml::{self, Node, PathSeg, Span};

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

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum InputRef {
    One(String),
    Many(Vec<String>),
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

#[derive(Debug)]
pub enum LoadError {
    Io(PathBuf, std::io::Error),
    Usage(String),
    Invalid(Diagnostics),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(p, e) => write!(f, "cannot read pipeline {}: {e}", p.display()),
            LoadError::Usage(m) => f.write_str(m),
            LoadError::Invalid(d) => d.fmt(f),
        }
    }
}

impl std::error::Error for LoadError {}

/// The backend setting as the binary offers it. The engine carries the chosen name into
/// the keys of the stages that require a backend ([`Requirements::backend`]) and into
/// run records; what the names mean is the binary's business.
#[derive(Clone, Copy)]
pub struct BackendSetting {
    /// Used when neither `--backend` nor the pipeline's `backend` names one.
    pub default: &'static str,
    /// Accepts a name, or says why not, naming it (e.g. the cargo feature that would
    /// add it).
    pub check: fn(&str) -> Result<(), String>,
}

impl BackendSetting {
    /// The same setting, accepting any name: for reading a recorded run, where
    /// nothing runs.
    pub fn unchecked(self) -> BackendSetting {
        BackendSetting {
            check: |_| Ok(()),
            ..self
        }
    }
}

/// How a pipeline is loaded: the kinds, and the command line's overrides.
pub struct LoadOptions<'a> {
    pub registry: &'a Registry,
    /// `--set NAME=VALUE`, in order.
    pub overrides: &'a [String],
    /// `--backend`, which overrides the pipeline's `backend`.
    pub backend: Option<&'a str>,
    pub backends: BackendSetting,
}

/// Reads a pipeline file, for [`load`].
pub fn read(path: &Path) -> Result<Source, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Io(path.to_path_buf(), e))?;
    Ok(Source::new(path, text))
}

/// Validates a pipeline in passes: the YAML and its shape; params and overrides; each
/// stage on its own (kind, `with`); the references between stages; the backend; the
/// order. Every pass after the shape reports all it finds, so that one run of
/// `validate` lists every problem.
pub fn load(source: Source, opts: &LoadOptions<'_>) -> Result<Plan, LoadError> {
    let root = yaml::parse(&source.text).map_err(|e| {
        LoadError::Invalid(Diagnostics(vec![Diagnostic::new(
            &source,
            e.span,
            format!("invalid YAML: {}", e.message),
        )]))
    })?;
    let file: PipelineFile = serde_path_to_error::deserialize(root.to_json())
        .map_err(|e| LoadError::Invalid(Diagnostics(vec![serde_diag(&source, &root, &[], &e)])))?;
    let params = params::apply_overrides(&file.params, opts.overrides).map_err(LoadError::Usage)?;

    let mut v = Validator {
        source: &source,
        diags: Vec::new(),
    };
    let stages_node = root.get("stages").cloned().unwrap_or(Node {
        span: root.span,
        value: yaml::Value::Null,
    });
    if file.stages.is_empty() {
        v.error(
            stages_node.span,
            "a pipeline needs at least one stage",
            None,
        );
    }
    let backend = v.backend(&root, &params, opts);
    if let (Some(RemoteSetting { url, .. }), Some(node)) = (&file.remote, root.get("remote")) {
        if let Err(why) = crate::remote::check_url(url) {
            v.error(
                node.span,
                format!("`remote`: {url:?} is not a usable store URL: {why}"),
                Some("e.g. s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///path".into()),
            );
        }
    }
    if let (Some(slurm), Some(node)) = (&file.slurm, root.get("slurm")) {
        v.slurm(slurm, node, "");
    }
    let prepared = v.prepare_stages(&file, &stages_node, &params, opts.registry);
    let stages = v.connect_stages(&file, &stages_node, prepared);
    if stages.values().any(|s| s.requirements.backend) {
        if let Err(why) = (opts.backends.check)(&backend) {
            // A backend given on the command line (or recorded with a run) is not the
            // file's fault: no place in it to point at.
            if opts.backend.is_some() {
                return Err(LoadError::Usage(why));
            }
            let span = root.get("backend").map_or(root.span, |n| n.span);
            v.error(span, why, None);
        }
    }
    let stages = v.order(stages, &stages_node);
    if !v.diags.is_empty() {
        return Err(LoadError::Invalid(Diagnostics(v.diags)));
    }
    Ok(Plan {
        dir: pipeline_dir(&source),
        name: file.name,
        backend,
        params,
        resources: file.resources,
        remote: file.remote,
        executor: file.executor.unwrap_or_default(),
        stages,
        source,
    })
}

/// A stage whose kind and `with` passed: what the second pass connects.
struct PreparedDecl {
    kind: Arc<dyn DynKind>,
    prepared: Box<dyn Prepared>,
    with: Json,
    params_used: BTreeSet<String>,
}

fn valid_stage_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The folder a pipeline's relative paths are taken from.
fn pipeline_dir(source: &Source) -> PathBuf {
    source
        .path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Span of what an error at `path` is about: for an unknown field, the key itself.
fn error_span(node: &Node, path: &[PathSeg], message: &str) -> Span {
    match unknown_field(message) {
        Some(field) => {
            let parent = match path.last() {
                Some(PathSeg::Key(k)) if k == field => &path[..path.len() - 1],
                _ => path,
            };
            node.locate_key(parent, field)
        }
        None => node.locate(path).span,
    }
}

fn serde_diag(
    source: &Source,
    root: &Node,
    base: &[PathSeg],
    e: &serde_path_to_error::Error<serde_json::Error>,
) -> Diagnostic {
    let mut path = base.to_vec();
    path.extend(yaml::path_from_serde(e.path()));
    let message = e.inner().to_string();
    let span = error_span(root, &path, &message);
    let place: String = path.iter().map(ToString::to_string).collect();
    let message = message.replace(
        "data did not match any variant of untagged enum InputRef",
        "expected `<stage>.<output>` or a list of them",
    );
    let text = if place.is_empty() {
        message
    } else {
        format!("{}: {message}", place.trim_start_matches('.'))
    };
    Diagnostic::new(source, span, text)
}

struct Validator<'a> {
    source: &'a Source,
    diags: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn error(&mut self, span: Span, message: impl Into<String>, help: Option<String>) {
        let mut d = Diagnostic::new(self.source, span, message);
        d.help = help;
        self.diags.push(d);
    }

    /// The run's backend: `--backend`, else the pipeline's (params allowed), else the
    /// setting's default.
    fn backend(
        &mut self,
        root: &Node,
        params: &IndexMap<String, Json>,
        opts: &LoadOptions<'_>,
    ) -> String {
        match (opts.backend, root.get("backend")) {
            (Some(b), _) => b.to_string(),
            (None, Some(node)) => {
                match params::interpolate(node, params, &mut BTreeSet::new(), &mut |s, m, h| {
                    self.error(s, m, h)
                }) {
                    Json::String(s) => s,
                    _ => {
                        self.error(node.span, "`backend` must be a string", None);
                        String::new()
                    }
                }
            }
            (None, None) => opts.backends.default.to_string(),
        }
    }

    /// First pass: each stage on its own (name, kind, `with`).
    fn prepare_stages(
        &mut self,
        file: &PipelineFile,
        stages_node: &Node,
        params: &IndexMap<String, Json>,
        registry: &Registry,
    ) -> IndexMap<String, PreparedDecl> {
        let mut prepared = IndexMap::new();
        // What the kinds' file checks take relative paths from.
        let dir = pipeline_dir(self.source);
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        for (name, decl) in &file.stages {
            let (key_node, stage_node) = stages_node.entry(name).expect("stage came from this map");
            if !valid_stage_name(name) {
                self.error(
                    key_node.span,
                    format!("invalid stage name `{name}`"),
                    Some("use letters, digits, `_` and `-` (a `.` separates stage and output in references)".into()),
                );
            }
            let Some(kind) = registry.get(&decl.kind) else {
                let help = match closest(&decl.kind, registry.names()) {
                    Some(c) => format!(
                        "did you mean `{c}`? known kinds: {}",
                        one_of(registry.names())
                    ),
                    None => format!("known kinds: {}", one_of(registry.names())),
                };
                let kind_node = stage_node.get("kind").unwrap_or(stage_node);
                self.error(
                    kind_node.span,
                    format!("unknown stage kind `{}`", decl.kind),
                    Some(help),
                );
                continue;
            };
            let with_node = stage_node.get("with");
            let mut params_used = BTreeSet::new();
            let with = with_node.map_or(Json::Object(Default::default()), |n| match n.value {
                yaml::Value::Null => Json::Object(Default::default()),
                _ => params::interpolate(n, params, &mut params_used, &mut |s, m, h| {
                    self.error(s, m, h)
                }),
            });
            match kind
                .prepare(with)
                .and_then(|(p, resolved)| p.check_files(&dir).map(|()| (p, resolved)))
            {
                Ok((p, resolved)) => {
                    prepared.insert(
                        name.clone(),
                        PreparedDecl {
                            kind: Arc::clone(kind),
                            prepared: p,
                            with: resolved,
                            params_used,
                        },
                    );
                }
                Err(e) => {
                    let span =
                        with_node.map_or(key_node.span, |w| error_span(w, &e.path, &e.message));
                    let place: String = e.path.iter().map(ToString::to_string).collect();
                    self.error(
                        span,
                        format!("stage `{name}` ({}): with{place}: {}", decl.kind, e.message),
                        e.help.clone(),
                    );
                }
            }
        }
        prepared
    }

    /// Second pass: inputs and `needs`, checked against the kinds' ports and outputs.
    /// A stage whose kind or `with` was rejected still has its references checked.
    fn connect_stages(
        &mut self,
        file: &PipelineFile,
        stages_node: &Node,
        mut prepared: IndexMap<String, PreparedDecl>,
    ) -> IndexMap<String, PlannedStage> {
        let outputs_of: BTreeMap<String, Vec<String>> = prepared
            .iter()
            .map(|(name, p)| (name.clone(), p.prepared.outputs()))
            .collect();
        let mut stages = IndexMap::new();
        for (name, decl) in &file.stages {
            let prep = prepared.shift_remove(name);
            let (key_node, stage_node) = stages_node.entry(name).expect("stage came from this map");
            let ports = prep.as_ref().map_or(Inputs::Any, |p| p.prepared.inputs());
            let inputs = self.inputs(name, decl, key_node, stage_node, &ports, file, &outputs_of);
            let mut deps: BTreeSet<String> =
                inputs.values().flatten().map(|r| r.stage.clone()).collect();
            for (i, need) in decl.needs.iter().enumerate() {
                let span = stage_node
                    .locate(&[PathSeg::Key("needs".into()), PathSeg::Index(i)])
                    .span;
                if file.stages.contains_key(need) {
                    deps.insert(need.clone());
                } else {
                    self.unknown_stage(need, span, file);
                }
            }
            if deps.contains(name) {
                self.error(
                    key_node.span,
                    format!("stage `{name}` depends on itself"),
                    None,
                );
            }
            let Some(p) = prep else {
                continue;
            };
            let mut requirements = p.prepared.requirements();
            if decl.resource.is_some() {
                requirements.resource = decl.resource.clone();
            }
            let execution = self.execution(name, decl, stage_node, file);
            stages.insert(
                name.clone(),
                PlannedStage {
                    name: name.clone(),
                    outputs: p.prepared.outputs(),
                    kind: p.kind,
                    prepared: p.prepared,
                    with: p.with,
                    params_used: p.params_used,
                    inputs,
                    deps,
                    requirements,
                    execution,
                },
            );
        }
        stages
    }

    /// A `slurm:` map's first setting `sbatch` would reject, as an error at its key.
    fn slurm(&mut self, settings: &SlurmSettings, node: &Node, whose: &str) {
        if let Err((key, why)) = settings.check() {
            let span = node.locate(&[PathSeg::Key(key.into())]).span;
            self.error(span, format!("{whose}slurm.{key}: {why}"), None);
        }
    }

    /// A stage's execution settings, over the pipeline's; a bad one is an error at it.
    fn execution(
        &mut self,
        name: &str,
        decl: &StageDecl,
        stage_node: &Node,
        file: &PipelineFile,
    ) -> Execution {
        let base = file.slurm.clone().unwrap_or_default();
        let slurm = match &decl.slurm {
            Some(own) => own.clone().over(&base),
            None => base,
        };
        if let (Some(own), Some(node)) = (&decl.slurm, stage_node.get("slurm")) {
            self.slurm(own, node, &format!("stage `{name}`: "));
        }
        let (attempts, backoff) = match &decl.retry {
            Some(r) => {
                if r.attempts == 0 {
                    let span = stage_node
                        .locate(&[
                            PathSeg::Key("retry".into()),
                            PathSeg::Key("attempts".into()),
                        ])
                        .span;
                    self.error(
                        span,
                        format!(
                            "stage `{name}`: retry.attempts must be at least 1 (the first try)"
                        ),
                        Some("e.g. `retry: { attempts: 3, backoff: 30s }`".into()),
                    );
                }
                (r.attempts.max(1), r.backoff.get())
            }
            None => (1, std::time::Duration::ZERO),
        };
        if let Some(t) = &decl.timeout {
            if t.get().is_zero() {
                let span = stage_node.locate(&[PathSeg::Key("timeout".into())]).span;
                self.error(
                    span,
                    format!("stage `{name}`: a timeout of {t} leaves no time to run"),
                    None,
                );
            }
        }
        Execution {
            executor: decl.executor,
            slurm,
            timeout: decl.timeout.as_ref().map(HumanDuration::get),
            attempts,
            backoff,
        }
    }

    /// A stage's `inputs`, each resolved to the outputs it names.
    #[allow(clippy::too_many_arguments)]
    fn inputs(
        &mut self,
        name: &str,
        decl: &StageDecl,
        key_node: &Node,
        stage_node: &Node,
        ports: &Inputs,
        file: &PipelineFile,
        outputs_of: &BTreeMap<String, Vec<String>>,
    ) -> BTreeMap<String, Vec<OutputRef>> {
        let inputs_node = stage_node.get("inputs");
        let mut inputs = BTreeMap::new();
        for (port, refs) in &decl.inputs {
            let port_key = inputs_node.map_or(key_node.span, |n| n.locate_key(&[], port));
            let spec = match ports {
                Inputs::Any => None,
                Inputs::Fixed(list) => match list.iter().find(|p| p.name == port) {
                    Some(p) => Some(p),
                    None => {
                        self.error(
                            port_key,
                            format!("stage `{name}` ({}) has no input `{port}`", decl.kind),
                            Some(format!(
                                "inputs of `{}`: {}",
                                decl.kind,
                                one_of(list.iter().map(|p| p.name))
                            )),
                        );
                        continue;
                    }
                },
            };
            let at = |path: &[PathSeg]| inputs_node.map_or(port_key, |n| n.locate(path).span);
            let list = match refs {
                InputRef::One(r) => vec![(r.clone(), at(&[PathSeg::Key(port.clone())]))],
                InputRef::Many(rs) => {
                    if spec.is_some_and(|s| !s.many) {
                        self.error(port_key, format!("input `{port}` of `{}` takes a single `<stage>.<output>`, not a list", decl.kind), None);
                        continue;
                    }
                    rs.iter()
                        .enumerate()
                        .map(|(i, r)| {
                            (
                                r.clone(),
                                at(&[PathSeg::Key(port.clone()), PathSeg::Index(i)]),
                            )
                        })
                        .collect()
                }
            };
            let resolved = list
                .into_iter()
                .filter_map(|(text, span)| self.output_ref(&text, span, file, outputs_of))
                .collect();
            inputs.insert(port.clone(), resolved);
        }
        if let Inputs::Fixed(list) = ports {
            for p in list
                .iter()
                .filter(|p| p.required && !decl.inputs.contains_key(p.name))
            {
                self.error(
                    key_node.span,
                    format!("stage `{name}` ({}) needs input `{}`", decl.kind, p.name),
                    Some(format!("add `inputs: {{ {}: <stage>.<output> }}`", p.name)),
                );
            }
            let groups: BTreeSet<&str> = list.iter().filter_map(|p| p.one_of).collect();
            for group in groups {
                let names: Vec<&str> = list
                    .iter()
                    .filter(|p| p.one_of == Some(group))
                    .map(|p| p.name)
                    .collect();
                if !names.iter().any(|n| decl.inputs.contains_key(*n)) {
                    self.error(
                        key_node.span,
                        format!(
                            "stage `{name}` ({}) needs one of the inputs {} ({group})",
                            decl.kind,
                            one_of(names.iter().copied())
                        ),
                        Some(format!(
                            "add `inputs: {{ {}: <stage>.<output> }}`",
                            names[0]
                        )),
                    );
                }
            }
        }
        inputs
    }

    /// Last pass: the stages in an order that runs every dependency first, or the cycle
    /// that prevents one (checked only once everything else holds).
    fn order(
        &mut self,
        mut stages: IndexMap<String, PlannedStage>,
        stages_node: &Node,
    ) -> IndexMap<String, PlannedStage> {
        if !self.diags.is_empty() {
            return stages;
        }
        match dag::topo_order(&stages) {
            Ok(order) => order
                .into_iter()
                .map(|name| {
                    let s = stages
                        .shift_remove(&name)
                        .expect("ordered names come from the map");
                    (name, s)
                })
                .collect(),
            Err(cycle) => {
                let span = stages_node.locate_key(&[], &cycle[0]);
                self.error(
                    span,
                    format!("dependency cycle: {}", cycle.join(" -> ")),
                    Some("remove one of these dependencies".into()),
                );
                stages
            }
        }
    }

    fn unknown_stage(&mut self, name: &str, span: Span, file: &PipelineFile) {
        let help = closest(name, file.stages.keys().map(String::as_str))
            .map(|c| format!("did you mean `{c}`?"))
            .unwrap_or_else(|| {
                format!("stages: {}", one_of(file.stages.keys().map(String::as_str)))
            });
        self.error(span, format!("no stage named `{name}`"), Some(help));
    }

    fn output_ref(
        &mut self,
        text: &str,
        span: Span,
        file: &PipelineFile,
        outputs_of: &BTreeMap<String, Vec<String>>,
    ) -> Option<OutputRef> {
        let Some((stage, output)) = text.split_once('.') else {
            self.error(
                span,
                format!("`{text}` is not a reference"),
                Some("write `<stage>.<output>`, e.g. `train.model`".into()),
            );
            return None;
        };
        if !file.stages.contains_key(stage) {
            self.unknown_stage(stage, span, file);
            return None;
        }
        // A stage that failed to prepare has already been reported; its outputs are unknown.
        if let Some(outs) = outputs_of.get(stage) {
            if !outs.iter().any(|o| o == output) {
                let help = match closest(output, outs.iter().map(String::as_str)) {
                    Some(c) => format!("did you mean `{stage}.{c}`?"),
                    None => format!(
                        "outputs of `{stage}`: {}",
                        one_of(outs.iter().map(String::as_str))
                    ),
                };
                self.error(
                    span,
                    format!("stage `{stage}` has no output `{output}`"),
                    Some(help),
                );
                return None;
            }
        }
        Some(OutputRef {
            stage: stage.to_string(),
            output: output.to_string(),
        })
    }
}
