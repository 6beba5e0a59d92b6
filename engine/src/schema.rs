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
                json!({
                    "if": { "properties": { "kind": { "const": name } }, "required": ["kind"] },
                    "then": { "properties": { "with": with } }
                })
            })
            .collect(),
    );
    root
}
