//! `with` errors as a user reads them: explained from the kind's JSON Schema.

use schemars::JsonSchema;

use super::WithError;
use crate::yaml::PathSeg;

/// A `with` error as a user reads it, from the JSON Schema of `T`: a map is "a map"
/// with the keys it takes, never a Rust type (`expected struct FetchOptions`); an
/// unknown key gets the closest known one.
pub(super) fn explain<T: JsonSchema>(mut e: WithError) -> WithError {
    let schema = || serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    if let Some(field) = unknown_field(&e.message) {
        let parent = match e.path.last() {
            Some(PathSeg::Key(k)) if k == field => &e.path[..e.path.len() - 1],
            _ => &e.path[..],
        };
        let known = keys_at(&schema(), parent);
        let hint = crate::diag::closest(field, known.iter().map(String::as_str));
        e.help = e.help.or(hint.map(|k| format!("did you mean `{k}`?")));
        return e;
    }
    const STRUCT: &str = "expected struct ";
    let Some(start) = e.message.find(STRUCT) else {
        return e;
    };
    let keys = keys_at(&schema(), &e.path);
    let name_end = e.message[start + STRUCT.len()..]
        .find(|c: char| !c.is_alphanumeric() && c != '_')
        .map_or(e.message.len(), |i| start + STRUCT.len() + i);
    let shape = match keys.is_empty() {
        true => "expected a map".to_owned(),
        false => format!("expected a map {{{}}}", keys.join(", ")),
    };
    e.message = format!("{}{shape}{}", &e.message[..start], &e.message[name_end..]);
    e.help = Some("`soma-flow schema` gives every key and its type".into());
    e
}

/// The key serde's "unknown field" message names.
pub(crate) fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// The keys of the map the JSON Schema `root` describes at `path` (`$ref`s followed,
/// the alternatives of `anyOf`/`oneOf`/`allOf` together), in the schema's order.
fn keys_at(root: &serde_json::Value, path: &[PathSeg]) -> Vec<String> {
    fn resolve<'v>(
        root: &'v serde_json::Value,
        mut node: &'v serde_json::Value,
    ) -> &'v serde_json::Value {
        for _ in 0..16 {
            match node
                .get("$ref")
                .and_then(|r| r.as_str())
                .and_then(|r| r.strip_prefix("#/$defs/"))
            {
                Some(name) => node = &root["$defs"][name],
                None => break,
            }
        }
        node
    }
    fn alternatives<'v>(
        root: &'v serde_json::Value,
        node: &'v serde_json::Value,
    ) -> Vec<&'v serde_json::Value> {
        let node = resolve(root, node);
        let mut out = vec![node];
        for key in ["anyOf", "oneOf", "allOf"] {
            for member in node
                .get(key)
                .and_then(|m| m.as_array())
                .into_iter()
                .flatten()
            {
                out.extend(alternatives(root, member));
            }
        }
        out
    }
    let mut nodes = vec![root];
    for seg in path {
        nodes = nodes
            .into_iter()
            .flat_map(|n| alternatives(root, n))
            .filter_map(|n| match seg {
                PathSeg::Key(key) => n.get("properties").and_then(|p| p.get(key)),
                PathSeg::Index(_) => n.get("items"),
            })
            .collect();
    }
    let mut keys: Vec<String> = Vec::new();
    for node in nodes.into_iter().flat_map(|n| alternatives(root, n)) {
        for key in node
            .get("properties")
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    keys
}

/// The value at `path` in `with`, if the path leads somewhere.
pub(super) fn value_at<'v>(
    with: &'v mut serde_json::Value,
    path: &[PathSeg],
) -> Option<&'v mut serde_json::Value> {
    path.iter().try_fold(with, |node, seg| match seg {
        PathSeg::Key(key) => node.as_object_mut()?.get_mut(key),
        PathSeg::Index(i) => node.as_array_mut()?.get_mut(*i),
    })
}
