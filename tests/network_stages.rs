//! The commit and reveal stages through the real binary on the embedded devnet.

mod common;

use common::{statuses, Project};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/reference/fixtures/tiny_soma_models.safetensors"
);

fn publish_pipeline(p: &Project) {
    p.write(
        "publish.yaml",
        &format!(
            r#"
name: publish
stages:
  weights:
    kind: command
    with: {{ run: "cp {FIXTURE} outputs/model", outs: [model] }}
  embed:
    kind: command
    with: {{ run: "echo '[0.25, -0.5, 0.75]' > outputs/embedding", outs: [embedding] }}
  commit:
    kind: commit
    inputs: {{ model: weights.model, embedding: embed.embedding }}
    with: {{ commission: 1000 }}
  reveal:
    kind: reveal
    inputs: {{ commit: commit.record }}
"#
        ),
    );
}

fn models(p: &Project) -> Vec<serde_json::Value> {
    let out = p.run(&["devnet", "models", "--json"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    serde_json::from_str(&out.stdout()).unwrap()
}

#[test]
fn commit_then_reveal_across_an_epoch_on_the_devnet() {
    let p = Project::new();
    publish_pipeline(&p);
    assert_eq!(p.run(&["devnet", "init"]).code(), 0);

    let first = p.run(&["run", "publish.yaml"]);
    assert_eq!(
        first.code(),
        3,
        "reveal waits for the next epoch: {}",
        first.all()
    );
    assert!(
        first.all().contains("throwaway devnet identity"),
        "{}",
        first.all()
    );
    assert!(
        first.stdout().contains("cannot be revealed before epoch 1"),
        "{}",
        first.all()
    );
    let rows = models(&p);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["state"], "Pending");
    assert!(
        rows[0]["decryption_key"].is_null(),
        "no key before the reveal"
    );

    // The key sits in the store, private, and nowhere else.
    let keys: Vec<_> = std::fs::read_dir(p.store().join("keys"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(keys.len(), 1);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        keys[0].metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );

    assert_eq!(p.run(&["devnet", "advance-epoch"]).code(), 0);
    let second = p.run(&["run", "publish.yaml"]);
    assert_eq!(second.code(), 0, "{}", second.all());
    let rec = p.last_record();
    assert_eq!(
        statuses(&rec),
        [
            ("weights".into(), "hit".into()),
            ("embed".into(), "hit".into()),
            ("commit".into(), "hit".into()),
            ("reveal".into(), "ran".into())
        ]
    );
    let rows = models(&p);
    assert_eq!(rows[0]["state"], "Active");
    let key = rows[0]["decryption_key"]
        .as_str()
        .expect("revealed key")
        .to_string();
    let record_path = p
        .run(&["path", "publish.yaml", "commit.record"])
        .stdout()
        .trim()
        .to_string();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(record_path).unwrap()).unwrap();
    assert_eq!(rows[0]["checksum"], record["manifest"]["checksum"]);
    assert_eq!(rows[0]["embedding"], serde_json::json!([0.25, -0.5, 0.75]));

    // Before its reveal the key appeared in no output, log, record or cache entry.
    let mut seen = first.all();
    for dir in ["runs", "logs", "cache", "objects"] {
        for e in walk(&p.store().join(dir)) {
            seen.push_str(&String::from_utf8_lossy(&std::fs::read(e).unwrap()));
        }
    }
    assert!(
        !seen.contains(&key),
        "the decryption key leaked before its reveal"
    );

    let third = p.run(&["run", "publish.yaml"]);
    assert_eq!(third.code(), 0);
    assert!(statuses(&p.last_record()).iter().all(|(_, s)| s == "hit"));
}

#[test]
fn a_missed_reveal_window_fails_the_reveal_and_the_next_run_commits_again() {
    let p = Project::new();
    publish_pipeline(&p);
    assert_eq!(p.run(&["devnet", "init"]).code(), 0);
    assert_eq!(p.run(&["run", "publish.yaml"]).code(), 3);
    assert_eq!(p.run(&["devnet", "advance-epoch"]).code(), 0);
    assert_eq!(p.run(&["devnet", "advance-epoch"]).code(), 0);
    // The cached commit record no longer holds: commit runs again in epoch 2.
    let out = p.run(&["run", "publish.yaml"]);
    assert_eq!(out.code(), 3, "{}", out.all());
    assert!(
        out.stderr().contains("missed its reveal window"),
        "{}",
        out.all()
    );
    let rows = models(&p);
    assert_eq!(rows[0]["commit_epoch"], 2);
}

#[test]
fn bad_commission_is_a_validation_error() {
    let p = Project::new();
    p.write(
        "bad.yaml",
        "name: bad\nstages:\n  c:\n    kind: commit\n    inputs: {model: c.x, embedding: c.y}\n    with: {commission: 20000}\n",
    );
    let out = p.run(&["validate", "bad.yaml"]);
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr().contains("bad.yaml:6:24") && out.stderr().contains("over 100%"),
        "{}",
        out.all()
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}
