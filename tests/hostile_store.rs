//! The store attacked as an adversarial user or a careless sync would: tampered and
//! malformed cache entries, corrupt objects, stages that write through their inputs,
//! special files, hard links, leaked secrets, signals, and gc racing a verify. Each
//! test names the guarantee it checks (README, "Crash safety and the store").

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{signal, statuses, still_running, Project};
use soma_flow_test_support::files_under;

/// Two stages: `make` writes a file and a directory, `use` reads both.
const PIPE: &str = r#"
name: hostile
params: { counter: COUNTER }
stages:
  make:
    kind: command
    with:
      run: "echo make >> ${params.counter}; echo hello > outputs/text; mkdir outputs/tree; echo leaf > outputs/tree/leaf"
      outs: [text, tree]
  use:
    kind: command
    inputs: { text: make.text, tree: make.tree }
    with:
      run: "echo use >> ${params.counter}; cat inputs/text inputs/tree/leaf > outputs/both"
      outs: [both]
"#;

fn setup(p: &Project) -> PathBuf {
    let counter = p.path().join("counter.txt");
    p.write(
        "p.yaml",
        &PIPE.replace("COUNTER", counter.to_str().unwrap()),
    );
    let out = p.run(&["run", "p.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    counter
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The cache entry file of the latest run's `stage`.
fn entry_path(p: &Project, stage: &str) -> PathBuf {
    let key = p.last_record()["stages"][stage]["key"]
        .as_str()
        .unwrap()
        .to_string();
    p.store()
        .join("cache")
        .join(&key[..2])
        .join(format!("{key}.json"))
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn make_writable(path: &Path) {
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(path, perm).unwrap();
}

fn both(p: &Project) -> String {
    let path = p.output_path("p.yaml", "use.both");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn a_tampered_entry_cannot_reach_outside_the_store() {
    let p = Project::new();
    let counter = setup(&p);
    let victim = p.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("precious"), "keep me").unwrap();
    let traversal = format!("../../../../../../../..{}", victim.display());
    edit_json(&entry_path(&p, "make"), |v| {
        v["outputs"]["tree"]["hash"] = traversal.clone().into();
    });
    for args in [&["status", "p.yaml"][..], &["run", "p.yaml"]] {
        let out = p.run(args);
        assert_eq!(out.code(), 0, "{args:?}: {}", out.all());
    }
    assert_eq!(
        std::fs::read_to_string(victim.join("precious")).unwrap(),
        "keep me"
    );
    assert_eq!(lines(&counter), ["make", "use", "make"], "make ran again");
    assert_eq!(both(&p), "hello\nleaf\n");
}

#[test]
fn malformed_or_foreign_entries_are_ignored_never_panic() {
    type Tamper = fn(&Path, &Path);
    let cases: [(&str, Tamper); 6] = [
        ("no outputs", |e, _| {
            edit_json(e, |v| v["outputs"] = serde_json::json!({}))
        }),
        ("short hash", |e, _| {
            edit_json(e, |v| v["outputs"]["text"]["hash"] = "ab".into())
        }),
        ("non-ASCII hash", |e, _| {
            edit_json(e, |v| {
                v["outputs"]["text"]["hash"] = format!("é{}", "a".repeat(62)).into()
            })
        }),
        ("not JSON", |e, _| std::fs::write(e, "{\"key\": ").unwrap()),
        // Another stage's entry filed under this key.
        ("copied", |e, other| {
            std::fs::copy(other, e).unwrap();
        }),
        // Edited to name another stage's intact object, key and all.
        ("redirected", |e, other| {
            let theirs: serde_json::Value =
                serde_json::from_slice(&std::fs::read(other).unwrap()).unwrap();
            edit_json(e, |v| {
                v["outputs"]["text"] = theirs["outputs"]["both"].clone()
            });
        }),
    ];
    for (what, tamper) in cases {
        let p = Project::new();
        let counter = setup(&p);
        let (make, used) = (entry_path(&p, "make"), entry_path(&p, "use"));
        tamper(&make, &used);
        let status = p.run(&["status", "p.yaml"]);
        assert_eq!(status.code(), 0, "{what}: {}", status.all());
        assert!(
            status.stdout().contains("make") && status.stdout().contains("would run"),
            "{what}: {}",
            status.all()
        );
        let out = p.run(&["run", "p.yaml"]);
        assert_eq!(out.code(), 0, "{what}: {}", out.all());
        assert!(
            out.stderr().contains("ignoring its cached result")
                || out.stderr().contains("rebuilding"),
            "{what}: the distrust is reported: {}",
            out.all()
        );
        assert_eq!(lines(&counter)[2..], ["make"], "{what}: only make reruns");
        assert_eq!(both(&p), "hello\nleaf\n", "{what}");
    }
}

#[test]
fn a_corrupt_object_is_replaced_not_reused_by_no_cache() {
    let p = Project::new();
    setup(&p);
    let text = p.output_path("p.yaml", "make.text");
    make_writable(Path::new(&text));
    std::fs::write(&text, "HACKED\n").unwrap();

    let status = p.run(&["status", "p.yaml"]);
    assert!(status.stdout().contains("corrupt"), "{}", status.all());
    let path = p.run(&["path", "p.yaml", "make.text"]);
    assert_eq!(
        path.code(),
        1,
        "path hands out no corrupt file: {}",
        path.all()
    );
    assert!(path.stderr().contains("corrupt"), "{}", path.all());

    // Put the corrupt object back, as a stale copy would be, then rebuild everything.
    std::fs::create_dir_all(Path::new(&text).parent().unwrap()).unwrap();
    std::fs::write(&text, "HACKED\n").unwrap();
    let out = p.run(&["run", "p.yaml", "--no-cache"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "hello\n");
    assert_eq!(both(&p), "hello\nleaf\n");
    let again = p.run(&["run", "p.yaml"]);
    assert_eq!(again.code(), 0, "{}", again.all());
    assert!(statuses(&p.last_record()).iter().all(|(_, s)| s == "hit"));
    assert_eq!(both(&p), "hello\nleaf\n");
}

#[test]
fn stored_objects_are_read_only_and_a_stage_writing_its_input_fails() {
    let p = Project::new();
    setup(&p);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let tree = PathBuf::from(p.output_path("p.yaml", "make.tree"));
        let mode = |q: &Path| std::fs::metadata(q).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tree) & 0o222, 0, "stored directories are read-only");
        assert_eq!(
            mode(&tree.join("leaf")) & 0o222,
            0,
            "stored files are read-only"
        );
    }
    // A stage that forces its way into an input (as root, or after chmod).
    p.write(
        "w.yaml",
        r#"
name: writer
stages:
  make:
    kind: command
    with: { run: "echo clean > outputs/text", outs: [text] }
  bad:
    kind: command
    inputs: { text: make.text }
    with:
      run: "t=$(readlink -f inputs/text); chmod u+w $t; echo dirty > $t; cp $t outputs/copy"
      outs: [copy]
"#,
    );
    let out = p.run(&["run", "w.yaml"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(
        out.stdout().contains("changed while the stage ran"),
        "{}",
        out.all()
    );
    let rec = p.last_record();
    assert_eq!(rec["stages"]["bad"]["status"], "failed");
    // Nothing built on the changed input was kept, and the input is rebuilt.
    p.run(&["run", "w.yaml"]);
    assert_eq!(p.last_record()["stages"]["make"]["status"], "ran");
}

#[test]
fn engine_variables_enter_the_key() {
    let p = Project::new();
    p.write(
        "v.yaml",
        r#"
name: vars
stages:
  a:
    kind: command
    with: { run: "echo $SOMA_FLOW_STAGE > outputs/o", outs: [o] }
  b:
    kind: command
    with: { run: "echo $SOMA_FLOW_STAGE > outputs/o", outs: [o] }
"#,
    );
    let out = p.run(&["run", "v.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let read = |o: &str| std::fs::read_to_string(p.output_path("v.yaml", o)).unwrap();
    assert_eq!(read("a.o"), "a\n");
    assert_eq!(read("b.o"), "b\n");
}

#[test]
fn secrets_stay_out_of_command_stages_unless_passed() {
    let p = Project::new();
    p.write(
        "s.yaml",
        r#"
name: secrets
stages:
  leak:
    kind: command
    with: { run: "env | sort | tee outputs/env", outs: [env] }
  allowed:
    kind: command
    with: { run: "echo token=$HF_TOKEN > outputs/env", outs: [env], pass_env: [HF_TOKEN] }
"#,
    );
    let out = p
        .cmd(&["run", "s.yaml"])
        .env("SOMA_SECRET_KEY", "sk-do-not-leak-1234")
        .env("HF_TOKEN", "hf-token-5678")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret-9012")
        .output()
        .unwrap();
    let out = common::Run(out);
    assert_eq!(out.code(), 0, "{}", out.all());
    let env = std::fs::read_to_string(p.output_path("s.yaml", "leak.env")).unwrap();
    assert!(env.contains("SOMA_FLOW_STAGE=leak"), "{env}");
    let mut everything = out.all() + &env;
    for dir in ["logs", "runs", "cache"] {
        for e in files_under(&p.store().join(dir)) {
            everything += &String::from_utf8_lossy(&std::fs::read(e).unwrap());
        }
    }
    for secret in ["sk-do-not-leak-1234", "aws-secret-9012"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    let allowed = std::fs::read_to_string(p.output_path("s.yaml", "allowed.env")).unwrap();
    assert_eq!(
        allowed, "token=hf-token-5678\n",
        "pass_env lets one through"
    );
}

/// Runs `soma-flow` and fails the test (instead of hanging it) past `limit`.
fn run_within(p: &Project, args: &[&str], limit: Duration) -> common::Run {
    let mut child = p
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("soma-flow {args:?} hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    common::Run(child.wait_with_output().unwrap())
}

#[cfg(unix)]
#[test]
fn special_files_are_refused_and_hard_links_copied() {
    let p = Project::new();
    p.write(
        "fifo.yaml",
        "name: fifo\nstages:\n  f:\n    kind: command\n    with: { run: 'mkfifo outputs/o', outs: [o] }\n",
    );
    let out = run_within(&p, &["run", "fifo.yaml"], Duration::from_secs(60));
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(out.stdout().contains("FIFO"), "{}", out.all());

    p.write(
        "zero.yaml",
        "name: zero\nstages:\n  z:\n    kind: command\n    with: { run: 'true', deps: [/dev/zero] }\n",
    );
    let out = run_within(&p, &["run", "zero.yaml"], Duration::from_secs(60));
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(out.stdout().contains("device"), "{}", out.all());

    let outside = p.path().join("outside.txt");
    std::fs::write(&outside, "mine\n").unwrap();
    p.write(
        "link.yaml",
        &format!(
            "name: link\nstages:\n  l:\n    kind: command\n    with: {{ run: 'ln {} outputs/o', outs: [o] }}\n",
            outside.display()
        ),
    );
    let out = p.run(&["run", "link.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(
        !std::fs::metadata(&outside)
            .unwrap()
            .permissions()
            .readonly(),
        "the file outside the store keeps its mode"
    );
    use std::os::unix::fs::MetadataExt;
    let stored = p.output_path("link.yaml", "l.o");
    assert_ne!(
        std::fs::metadata(&stored).unwrap().ino(),
        std::fs::metadata(&outside).unwrap().ino(),
        "the store owns a copy"
    );
    std::fs::write(&outside, "changed\n").unwrap();
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "mine\n");
}

/// Starts `soma-flow run` on a pipeline whose stage leaves a background process and
/// waits; returns the child and the two pids once both are running.
#[cfg(unix)]
fn start_sleeper(p: &Project) -> (Child, Vec<i32>) {
    let pids = p.path().join("pids");
    p.write(
        "sleep.yaml",
        &format!(
            "name: sleeper\nstages:\n  s:\n    kind: command\n    with: {{ run: 'sleep 300 & echo $! > {0}.tmp; echo $$ >> {0}.tmp; mv {0}.tmp {0}; wait' }}\n",
            pids.display()
        ),
    );
    let child = p
        .cmd(&["run", "sleep.yaml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !pids.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the stage never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids = lines(&pids).iter().map(|l| l.parse().unwrap()).collect();
    (child, pids)
}

#[cfg(unix)]
#[test]
fn stage_processes_die_with_soma_flow_even_on_sigkill() {
    let p = Project::new();
    let (mut child, pids) = start_sleeper(&p);
    signal(&child, "KILL");
    child.wait().unwrap();
    for pid in pids {
        assert!(
            !still_running(pid),
            "stage process {pid} outlived soma-flow"
        );
    }
}

#[cfg(unix)]
#[test]
fn an_interrupted_run_is_recorded_and_leaves_no_process() {
    for sig in ["INT", "TERM", "HUP"] {
        let p = Project::new();
        let (child, pids) = start_sleeper(&p);
        signal(&child, sig);
        let out = common::Run(child.wait_with_output().unwrap());
        assert_eq!(out.code(), 130, "SIG{sig}: {}", out.all());
        for &pid in &pids {
            assert!(
                !still_running(pid),
                "SIG{sig}: stage process {pid} survived"
            );
        }
        let rec = p.last_record();
        assert_eq!(rec["status"], "interrupted", "SIG{sig}: {rec}");
        assert_eq!(rec["stages"]["s"]["status"], "interrupted", "SIG{sig}");
        assert!(
            out.stdout().contains("0 skipped, 1 interrupted in"),
            "SIG{sig}: the summary counts it: {}",
            out.all()
        );
        assert!(
            p.store()
                .join("cache")
                .read_dir()
                .unwrap()
                .all(|shard| { shard.unwrap().path().read_dir().unwrap().next().is_none() }),
            "SIG{sig}: nothing cached"
        );
    }
}

#[test]
fn gc_waits_for_a_running_verify_and_sweeps_temp_files() {
    let p = Project::new();
    p.write(
        "slow.yaml",
        "name: slow\nstages:\n  s:\n    kind: command\n    with: { run: 'sleep 2; echo done > outputs/o', outs: [o] }\n",
    );
    assert_eq!(p.run(&["run", "slow.yaml"]).code(), 0);
    let id = p.last_record()["id"].as_str().unwrap().to_string();
    let verify = p
        .cmd(&["verify", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let verify create its scratch store and start the stage.
    let t = Instant::now();
    while !p
        .store()
        .join("tmp")
        .read_dir()
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("verify-"))
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "verify never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A killed writer's leftovers, in a shard and beside them.
    let shard = p.store().join("cache").join("ab");
    std::fs::create_dir_all(&shard).unwrap();
    let stale = [
        shard.join(".ab12.json.123.abc.tmp"),
        p.store().join("cache/stray"),
    ];
    for f in &stale {
        std::fs::write(f, "half").unwrap();
    }
    let gc = p.run(&["gc"]);
    assert_eq!(gc.code(), 0, "{}", gc.all());
    let verify = common::Run(verify.wait_with_output().unwrap());
    assert_eq!(verify.code(), 0, "verify survived gc: {}", verify.all());
    assert!(verify.stdout().contains("identical"), "{}", verify.all());
    assert!(
        !stale[0].exists(),
        "gc removed the killed writer's temp file"
    );
}

#[test]
fn kind_state_is_private_and_validation_of_duplicate_keys_is_linear() {
    let p = Project::new();
    setup(&p);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for private in ["state", "seal.key"] {
            let mode = std::fs::metadata(p.store().join(private))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{private} is owner-only");
        }
    }
    // 20,000 keys, then all of them again: the first duplicate is reported with its
    // position (the speed, linear now, is shown by `cargo bench --bench engine`).
    let mut yaml = String::from(
        "name: dup\nstages:\n  a:\n    kind: command\n    with:\n      run: 'true'\n      env:\n",
    );
    for i in 0..40_000 {
        yaml.push_str(&format!("        K{}: v\n", i % 20_000));
    }
    p.write("dup.yaml", &yaml);
    let out = run_within(&p, &["validate", "dup.yaml"], Duration::from_secs(60));
    assert_eq!(out.code(), 2, "{}", out.all());
    assert!(out.stderr().contains("duplicate key `K0`"), "{}", out.all());
    assert!(out.stderr().contains("dup.yaml:20008"), "{}", out.all());
}

#[test]
fn a_record_whose_id_is_not_its_file_name_is_ignored() {
    let p = Project::new();
    setup(&p);
    let id = p.last_record()["id"].as_str().unwrap().to_string();
    let record = p.store().join("runs").join(format!("{id}.json"));
    edit_json(&record, |v| v["id"] = "../../escaped".into());
    assert!(p.records().is_empty());
    let out = p.run(&["report", "../../escaped"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(!p.path().join("../escaped").exists());
}
