//! The validator: its diagnostics, and the passes after the first (each stage on its
//! own, in `prepare`): the references between stages, the backend, the order; every
//! problem located at file:line:column.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::*;
use crate::dag;
use crate::diag::{closest, one_of, Diagnostic, Source};
use crate::duration::HumanDuration;
use crate::kind::{unknown_field, DynKind, Inputs, Prepared};
use crate::yaml::{self, Node, PathSeg, Span};

/// A stage whose kind and `with` passed: what the second pass connects.
pub(super) struct PreparedDecl {
    pub(super) kind: Arc<dyn DynKind>,
    pub(super) prepared: Box<dyn Prepared>,
    pub(super) with: Json,
    pub(super) params_used: BTreeSet<String>,
}

/// The folder a pipeline's relative paths are taken from.
pub(super) fn pipeline_dir(source: &Source) -> PathBuf {
    source
        .path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Span of what an error at `path` is about: for an unknown field, the key itself.
pub(super) fn error_span(node: &Node, path: &[PathSeg], message: &str) -> Span {
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

pub(super) fn serde_diag(
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

pub(super) struct Validator<'a> {
    pub(super) source: &'a Source,
    pub(super) diags: Vec<Diagnostic>,
}

impl Validator<'_> {
    pub(super) fn error(&mut self, span: Span, message: impl Into<String>, help: Option<String>) {
        let mut d = Diagnostic::new(self.source, span, message);
        d.help = help;
        self.diags.push(d);
    }

    /// The run's backend: `--backend`, else the pipeline's (params allowed), else the
    /// setting's default.
    pub(super) fn backend(
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

    /// Second pass: inputs and `needs`, checked against the kinds' ports and outputs.
    /// A stage whose kind or `with` was rejected still has its references checked.
    pub(super) fn connect_stages(
        &mut self,
        file: &PipelineFile,
        nodes: &yaml::Entries<'_>,
        mut prepared: IndexMap<String, PreparedDecl>,
    ) -> IndexMap<String, PlannedStage> {
        let outputs_of: BTreeMap<String, Vec<String>> = prepared
            .iter()
            .map(|(name, p)| (name.clone(), p.prepared.outputs()))
            .collect();
        let mut stages = IndexMap::new();
        for (name, decl) in &file.stages {
            let prep = prepared.swap_remove(name);
            let (key_node, stage_node) = nodes[name.as_str()];
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
    pub(super) fn slurm(&mut self, settings: &SlurmSettings, node: &Node, whose: &str) {
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
    pub(super) fn order(
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
                        .swap_remove(&name)
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
