//! Pipeline params: `--set` overrides and `${params.NAME}` interpolation.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::diag::{closest, one_of};
use crate::yaml::{self, Node, Span};

/// The grid of a sweep: `NAME=A,B` gives one point per value (commas inside `[...]`,
/// `{...}` or quotes do not split), and several such overrides give every combination,
/// the first varying slowest. Without a comma there is one point: the overrides as given.
pub fn grid(overrides: &[String]) -> Vec<Vec<String>> {
    let mut points: Vec<Vec<String>> = vec![Vec::new()];
    for item in overrides {
        let choices = match item.split_once('=') {
            Some((name, text)) => split_top_level(text)
                .into_iter()
                .map(|value| format!("{name}={value}"))
                .collect(),
            None => vec![item.clone()],
        };
        points = points
            .into_iter()
            .flat_map(|point| {
                choices.iter().map(move |choice| {
                    let mut next = point.clone();
                    next.push(choice.clone());
                    next
                })
            })
            .collect();
    }
    points
}

/// `text` split at the commas outside brackets, braces and quotes.
fn split_top_level(text: &str) -> Vec<String> {
    let (mut parts, mut current) = (Vec::new(), String::new());
    let (mut depth, mut quote) = (0i32, None);
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

/// Applies `NAME=VALUE` overrides; values are read as YAML, so `steps=10` stays a number.
pub fn apply_overrides(
    defaults: &IndexMap<String, Json>,
    overrides: &[String],
) -> Result<IndexMap<String, Json>, String> {
    let mut params = defaults.clone();
    for item in overrides {
        let Some((name, text)) = item.split_once('=') else {
            return Err(format!("--set `{item}`: expected NAME=VALUE"));
        };
        let name = name.trim();
        let Some(slot) = params.get_mut(name) else {
            let hint = closest(name, defaults.keys().map(String::as_str))
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "--set `{name}`: the pipeline declares no such param{hint}; params: {}",
                one_of(defaults.keys().map(String::as_str))
            ));
        };
        *slot = match yaml::parse(text) {
            Ok(node) if !text.trim().is_empty() => node.to_json(),
            _ => Json::String(text.to_string()),
        };
    }
    Ok(params)
}

/// `--set` values are typed in a shell, whose completion gives paths relative to the
/// working directory; a pipeline file's own paths stay relative to the file. So each
/// string in an override's value that names a file or folder existing under `cwd` (a
/// glob: the folder before its first wildcard) becomes that absolute path, and the run
/// records it so. Names, numbers, URLs and paths that exist nowhere yet are left as
/// typed (a relative path then is the pipeline folder's).
pub fn from_working_dir(overrides: &[String], cwd: &Path) -> Vec<String> {
    overrides
        .iter()
        .map(|item| {
            let Some((name, text)) = item.split_once('=') else {
                return item.clone();
            };
            let value = match yaml::parse(text) {
                Ok(node) if !text.trim().is_empty() => node.to_json(),
                _ => Json::String(text.to_string()),
            };
            let mut changed = false;
            let value = absolute_paths(value, cwd, &mut changed);
            match (changed, serde_json::to_string(&value)) {
                (true, Ok(json)) => format!("{name}={json}"),
                _ => item.clone(),
            }
        })
        .collect()
}

fn absolute_paths(value: Json, cwd: &Path, changed: &mut bool) -> Json {
    match value {
        Json::String(s) => match in_working_dir(&s, cwd) {
            Some(path) => {
                *changed = true;
                Json::String(path.to_string_lossy().into_owned())
            }
            None => Json::String(s),
        },
        Json::Array(items) => Json::Array(
            items
                .into_iter()
                .map(|v| absolute_paths(v, cwd, changed))
                .collect(),
        ),
        Json::Object(map) => Json::Object(
            map.into_iter()
                .map(|(k, v)| (k, absolute_paths(v, cwd, changed)))
                .collect(),
        ),
        other => other,
    }
}

/// `text` as a path under `cwd`, when it looks like a relative path (a `/` or a `.`
/// in it, no URL scheme) and names something there.
fn in_working_dir(text: &str, cwd: &Path) -> Option<PathBuf> {
    let path = Path::new(text);
    let looks_like_a_path = (text.contains('/') || text.contains('.'))
        && !text.contains("://")
        && !text.contains("${")
        && !text.starts_with('~');
    if !looks_like_a_path || path.is_absolute() {
        return None;
    }
    let fixed = before_wildcards(path);
    let exists = !fixed.as_os_str().is_empty() && cwd.join(&fixed).exists();
    exists.then(|| cwd.join(path))
}

/// The part of a path or glob before its first component with a wildcard: the folder
/// a glob searches (the whole path when it has none).
pub fn before_wildcards(path: &Path) -> PathBuf {
    path.components()
        .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
        .collect()
}

const OPEN: &str = "${params.";

/// Replaces `${params.NAME}` in every string under `node`. A string that is exactly one
/// reference takes the param's typed value; inside longer text the value is spliced in.
pub fn interpolate(
    node: &Node,
    params: &IndexMap<String, Json>,
    used: &mut BTreeSet<String>,
    report: &mut dyn FnMut(Span, String, Option<String>),
) -> Json {
    match &node.value {
        yaml::Value::Str(s) => interpolate_str(s, node.span, params, used, report),
        yaml::Value::Seq(items) => Json::Array(
            items
                .iter()
                .map(|n| interpolate(n, params, used, report))
                .collect(),
        ),
        yaml::Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_key(), interpolate(v, params, used, report)))
                .collect(),
        ),
        _ => node.to_json(),
    }
}

fn interpolate_str(
    s: &str,
    span: Span,
    params: &IndexMap<String, Json>,
    used: &mut BTreeSet<String>,
    report: &mut dyn FnMut(Span, String, Option<String>),
) -> Json {
    let mut out = String::new();
    let mut rest = s;
    let mut whole: Option<Json> = None;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find('}') else {
            report(
                span,
                format!("unclosed `{OPEN}` in `{s}`"),
                Some("write `${params.NAME}`".into()),
            );
            return Json::String(s.to_string());
        };
        let name = &after[..end];
        let Some(value) = params.get(name) else {
            let help = closest(name, params.keys().map(String::as_str))
                .map(|c| format!("did you mean `{c}`?"))
                .unwrap_or_else(|| {
                    format!(
                        "declare it under `params:`; params: {}",
                        one_of(params.keys().map(String::as_str))
                    )
                });
            report(span, format!("undefined param `{name}`"), Some(help));
            return Json::String(s.to_string());
        };
        used.insert(name.to_string());
        if start == 0 && end + 1 == after.len() && out.is_empty() {
            whole = Some(value.clone());
        }
        match value {
            Json::String(v) => out.push_str(v),
            Json::Number(n) => out.push_str(&n.to_string()),
            Json::Bool(b) => out.push_str(&b.to_string()),
            Json::Null => {}
            _ if whole.is_some() => {}
            _ => {
                report(
                    span,
                    format!("param `{name}` is a list or map and cannot be spliced into text"),
                    None,
                );
            }
        }
        rest = &after[end + 1..];
    }
    if let Some(v) = whole {
        return v;
    }
    out.push_str(rest);
    Json::String(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(text: &str, params: Json) -> (Json, Vec<String>) {
        let params: IndexMap<String, Json> = serde_json::from_value(params).unwrap();
        let node = yaml::parse(text).unwrap();
        let mut errs = Vec::new();
        let v = interpolate(&node, &params, &mut BTreeSet::new(), &mut |_, m, _| {
            errs.push(m)
        });
        (v, errs)
    }

    #[test]
    fn typed_values_stay_typed() {
        let (v, errs) = run(
            "{a: '${params.n}', b: 'x ${params.n} ${params.s}', c: ['${params.l}']}",
            json!({"n": 3, "s": "hi", "l": [1, 2]}),
        );
        assert!(errs.is_empty());
        assert_eq!(v, json!({"a": 3, "b": "x 3 hi", "c": [[1, 2]]}));
    }

    #[test]
    fn undefined_param_is_reported() {
        let (_, errs) = run("a: ${params.greting}", json!({"greeting": "hi"}));
        assert_eq!(errs, vec!["undefined param `greting`".to_string()]);
    }

    #[test]
    fn overrides_parse_as_yaml() {
        let defaults: IndexMap<String, Json> =
            serde_json::from_value(json!({"steps": 1, "arch": "v1-tiny"})).unwrap();
        let p = apply_overrides(&defaults, &["steps=10".into(), "arch=v1".into()]).unwrap();
        assert_eq!(p["steps"], json!(10));
        assert_eq!(p["arch"], json!("v1"));
        assert!(apply_overrides(&defaults, &["step=1".into()])
            .unwrap_err()
            .contains("did you mean `steps`"));
    }
}
