//! The ready pipelines, end to end through the real binary, at CI size.

mod common;

use common::{statuses, Project};

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn distill_pipeline_runs_end_to_end_then_reruns_nothing() {
    let p = Project::new();
    let pipeline = repo("pipelines/distill.yaml");
    let small = [
        "--set",
        "steps=3",
        "--set",
        "seq_len=64",
        "--set",
        "embed_sequences=4",
    ];
    let args: Vec<&str> = ["run", pipeline.as_str()]
        .into_iter()
        .chain(small)
        .collect();

    let out = p.run(&args);
    assert_eq!(out.code(), 0, "{}", out.all());
    let stdout = out.stdout();
    assert!(
        stdout.contains("← winner"),
        "the score table is in the summary: {stdout}"
    );
    assert!(stdout.contains("holdout score"), "{stdout}");

    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&p.run(&["devnet", "models", "--json"]).stdout()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["state"], "Active");
    let record_path = p
        .run(&["path", &pipeline, "commit.record"])
        .stdout()
        .trim()
        .to_string();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(record_path).unwrap()).unwrap();
    assert_eq!(
        rows[0]["checksum"], record["manifest"]["checksum"],
        "the Active model is the committed one"
    );

    let again = p.run(&args);
    assert_eq!(again.code(), 0, "{}", again.all());
    assert!(
        statuses(&p.last_record()).iter().all(|(_, s)| s == "hit"),
        "a second run executes no stage: {}",
        again.all()
    );
}
