//! Validation through the binary: an invalid pipeline or a bad command line is a usage
//! error (exit 2) and nothing runs. Each class of error and its location is tested in
//! process in the engine crate (`engine/tests/validation.rs`).

use crate::common;

use common::Project;

#[test]
fn invalid_pipelines_and_bad_command_lines_exit_2_before_anything_runs() {
    let p = Project::new();
    p.write(
        "bad.yaml",
        "name: x\nstages:\n  a:\n    kind: comand\n    with: {run: 'true'}\n",
    );
    for command in ["validate", "run", "status", "dag"] {
        let out = p.run(&[command, "bad.yaml"]);
        assert_eq!(out.code(), 2, "{command}: {}", out.all());
        assert!(
            out.stderr().contains("bad.yaml:4:11")
                && out.stderr().contains("did you mean `command`"),
            "{command}: {}",
            out.all()
        );
    }
    assert!(
        !p.store().join("runs").exists()
            || std::fs::read_dir(p.store().join("runs"))
                .unwrap()
                .next()
                .is_none(),
        "no run was recorded"
    );

    p.write(
        "p.yaml",
        "name: x\nparams: {steps: 1}\nstages:\n  a:\n    kind: command\n    with: {run: 'true'}\n",
    );
    let out = p.run(&["validate", "p.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(
        out.stdout().contains("p.yaml: ok (1 stages)"),
        "{}",
        out.all()
    );
    for (args, needle) in [
        (
            &["validate", "p.yaml", "--set", "stpes=3"][..],
            "did you mean `steps`",
        ),
        (
            &["validate", "p.yaml", "--set", "steps"][..],
            "expected NAME=VALUE",
        ),
        (&["validate", "missing.yaml"][..], "missing.yaml"),
        (&["frobnicate"][..], "frobnicate"),
    ] {
        let out = p.run(args);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.all());
        assert!(out.stderr().contains(needle), "{args:?}: {}", out.all());
    }
}

/// A misspelled setting of a SOMA kind (whose settings are flattened) points at the
/// key and names the closest one, as serde's unknown fields do.
#[test]
fn a_misspelled_training_setting_names_the_closest_one() {
    let p = Project::new();
    p.write(
        "t.yaml",
        "name: t\nstages:\n  data:\n    kind: fetch-dataset\n    with: {source: local, paths: [x]}\n  train:\n    kind: train\n    inputs: {data: data.dataset}\n    with:\n      stpes: 3\n",
    );
    let out = p.run(&["validate", "t.yaml"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(
        out.stderr().contains("t.yaml:10:7") && out.stderr().contains("did you mean `steps`?"),
        "{}",
        out.all()
    );
}

/// `commit` needs the embedding or the data to compute it from: without either the
/// pipeline is refused on load, not after the training before it.
#[test]
fn a_commit_without_embedding_or_data_is_refused_before_anything_runs() {
    let p = Project::new();
    p.write(
        "c.yaml",
        "name: c\nstages:\n  m:\n    kind: command\n    with: { run: \"touch outputs/model\", outs: [model] }\n  commit:\n    kind: commit\n    inputs: { model: m.model }\n",
    );
    for command in ["validate", "run"] {
        let out = p.run(&[command, "c.yaml"]);
        assert_eq!(out.code(), 2, "{command}: {}", out.all());
        assert!(
            out.stderr().contains("c.yaml:6:3")
                && out
                    .stderr()
                    .contains("needs one of the inputs `embedding`, `data`"),
            "{command}: {}",
            out.all()
        );
    }
    assert!(!p.store().join("runs").exists() || p.records().is_empty());
}

/// Files a pipeline names are checked on load: a key file and local data paths that
/// are not there are said with the folder a relative path was taken from.
#[test]
fn missing_key_files_and_data_paths_are_said_on_load() {
    let p = Project::new();
    p.write(
        "k.yaml",
        "name: k\nstages:\n  data:\n    kind: fetch-dataset\n    with: { source: local, paths: [\"nope/*.md\"] }\n  r:\n    kind: reveal\n    with: { network: { key_file: missing.key } }\n",
    );
    let out = p
        .cmd(&["validate", "k.yaml"])
        .env_remove("SOMA_SECRET_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let folder = p.path().display().to_string();
    assert!(
        stderr.contains("k.yaml:5:36")
            && stderr.contains(&format!(
                "nothing at {folder}/nope (relative to the pipeline's folder {folder})"
            )),
        "{stderr}"
    );
    assert!(
        stderr.contains("k.yaml:8:34")
            && stderr.contains(&format!("no key file at {folder}/missing.key")),
        "{stderr}"
    );
    p.write("missing.key", "");
    std::fs::create_dir(p.path().join("nope")).unwrap();
    let out = p.run(&["validate", "k.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
}

/// A training stage written with the last release's flat keys still validates (exit 0)
/// and says, at each old key, where it moved; the new spelling loads without a word.
#[test]
fn the_last_releases_flat_training_keys_load_with_a_warning_each() {
    let p = Project::new();
    let pipeline = |with: &str| {
        format!("name: x\nstages:\n  data:\n    kind: fetch-dataset\n    with: {{source: local, paths: [d.md], holdout: 0}}\n  t:\n    kind: train\n    inputs: {{data: data.dataset}}\n    with: {with}\n")
    };
    p.write("d.md", "some text\n");
    p.write(
        "old.yaml",
        &pipeline("{steps: 2, lr: 0.01, schedule: cosine, accum: 1}"),
    );
    p.write(
        "new.yaml",
        &pipeline("{steps: 2, optimizer: {lr: 0.01}, schedule: {decay: cosine}, data: {accum: 1}}"),
    );
    let out = p.run(&["validate", "old.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    for (key, new) in [
        ("lr", "optimizer.lr"),
        ("schedule", "schedule.decay"),
        ("accum", "data.accum"),
    ] {
        assert!(
            out.stderr().contains("warning: old.yaml:9:")
                && out
                    .stderr()
                    .contains(&format!("with.{key}: moved to `{new}`")),
            "{}",
            out.all()
        );
    }
    let out = p.run(&["validate", "new.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(!out.stderr().contains("warning"), "{}", out.all());
}
