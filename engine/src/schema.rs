//! JSON Schema of the pipeline file, generated from the Rust types and the registered
//! kinds (usable by yaml-language-server for completion and checks in editors).

use serde_json::{json, Value};

use crate::kind::Registry;
use crate::pipeline::PipelineFile;

pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let kinds: Vec<(&str, &str, Value)> = registry
        .iter()
        .map(|k| {
            (
                k.name(),
                k.about(),
                k.with_schema(&mut generator).to_value(),
            )
        })
        .collect();
    let mut root = generator.root_schema_for::<PipelineFile>().to_value();
    // Every definition but the pipeline's own structure is (part of) a kind's `with`.
    if let Some(defs) = root["definitions"].as_object_mut() {
        for (name, def) in defs.iter_mut() {
            if !PIPELINE_DEFINITIONS.contains(&name.as_str()) {
                allow_params_below(def);
            }
        }
    }
    let decl = &mut root["definitions"]["StageDecl"];
    decl["properties"]["kind"] = json!({
        "description": "The stage kind.",
        "enum": kinds.iter().map(|(n, _, _)| *n).collect::<Vec<_>>(),
    });
    decl["allOf"] = Value::Array(
        kinds
            .iter()
            .map(|(name, about, with)| {
                let mut with = with.clone();
                if let Some(obj) = with.as_object_mut() {
                    obj.entry("description").or_insert_with(|| json!(about));
                }
                // A whole `with` may come from a param too (`with: ${params.data}`).
                allow_params(&mut with);
                json!({
                    "if": { "properties": { "kind": { "const": name } }, "required": ["kind"] },
                    "then": { "properties": { "with": with } }
                })
            })
            .collect(),
    );
    root
}

/// Definitions of the pipeline file itself, where `${params.NAME}` is not interpolated.
const PIPELINE_DEFINITIONS: [&str; 2] = ["StageDecl", "InputRef"];

/// A `${params.NAME}` string, which the engine replaces by the param's value.
fn param_reference() -> Value {
    json!({
        "type": "string",
        "pattern": r"^\$\{params\.[A-Za-z0-9_-]+\}$",
        "description": "A param's value: `${params.NAME}`."
    })
}

/// Lets every value inside `schema` (an object's properties, an array's items, a map's
/// values) be a `${params.NAME}` reference as well as what its type allows: `with`
/// values are interpolated before they are checked, so editors must not flag
/// `steps: ${params.steps}`.
fn allow_params_below(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(props) = obj.get_mut("properties").and_then(Value::as_object_mut) {
        for value in props.values_mut() {
            allow_params(value);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(value) = obj.get_mut(key).filter(|v| v.is_object()) {
            allow_params(value);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = obj.get_mut(key).and_then(Value::as_array_mut) {
            list.iter_mut().for_each(allow_params_below);
        }
    }
}

/// `schema`, or a `${params.NAME}` reference (unless any string already passes).
fn allow_params(schema: &mut Value) {
    allow_params_below(schema);
    let Some(obj) = schema.as_object() else {
        return;
    };
    let takes_any_string = match obj.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    } && !["enum", "const", "pattern", "format"]
        .iter()
        .any(|k| obj.contains_key(*k));
    if takes_any_string {
        return;
    }
    // Descriptions and defaults stay outside, where editors show them.
    let mut inner = obj.clone();
    let mut outer = serde_json::Map::new();
    for key in ["description", "default", "title"] {
        if let Some(v) = inner.remove(key) {
            outer.insert(key.into(), v);
        }
    }
    outer.insert(
        "anyOf".into(),
        json!([Value::Object(inner), param_reference()]),
    );
    *schema = Value::Object(outer);
}
