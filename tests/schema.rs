//! `schemas/pipeline.schema.json` is generated from the Rust types; this fails when it is stale.

use crate::common;

#[test]
fn committed_schema_matches_the_code() {
    let p = common::Project::new();
    let out = p.run(&["schema"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let generated: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/pipeline.schema.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(
        generated == committed,
        "schemas/pipeline.schema.json is stale; regenerate it with\n  cargo run -- schema > schemas/pipeline.schema.json"
    );
    let kinds = &generated["definitions"]["StageDecl"]["properties"]["kind"]["enum"];
    assert!(kinds.as_array().unwrap().iter().any(|k| k == "command"));
}
