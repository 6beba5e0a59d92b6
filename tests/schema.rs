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

/// Editors validate pipelines with the schema before soma-flow interpolates params: the
/// shipped pipelines (which use `${params.x}` in typed fields) pass an independent
/// validator, and a wrongly typed value still fails.
#[test]
fn shipped_pipelines_pass_the_schema_with_their_params_and_wrong_types_fail() {
    let p = common::Project::new();
    let out = p.run(&["schema"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let schema = p.write("schema.json", &out.stdout());
    let root = env!("CARGO_MANIFEST_DIR");
    let script = r#"
import glob, json, sys
import jsonschema, yaml
validator = jsonschema.Draft7Validator(json.load(open(sys.argv[1])))
root = sys.argv[2]
files = sorted(glob.glob(root + "/pipelines/*.yaml")) + [
    root + "/examples/hello/pipeline.yaml", root + "/examples/slurm/pipeline.yaml",
    root + "/stages/assets/genesis/genesis.yaml"]
for f in files:
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(open(f)))]
    print(f, "ok" if not errors else errors)
bad = yaml.safe_load(open(root + "/pipelines/train.yaml"))
next(s for s in bad["stages"].values() if s["kind"] == "train")["with"]["steps"] = "ten"
print("wrong type", "rejected" if list(validator.iter_errors(bad)) else "accepted")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&schema)
        .arg(root)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python3 with jsonschema and PyYAML is needed (scripts/test.sh installs them): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let (last, files) = lines.split_last().expect("output");
    assert!(files.len() >= 7, "every shipped pipeline: {stdout}");
    for line in files {
        assert!(line.ends_with(" ok"), "{stdout}");
    }
    assert_eq!(*last, "wrong type rejected", "{stdout}");
}
