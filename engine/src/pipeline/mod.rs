//! The pipeline file: its Rust types (the JSON Schema is generated from them), and
//! loading it into a validated [`Plan`] with every problem located at file:line:column.
//! `file` holds the types as written, `plan` the validated result, `prepare` and
//! `validate` the passes between them.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Diagnostics, Source};
use crate::kind::Registry;
use crate::params;
use crate::remote::RemoteSetting;
use crate::yaml::{self, Node};

mod file;
mod plan;
mod prepare;
mod slurm;
mod validate;

pub use file::{Executor, InputRef, PipelineFile, Retry, StageDecl};
pub use plan::{Execution, OutputRef, Plan, PlannedStage};
pub use slurm::SlurmSettings;
use validate::{pipeline_dir, serde_diag, Validator};

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
    let no_stages = Node {
        span: root.span,
        value: yaml::Value::Null,
    };
    let stages_node = root.get("stages").unwrap_or(&no_stages);
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
    let nodes = stages_node.entries_by_key();
    let prepared = v.prepare_stages(&file, &nodes, &params, opts.registry);
    let stages = v.connect_stages(&file, &nodes, prepared);
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
    let stages = v.order(stages, stages_node);
    if v.diags.iter().any(|d| !d.warning) {
        return Err(LoadError::Invalid(Diagnostics(v.diags)));
    }
    Ok(Plan {
        warnings: v.diags,
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
