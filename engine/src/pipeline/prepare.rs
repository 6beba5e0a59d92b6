//! The validator's first pass: each stage on its own (its name, its kind, its `with`
//! deserialised and checked by the kind), with a warning at each key written under an
//! old spelling.

use std::collections::BTreeSet;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::validate::{error_span, pipeline_dir, PreparedDecl, Validator};
use super::*;
use crate::diag::{closest, one_of, Diagnostic};
use crate::kind::{Moved, Registry};
use crate::yaml::{self, Node, Span};

fn valid_stage_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Validator<'_> {
    /// First pass: each stage on its own (name, kind, `with`).
    pub(super) fn prepare_stages(
        &mut self,
        file: &PipelineFile,
        nodes: &yaml::Entries<'_>,
        params: &IndexMap<String, Json>,
        registry: &Registry,
    ) -> IndexMap<String, PreparedDecl> {
        let mut prepared = IndexMap::new();
        // What the kinds' file checks take relative paths from.
        let dir = pipeline_dir(self.source);
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        for (name, decl) in &file.stages {
            let (key_node, stage_node) = nodes[name.as_str()];
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
                .and_then(|p| p.stage.check_files(&dir).map(|()| p))
            {
                Ok(p) => {
                    self.warn_moved(name, &decl.kind, with_node, key_node.span, &p.moved);
                    prepared.insert(
                        name.clone(),
                        PreparedDecl {
                            kind: Arc::clone(kind),
                            prepared: p.stage,
                            with: p.with,
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

    /// Warns at each key a stage's `with` wrote under an old spelling, in the file's
    /// order, with its new spelling as written (`${params.lr}` rather than its value).
    fn warn_moved(
        &mut self,
        stage: &str,
        kind: &str,
        with_node: Option<&Node>,
        fallback: Span,
        moved: &[Moved],
    ) {
        let mut warnings: Vec<Diagnostic> = moved
            .iter()
            .map(|m| {
                let written = with_node.and_then(|w| w.entry(m.from));
                let span = written.map_or(fallback, |(key, _)| key.span);
                let value = written.map(|(_, value)| value.to_json());
                let message = format!("stage `{stage}` ({kind}): with.{}: {}", m.from, m.message());
                Diagnostic::warning(self.source, span, message)
                    .help(m.new_spelling(&value.unwrap_or_default()))
            })
            .collect();
        warnings.sort_by_key(|d| (d.span.line, d.span.col));
        self.diags.extend(warnings);
    }
}
