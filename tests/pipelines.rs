//! The ready pipelines, end to end through the real binary, at CI size.

use crate::common;

use common::{statuses, Project};

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn distill_pipeline_runs_end_to_end_then_reruns_nothing() {
    let p = Project::new();
    let pipeline = repo("pipelines/distill.yaml");
    // The defaults' training (30 steps of 256 tokens), which README's table measures:
    // fewer steps on shorter sequences do not reliably beat the competitors, which are
    // scored on 1024 tokens.
    let small = [
        "--set",
        "embed_sequences=4",
        // Two candidates are enough to test the choice; five cost CI a minute.
        "--set",
        "betas=[0, 0.3]",
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
    assert!(
        stdout.contains("average.model WINS: loss"),
        "the committed model beats every competitor on held-out data: {stdout}"
    );
    assert!(stdout.contains("β chosen on held-out data"), "{stdout}");

    assert!(
        stdout.contains("fetched 2 competitor(s): 0x"),
        "the local network's genesis offers two competitors: {stdout}"
    );

    let rows = p.localnet_models()["models"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 3, "two genesis models and mine: {rows:?}");
    let record = p.output_json(&pipeline, "commit.record");
    let mine = rows
        .iter()
        .find(|r| r["id"] == record["model_id"])
        .expect("mine");
    assert_eq!(mine["state"], "active");
    assert_eq!(
        mine["url"], record["url"],
        "the Active model is the committed one"
    );

    let again = p.run(&args);
    assert_eq!(again.code(), 0, "{}", again.all());
    assert!(
        stdout.contains("created the local network's throwaway key"),
        "{stdout}"
    );
    assert!(
        !again.stdout().contains("throwaway key"),
        "a cached rerun does not repeat a one-time note: {}",
        again.all()
    );
    assert!(
        statuses(&p.last_record()).iter().all(|(_, s)| s == "hit"),
        "a second run executes no stage: {}",
        again.all()
    );
}

#[test]
fn train_pipeline_runs_and_verify_shows_it_repeats_bit_for_bit() {
    let p = Project::new();
    let pipeline = repo("pipelines/train.yaml");
    let out = p.run(&[
        "run",
        &pipeline,
        "--set",
        "steps=3",
        "--set",
        "seq_len=64",
        "--set",
        "epoch=1s",
    ]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let id = p.last_record()["id"].as_str().unwrap().to_string();

    let verify = p.run(&["verify", &id]);
    assert_eq!(verify.code(), 0, "{}", verify.all());
    let report = verify.stdout();
    let line = |stage: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{stage} ")))
            .unwrap_or_else(|| panic!("no line for {stage}: {report}"))
            .to_string()
    };
    assert!(line("data").ends_with("identical"), "{report}");
    assert!(line("embed").ends_with("identical"), "{report}");
    assert!(
        line("train")
            .ends_with("identical (not compared: metrics: holds wall-clock timings (tokens/s))"),
        "the model and curve are compared: {report}"
    );
    assert!(
        line("commit")
            .ends_with("not compared (record: each commit encrypts with a fresh random key)"),
        "{report}"
    );
    assert!(report.contains("3 stage(s) identical, 0 not"), "{report}");
    let scratch = p.store().join("tmp");
    assert_eq!(
        std::fs::read_dir(&scratch).map_or(0, |d| d.count()),
        0,
        "the scratch store is removed"
    );
}

#[test]
fn continuous_pipeline_commits_defers_then_reveals_and_trains_on() {
    let p = Project::new();
    let pipeline = repo("pipelines/continuous.yaml");
    // Manual epochs: the test moves time on.
    let run = || {
        p.run(&[
            "run",
            &pipeline,
            "--set",
            "steps=2",
            "--set",
            "seq_len=64",
            "--set",
            "epoch=null",
        ])
    };

    let first = run();
    assert_eq!(first.code(), 0, "{}", first.all());
    assert!(
        first.stdout().contains("nothing to reveal"),
        "{}",
        first.all()
    );
    assert!(
        first
            .stdout()
            .contains("holds no model: trained from a seeded initialisation"),
        "{}",
        first.all()
    );
    let mine = |p: &Project| {
        let rows = p.localnet_models()["models"].as_array().unwrap().clone();
        assert_eq!(rows.len(), 3, "two genesis models and mine: {rows:?}");
        let record = p.output_json(&pipeline, "commit.record");
        rows.into_iter()
            .find(|r| r["id"] == record["model_id"])
            .expect("mine")
    };
    assert_eq!(mine(&p)["state"], "pending");

    let same_epoch = run();
    assert_eq!(
        same_epoch.code(),
        3,
        "pending until the next epoch: {}",
        same_epoch.all()
    );
    assert!(
        same_epoch
            .stdout()
            .contains("cannot be revealed before epoch 2"),
        "{}",
        same_epoch.all()
    );

    assert_eq!(p.run(&["localnet", "advance-epoch"]).code(), 0);
    let next_epoch = run();
    assert_eq!(next_epoch.code(), 0, "{}", next_epoch.all());
    let first_commit = p.output_json(&pipeline, "reveal.revealed");
    assert_eq!(first_commit["reveal_epoch"], 2);
    let last = p.last_record();
    assert_eq!(last["stages"]["train"]["status"], "ran", "trained on");
    assert_eq!(last["stages"]["commit"]["status"], "ran", "committed again");
    let row = mine(&p);
    assert_eq!(
        row["state"], "active",
        "revealed, with a new commit pending: {row}"
    );
    assert_eq!(row["awaiting_reveal"], true, "{row}");
    assert_eq!(row["commit_epoch"], 2, "{row}");
}

#[test]
fn specialize_pipeline_learns_from_filled_targets_on_a_fresh_local_network() {
    let p = Project::new();
    let pipeline = repo("pipelines/specialize.yaml");
    let args = [
        "run",
        pipeline.as_str(),
        "--set",
        "steps=3",
        "--set",
        "seq_len=64",
        "--set",
        "embed_sequences=4",
        "--set",
        "fills=3",
        "--set",
        "epoch=8s",
    ];
    let out = p.run(&args);
    assert_eq!(out.code(), 0, "{}", out.all());
    let stdout = out.stdout();
    let fills = stdout.matches("filled target 0x").count();
    assert!((1..=3).contains(&fills), "{stdout}");
    assert!(stdout.contains("I would win"), "the gaps summary: {stdout}");
    assert!(stdout.contains("% of targets"), "the placement: {stdout}");

    // The submitted data is what filled the targets; the gaps cover every one.
    let submitted = p.output_path(&pipeline, "submitted.dataset");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{submitted}/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["network"]["targets"].as_array().unwrap().len(),
        fills
    );
    let gaps = p.output_json(&pipeline, "gaps.table");
    assert_eq!(gaps.as_array().unwrap().len(), fills);
    let map = std::fs::read(p.output_path(&pipeline, "placement.map")).unwrap();
    assert!(map.starts_with(b"\x89PNG"));

    let record = p.output_json(&pipeline, "commit.record");
    let rows = p.localnet_models()["models"].as_array().unwrap().clone();
    let mine = rows
        .iter()
        .find(|r| r["id"] == record["model_id"])
        .expect("mine");
    assert_eq!(mine["state"], "active", "committed and revealed");

    // Again: nothing is submitted twice.
    let again = p.run(&args);
    assert_eq!(again.code(), 0, "{}", again.all());
    let statuses = statuses(&p.last_record());
    assert!(
        statuses.contains(&("submit".to_string(), "hit".to_string())),
        "{statuses:?}"
    );
}

/// Every shipped pipeline takes `data`, the whole fetch-dataset `with`, from the
/// command line, with an absolute glob under a hidden folder (a temporary directory).
#[test]
fn every_pipeline_takes_the_users_data_from_the_command_line() {
    let p = Project::new();
    for name in ["a", "b", "c", "d"] {
        p.write(
            &format!("my docs/{name}.md"),
            &format!(
                "# {name}\n{}",
                "Some prose of my own to train on.\n".repeat(40)
            ),
        );
    }
    let data = format!(
        "data={{source: local, paths: [\"{}/my docs/*.md\"], holdout: 0.25}}",
        p.path().display()
    );
    for (pipeline, stage) in [
        ("distill", "data"),
        ("train", "data"),
        ("continuous", "data"),
        ("specialize", "corpus"),
    ] {
        let file = repo(&format!("pipelines/{pipeline}.yaml"));
        let out = p.run(&["run", &file, "--target", stage, "--set", &data]);
        assert_eq!(out.code(), 0, "{pipeline}: {}", out.all());
        assert!(!out.stderr().contains("old spelling"), "{}", out.all());
        assert!(
            out.stdout().contains("3 documents") && out.stdout().contains("1 held out"),
            "{pipeline}: {}",
            out.all()
        );
    }
}

/// A path typed with `--set` is taken from the working directory (as a shell's
/// completion gives it), and the run records it absolute; one that exists nowhere
/// yet says which folder a relative path was taken from.
#[test]
fn a_key_file_given_on_the_command_line_is_taken_from_the_working_directory() {
    let p = Project::new();
    let out = p.run(&["keygen", "--out", "owner.key"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let pipeline = repo("pipelines/continuous.yaml");
    let run = p.run(&[
        "run",
        &pipeline,
        "--target",
        "reveal",
        "--set",
        "key_file=owner.key",
    ]);
    assert_eq!(run.code(), 0, "{}", run.all());
    let key = p.path().join("owner.key");
    assert_eq!(
        p.last_record()["params"]["key_file"],
        key.to_str().unwrap(),
        "recorded absolute"
    );
    let missing = p.run(&[
        "run",
        &pipeline,
        "--target",
        "reveal",
        "--set",
        "key_file=nowhere.key",
    ]);
    // Checked on load, before anything runs.
    assert_eq!(missing.code(), 2, "{}", missing.all());
    assert!(
        missing
            .stderr()
            .contains("nowhere.key (relative to the pipeline's folder"),
        "{}",
        missing.all()
    );
}
