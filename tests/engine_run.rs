//! The engine end to end through the real binary: the commands (run, status, path,
//! rerun, gc, report), exit codes, crash safety. The engine's behaviour itself is
//! tested in process in the engine crate (`engine/tests/`).

use crate::common;

use std::time::{Duration, Instant};

use common::{statuses, Project};

/// The example from the engine issue, with a side-effect counter per stage.
const EXAMPLE: &str = r#"
name: example
backend: ndarray
params:
  greeting: hello
  counter: COUNTER
stages:
  make:
    kind: command
    with:
      run: "echo make >> ${params.counter}; echo ${params.greeting} > outputs/text"
      outs: [text]
  shout:
    kind: command
    inputs: { src: make.text }
    with:
      run: "echo shout >> ${params.counter}; tr a-z A-Z < inputs/src > outputs/loud"
      outs: [loud]
  after:
    kind: command
    needs: [shout]
    with: { run: "echo after >> ${params.counter}" }
"#;

fn example(p: &Project) -> std::path::PathBuf {
    let counter = p.path().join("counter.txt");
    p.write(
        "example.yaml",
        &EXAMPLE.replace("COUNTER", counter.to_str().unwrap()),
    );
    counter
}

fn count(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn example_runs_then_reruns_nothing_then_only_what_changed() {
    let p = Project::new();
    let counter = example(&p);

    let first = p.run(&["run", "example.yaml"]);
    assert_eq!(first.code(), 0, "{}", first.all());
    assert_eq!(count(&counter), ["make", "shout", "after"]);
    let out = p.run(&["path", "example.yaml", "shout.loud"]);
    assert_eq!(
        std::fs::read_to_string(out.stdout().trim()).unwrap(),
        "HELLO\n"
    );

    let second = p.run(&["run", "example.yaml"]);
    assert_eq!(second.code(), 0, "{}", second.all());
    assert_eq!(
        count(&counter).len(),
        3,
        "a rerun of an unchanged pipeline executes nothing"
    );
    assert!(statuses(&p.last_record()).iter().all(|(_, s)| s == "hit"));

    let status = p.run(&["status", "example.yaml", "--set", "greeting=hi"]);
    assert!(
        status.stdout().contains("param `greeting` changed"),
        "{}",
        status.all()
    );
    // Without a file: the latest run's pipeline and overrides; `latest` names it too.
    for args in [&["status"][..], &["status", "latest"]] {
        let status = p.run(args);
        assert_eq!(status.code(), 0, "{}", status.all());
        let cached = |l: &str| l.starts_with("after ") && l.ends_with(" cached");
        assert!(status.stdout().lines().any(cached), "{}", status.all());
    }

    let third = p.run(&["run", "example.yaml", "--set", "greeting=hi"]);
    assert_eq!(third.code(), 0, "{}", third.all());
    assert_eq!(
        count(&counter)[3..],
        ["make", "shout"],
        "only make and shout rerun"
    );
    let rec = p.last_record();
    assert_eq!(
        statuses(&rec),
        [
            ("make".into(), "ran".into()),
            ("shout".into(), "ran".into()),
            ("after".into(), "hit".into())
        ]
    );
    let out = p.run(&["path", "example.yaml", "shout.loud"]);
    assert_eq!(
        std::fs::read_to_string(out.stdout().trim()).unwrap(),
        "HI\n"
    );
}

#[test]
fn dry_run_runs_nothing_and_a_target_runs_its_part_which_rerun_repeats() {
    let p = Project::new();
    let counter = example(&p);

    let dry = p.run(&["run", "example.yaml", "--dry-run"]);
    assert_eq!(dry.code(), 0, "{}", dry.all());
    for stage in ["make", "shout", "after"] {
        assert!(
            dry.stdout()
                .lines()
                .any(|l| l.starts_with(stage) && l.contains("would run")),
            "{stage}: {}",
            dry.all()
        );
    }
    assert!(count(&counter).is_empty(), "a dry run executes nothing");

    let part = p.run(&["run", "example.yaml", "--target", "shout"]);
    assert_eq!(part.code(), 0, "{}", part.all());
    assert_eq!(count(&counter), ["make", "shout"]);
    let rec = p.last_record();
    assert_eq!(
        statuses(&rec),
        [
            ("make".into(), "ran".into()),
            ("shout".into(), "ran".into())
        ]
    );

    let id = rec["id"].as_str().unwrap();
    let rerun = p.run(&["rerun", id, "--no-cache"]);
    assert_eq!(rerun.code(), 0, "{}", rerun.all());
    assert_eq!(
        count(&counter),
        ["make", "shout", "make", "shout"],
        "rerun repeats the part, not the whole file"
    );

    let dry = p.run(&["run", "example.yaml", "--dry-run"]);
    let line = |stage: &str| {
        dry.stdout()
            .lines()
            .find(|l| l.starts_with(stage))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("shout").contains("cached"), "{}", dry.all());
    assert!(line("after").contains("would run"), "{}", dry.all());

    let compared = p.run(&[
        "compare",
        "--last",
        "2",
        "--pipeline",
        "example.yaml",
        "--json",
    ]);
    assert_eq!(compared.code(), 0, "{}", compared.all());
    let json: serde_json::Value = serde_json::from_str(&compared.stdout()).unwrap();
    assert_eq!(json["runs"].as_array().map(Vec::len), Some(2), "{json}");
    let id = |i: usize| json["runs"][i].as_str().unwrap();
    let table = p.run(&["compare", id(0), id(1)]);
    assert_eq!(table.code(), 0, "{}", table.all());
    assert!(table.stdout().contains("wall time"), "{}", table.all());

    let bad = p.run(&["run", "example.yaml", "--target", "shot"]);
    assert_eq!(bad.code(), 2, "{}", bad.all());
    assert!(
        bad.stderr().contains("did you mean `shout`"),
        "{}",
        bad.all()
    );
}

#[test]
fn a_sweep_runs_each_point_as_its_own_run_and_shared_stages_once() {
    let p = Project::new();
    let counter = p.path().join("counter.txt");
    p.write(
        "sweep.yaml",
        &r#"
name: sweep
params: {a: 1, b: x, counter: COUNTER}
stages:
  shared:
    kind: command
    with: {run: "echo shared >> ${params.counter}; echo base > outputs/o", outs: [o]}
  point:
    kind: command
    inputs: {src: shared.o}
    with: {run: "echo point >> ${params.counter}; echo ${params.a}${params.b} > outputs/o", outs: [o]}
"#
        .replace("COUNTER", counter.to_str().unwrap()),
    );
    let out = p.run(&["run", "sweep.yaml", "--set", "a=1,2", "--set", "b=x,y"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let lines = count(&counter);
    assert_eq!(
        lines.iter().filter(|l| *l == "shared").count(),
        1,
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| *l == "point").count(),
        4,
        "{lines:?}"
    );
    assert!(out.stdout().contains("sweep of 4 runs"), "{}", out.all());
    for row in ["--set a", "--set b", "wall time"] {
        assert!(out.stdout().contains(row), "{row}: {}", out.all());
    }
    let runs = p.run(&["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout()).unwrap();
    assert_eq!(
        runs.as_array().map(Vec::len),
        Some(4),
        "each point is its own run"
    );

    let bad = p.run(&["run", "sweep.yaml", "--set", "a=1,2", "--set", "c=3"]);
    assert_eq!(bad.code(), 2, "{}", bad.all());
    assert_eq!(
        count(&counter).len(),
        5,
        "a bad point stops the sweep before it runs"
    );
}

#[test]
fn killed_run_leaves_nothing_trusted_and_reruns_cleanly() {
    let p = Project::new();
    let mark = p.path().join("started");
    let pid_file = p.path().join("pid");
    p.write(
        "kill.yaml",
        &format!(
            "name: kill\nstages:\n  s:\n    kind: command\n    with:\n      run: 'echo $$ > {pid}; echo partial > outputs/o; if [ ! -f {m} ]; then touch {m}; sleep 30; fi; echo complete >> outputs/o'\n      outs: [o]\n",
            m = mark.display(),
            pid = pid_file.display()
        ),
    );
    let mut child = p
        .cmd(&["run", "kill.yaml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !mark.exists() {
        assert!(t.elapsed() < Duration::from_secs(20), "stage never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL: no handler runs.
    child.kill().unwrap();
    child.wait().unwrap();
    // The guardian kills the stage's group: its shell does not live on.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let alive = || {
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        })
    };
    let t = Instant::now();
    while alive() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the stage outlived a killed soma-flow"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let status = p.run(&["status", "kill.yaml"]);
    assert!(
        status.stdout().contains("would run"),
        "nothing from the killed run is trusted: {}",
        status.all()
    );

    let out = p.run(&["run", "kill.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let path = p
        .run(&["path", "kill.yaml", "s.o"])
        .stdout()
        .trim()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        "partial\ncomplete\n"
    );
    let tmp: Vec<_> = std::fs::read_dir(p.store().join("tmp")).unwrap().collect();
    assert!(
        tmp.is_empty(),
        "stale working directories are cleared: {tmp:?}"
    );
}

#[test]
fn deferred_stage_exits_3_and_blocks_dependents() {
    let p = Project::new();
    p.write(
        "defer.yaml",
        "name: defer\nstages:\n  reveal:\n    kind: command\n    with: {run: 'echo epoch has not turned yet; exit 3', defer_on_exit: 3, outs: [o]}\n  next:\n    kind: command\n    inputs: {x: reveal.o}\n    with: {run: 'true'}\n  other:\n    kind: command\n    with: {run: 'true'}\n",
    );
    let out = p.run(&["run", "defer.yaml"]);
    assert_eq!(out.code(), 3, "{}", out.all());
    assert!(
        out.stdout().contains("epoch has not turned yet"),
        "{}",
        out.all()
    );
    let rec = p.last_record();
    assert_eq!(
        statuses(&rec),
        [
            ("reveal".into(), "deferred".into()),
            ("next".into(), "skipped".into()),
            ("other".into(), "ran".into())
        ]
    );
    // Deferred stages are not cached: the next run tries again.
    assert_eq!(p.run(&["run", "defer.yaml"]).code(), 3);
    assert_eq!(statuses(&p.last_record())[0].1, "deferred");
}

#[test]
fn failed_stage_exits_1_with_its_output() {
    let p = Project::new();
    p.write(
        "fail.yaml",
        "name: fail\nstages:\n  a:\n    kind: command\n    with: {run: 'echo something broke >&2; exit 7'}\n  b:\n    kind: command\n    needs: [a]\n    with: {run: 'true'}\n  c:\n    kind: command\n    with: {run: 'true', outs: [missing]}\n",
    );
    let out = p.run(&["run", "fail.yaml"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(out.all().contains("something broke"), "{}", out.all());
    assert!(
        out.all()
            .contains("declared output `missing` was not written"),
        "{}",
        out.all()
    );
    assert_eq!(statuses(&p.last_record())[1].1, "skipped");
}

#[test]
fn rerun_repeats_recorded_params_and_gc_keeps_referenced_objects() {
    let p = Project::new();
    let counter = example(&p);
    assert_eq!(
        p.run(&["run", "example.yaml", "--set", "greeting=bonjour"])
            .code(),
        0
    );
    let id = p.last_record()["id"].as_str().unwrap().to_string();
    // The file changes afterwards; rerun uses what was recorded.
    std::fs::write(p.path().join("example.yaml"), "name: changed\nstages: {}\n").unwrap();
    let out = p.run(&["rerun", &id, "--no-cache"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let rec = p.last_record();
    assert_eq!(rec["params"]["greeting"], "bonjour");
    assert_eq!(count(&counter).len(), 6);

    let run_list = p.run(&["runs"]);
    assert!(run_list.stdout().contains(&id));

    let orphan = p.store().join("objects/ff/ff00");
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, "x").unwrap();
    let gc = p.run(&["gc", "--dry-run"]);
    assert!(
        gc.stdout().contains("ff00") && orphan.exists(),
        "{}",
        gc.all()
    );
    let gc = p.run(&["gc"]);
    assert_eq!(gc.code(), 0, "{}", gc.all());
    assert!(!orphan.exists());
    example(&p);
    assert_eq!(
        p.run(&["run", "example.yaml", "--set", "greeting=bonjour"])
            .code(),
        0
    );
    assert!(
        statuses(&p.last_record()).iter().all(|(_, s)| s == "hit"),
        "gc kept what records reference"
    );
}

#[test]
fn store_can_be_chosen_by_flag_or_environment() {
    let p = Project::new();
    example(&p);
    let out = p.run(&["--store", "elsewhere", "run", "example.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(p.path().join("elsewhere/runs").is_dir());
    let out = p
        .cmd(&["run", "example.yaml"])
        .env("SOMA_FLOW_STORE", p.path().join("env-store"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(p.path().join("env-store/runs").is_dir());
    assert!(!p.store().exists());
}

#[test]
fn with_deps_enter_the_cache_key() {
    let p = Project::new();
    p.write("script.sh", "echo v1\n");
    p.write(
        "deps.yaml",
        "name: deps\nstages:\n  s:\n    kind: command\n    with: {run: 'sh $SOMA_FLOW_PIPELINE_DIR/script.sh > outputs/o', outs: [o], deps: [script.sh]}\n",
    );
    assert_eq!(p.run(&["run", "deps.yaml"]).code(), 0);
    assert_eq!(p.run(&["run", "deps.yaml"]).code(), 0);
    assert_eq!(statuses(&p.last_record())[0].1, "hit");
    p.write("script.sh", "echo v2\n");
    let status = p.run(&["status", "deps.yaml"]);
    assert!(
        status.stdout().contains("files it depends on changed"),
        "{}",
        status.all()
    );
    assert_eq!(p.run(&["run", "deps.yaml"]).code(), 0);
    assert_eq!(statuses(&p.last_record())[0].1, "ran");
}

/// A valid 1x1 PNG, and its base64 as the report embeds it.
const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];
const TINY_PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==";

#[test]
fn report_is_one_self_contained_page_with_the_pngs_beside_it() {
    let p = Project::new();
    std::fs::write(p.path().join("tiny.png"), TINY_PNG).unwrap();
    p.write(
        "plots.yaml",
        r#"
name: plots
stages:
  plot:
    kind: command
    with:
      run: >-
        cp "$SOMA_FLOW_PIPELINE_DIR/tiny.png" outputs/curve;
        mkdir -p outputs/plots/train; cp "$SOMA_FLOW_PIPELINE_DIR/tiny.png" outputs/plots/train/loss;
        echo not a picture > outputs/plots/readme; echo text > outputs/text
      outs: [curve, plots, text]
  measure:
    kind: command
    inputs: { c: plot.curve }
    with: { run: "wc -c < inputs/c > outputs/size", outs: [size] }
  finish:
    kind: command
    needs: [measure]
    with: { run: "true" }
"#,
    );
    let run = p.run(&["run", "plots.yaml"]);
    assert_eq!(run.code(), 0, "{}", run.all());
    let id = p.last_record()["id"].as_str().unwrap().to_string();

    let out = p.run(&["report", &id, "--out", "rep"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let index = p.path().join("rep/index.html");
    assert_eq!(out.stdout().trim(), "rep/index.html");
    let html = std::fs::read_to_string(&index).unwrap();
    for stage in ["plot", "measure", "finish"] {
        assert!(
            html.contains(&format!(">{stage}</text>")),
            "{stage} in the graph"
        );
        assert!(
            html.contains(&format!("<td>{stage}</td>")),
            "{stage} in the table"
        );
    }
    assert_eq!(html.matches("<svg").count(), 2, "graph and timeline");
    assert!(
        html.contains("<title>plot → measure: curve→c</title>"),
        "data arrow"
    );
    assert!(
        html.contains("<title>measure → finish: needs</title>"),
        "needs arrow"
    );
    assert!(html.contains(&id));
    assert_eq!(
        html.matches(&format!("data:image/png;base64,{TINY_PNG_BASE64}\""))
            .count(),
        2,
        "the curve file and the PNG inside the plots directory, not the text"
    );
    assert!(html.contains("<code>plot.plots/train/loss</code>"));
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src=\"http"));
    for copy in ["plot.curve.png", "plot.plots.train.loss.png"] {
        assert_eq!(
            std::fs::read(p.path().join("rep").join(copy)).unwrap(),
            TINY_PNG,
            "{copy}"
        );
    }
    assert_eq!(std::fs::read_dir(p.path().join("rep")).unwrap().count(), 3);

    // The default directory is named after the whole id, even when given a prefix,
    // `latest` or nothing (the latest run), and a second report into it replaces the
    // first.
    for args in [
        &["report", &id[..12]][..],
        &["report", "latest"],
        &["report"],
    ] {
        let out = p.run(args);
        assert_eq!(out.code(), 0, "{}", out.all());
    }
    assert!(p
        .path()
        .join(format!("report-{id}/plot.curve.png"))
        .is_file());

    p.write("taken", "a file");
    let out = p.run(&["report", &id, "--out", "taken"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(
        out.stderr().contains("taken exists and is not a directory"),
        "{}",
        out.all()
    );
}

#[test]
fn report_of_an_unknown_run_names_it() {
    let p = Project::new();
    example(&p);
    assert_eq!(p.run(&["run", "example.yaml"]).code(), 0);
    let out = p.run(&["report", "19990101-no-such-run"]);
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr().contains("no run `19990101-no-such-run`"),
        "{}",
        out.all()
    );
    assert!(!p.path().join("report-19990101-no-such-run").exists());
}

#[test]
fn a_reader_that_closes_early_ends_the_process_quietly_as_sigpipe_would() {
    use std::io::Read;
    let p = Project::new();
    // The schema is larger than a pipe's buffer, so writing it meets the closed pipe.
    let mut child = p
        .cmd(&["schema"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
