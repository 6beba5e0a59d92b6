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

#[test]
fn commit_then_reveal_across_an_epoch_on_the_devnet() {
    let p = Project::new();
    publish_pipeline(&p);
    assert_eq!(p.run(&["devnet", "init", "--empty"]).code(), 0);

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
    let rows = p.devnet_models();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["state"], "Pending");
    assert!(
        rows[0]["decryption_key"].is_null(),
        "no key before the reveal"
    );

    // The key sits in the store, private, and nowhere else; beside it the embedding
    // to reveal with it (so a later run can reveal without this run's record).
    let mut kept: Vec<_> = std::fs::read_dir(p.store().join("keys"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    kept.sort();
    let names: Vec<_> = kept
        .iter()
        .map(|k| k.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names[0].ends_with(".embedding.json") && names[1].ends_with(".key"),
        "{names:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    for file in &kept {
        let mode = file.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    for dir in ["keys", "devnet"] {
        let mode = p.store().join(dir).metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{dir}/ is owner-only");
    }

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
    let rows = p.devnet_models();
    assert_eq!(rows[0]["state"], "Active");
    let key = rows[0]["decryption_key"]
        .as_str()
        .expect("revealed key")
        .to_string();
    let record = p.output_json("publish.yaml", "commit.record");
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
    assert_eq!(p.run(&["devnet", "init", "--empty"]).code(), 0);
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
    let rows = p.devnet_models();
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

/// Two other owners publish; one ciphertext is then corrupted in storage.
fn two_competitors(p: &Project) {
    p.write(
        "owner.yaml",
        &format!(
            r#"
name: owner
params: {{ key: a.key, e: 0.5 }}
stages:
  weights:
    kind: command
    with: {{ run: "cp {FIXTURE} outputs/model", outs: [model] }}
  embed:
    kind: command
    with: {{ run: "echo '[${{params.e}}, 1.0]' > outputs/embedding", outs: [embedding] }}
  commit:
    kind: commit
    inputs: {{ model: weights.model, embedding: embed.embedding }}
    with: {{ network: {{ key_file: "${{params.key}}" }} }}
  reveal:
    kind: reveal
    inputs: {{ commit: commit.record }}
    with: {{ network: {{ key_file: "${{params.key}}" }} }}
"#
        ),
    );
    assert_eq!(p.run(&["keygen", "--out", "a.key"]).code(), 0);
    assert_eq!(p.run(&["keygen", "--out", "b.key"]).code(), 0);
    assert_eq!(p.run(&["devnet", "init", "--empty"]).code(), 0);
    assert_eq!(p.run(&["run", "owner.yaml"]).code(), 3);
    assert_eq!(
        p.run(&["run", "owner.yaml", "--set", "key=b.key", "--set", "e=-0.5"])
            .code(),
        3
    );
    assert_eq!(p.run(&["devnet", "advance-epoch"]).code(), 0);
    assert_eq!(p.run(&["run", "owner.yaml"]).code(), 0);
    assert_eq!(
        p.run(&["run", "owner.yaml", "--set", "key=b.key", "--set", "e=-0.5"])
            .code(),
        0
    );
    let rows = p.devnet_models();
    assert!(rows.iter().all(|r| r["state"] == "Active"), "{rows:?}");
    let url = rows[1]["weights_url"].as_str().unwrap();
    let path = url.strip_prefix("file://").unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// The `fetch.models` directory of fetch.yaml's latest run, and its listing.
fn fetched_models(p: &Project) -> (String, Vec<serde_json::Value>) {
    let dir = p.output_path("fetch.yaml", "fetch.models");
    let listing = std::fs::read(format!("{dir}/models.json")).unwrap();
    (dir, serde_json::from_slice(&listing).unwrap())
}

#[test]
fn fetch_competitors_decrypts_revealed_models_and_skips_a_corrupt_one() {
    let p = Project::new();
    two_competitors(&p);
    p.write(
        "fetch.yaml",
        "name: fetch\nparams: {strict: false}\nstages:\n  fetch:\n    kind: fetch-competitors\n    with: {strict: '${params.strict}'}\n",
    );
    let out = p.run(&["run", "fetch.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(
        out.stdout().contains("skipped competitor 2"),
        "{}",
        out.all()
    );
    let (dir, listed) = fetched_models(&p);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], "1");
    assert_eq!(listed[0]["embedding"], serde_json::json!([0.5, 1.0]));
    let fetched = std::fs::read(format!("{dir}/1.safetensors")).unwrap();
    assert_eq!(
        fetched,
        std::fs::read(FIXTURE).unwrap(),
        "decrypted to the exact committed bytes"
    );

    let out = p.run(&["run", "fetch.yaml", "--set", "strict=true"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(
        out.all().contains("competitors failed their checks"),
        "{}",
        out.all()
    );

    // The winner of a score stage over the fetched competitors is reported.
    p.write(
        "score.yaml",
        &format!(
            "name: s\nstages:\n  fetch:\n    kind: fetch-competitors\n  blob:\n    kind: command\n    with: {{run: 'head -c 3000 {FIXTURE} > outputs/b', outs: [b]}}\n  score:\n    kind: score\n    inputs: {{competitors: fetch.models, data: blob.b}}\n    with: {{heads: 4}}\n"
        ),
    );
    let out = p.run(&["run", "score.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stdout().contains("← winner"), "{}", out.all());
}

#[test]
fn commit_computes_the_genesis_embedding_when_none_is_given() {
    let p = Project::new();
    p.write(
        "doc.txt",
        &"fn main() { println!(\"hello\"); }\n".repeat(40),
    );
    p.write(
        "embed.yaml",
        &format!(
            r#"
name: embed
stages:
  weights:
    kind: command
    with: {{ run: "cp {FIXTURE} outputs/model", outs: [model] }}
  data:
    kind: fetch-dataset
    with: {{ source: local, paths: [doc.txt], holdout: 0 }}
  commit:
    kind: commit
    inputs: {{ model: weights.model, data: data.dataset }}
    with: {{ embed: {{ heads: 4, sequences: 2, seq_len: 64 }} }}
"#
        ),
    );
    let out = p.run(&["run", "embed.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let rows = p.devnet_models();
    assert_eq!(rows.last().unwrap()["state"], "Pending");
    let record = p.output_json("embed.yaml", "commit.record");
    let embedding: Vec<f64> = serde_json::from_value(record["embedding"].clone()).unwrap();
    assert_eq!(embedding.len(), 128, "v1-tiny's dimension");
    let norm: f64 = embedding.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-4,
        "a unit-norm genesis embedding: {norm}"
    );
}

#[test]
fn a_fresh_devnet_offers_its_genesis_models_as_competitors() {
    let p = Project::new();
    p.write(
        "fetch.yaml",
        "name: fetch\nstages:\n  fetch:\n    kind: fetch-competitors\n    with: {strict: true, heads: 4}\n",
    );
    let out = p.run(&["run", "fetch.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let rows = p.devnet_models();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["state"] == "Active"), "{rows:?}");
    let (dir, listed) = fetched_models(&p);
    assert_eq!(listed.len(), 2);
    let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/stages/assets/genesis");
    for (id, name) in [("1", "genesis-code"), ("2", "genesis-prose")] {
        let fetched = std::fs::read(format!("{dir}/{id}.safetensors")).unwrap();
        let shipped = std::fs::read(format!("{assets}/{name}.safetensors")).unwrap();
        assert!(fetched == shipped, "model {id} decrypts to {name}");
    }

    // An empty devnet is still available.
    let q = Project::new();
    assert_eq!(q.run(&["devnet", "init", "--empty"]).code(), 0);
    assert!(q.devnet_models().is_empty());
}

#[test]
fn an_edited_local_competitor_is_fetched_again() {
    let p = Project::new();
    std::fs::copy(FIXTURE, p.path().join("theirs.safetensors")).unwrap();
    p.write(
        "local.yaml",
        "name: local\nstages:\n  fetch:\n    kind: fetch-competitors\n    with: {paths: [theirs.safetensors], heads: 4, strict: true}\n",
    );
    let status = |p: &Project| {
        let out = p.run(&["run", "local.yaml"]);
        assert_eq!(out.code(), 0, "{}", out.all());
        statuses(&p.last_record())[0].1.clone()
    };
    assert_eq!(status(&p), "ran");
    assert_eq!(status(&p), "hit");
    let genesis = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/stages/assets/genesis/genesis-code.safetensors"
    );
    std::fs::copy(genesis, p.path().join("theirs.safetensors")).unwrap();
    assert_eq!(status(&p), "ran", "new content, new key");
}
