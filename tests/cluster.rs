//! Executors: stages as jobs of the real one-node Slurm cluster that README's test
//! command starts (scripts/slurm-up.sh), timeouts and retries, and GPU assignment.
//! Without Slurm these tests fail: `sbatch` cannot be run.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::{self, Project};
use soma_flow_test_support::files_under;

/// The cluster has the cores of this machine: one test's jobs at a time, so that a test
/// that fills it does not hold up another's.
static CLUSTER: Mutex<()> = Mutex::new(());

fn cluster() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(p: &Project, args: &[&str]) -> common::Run {
    common::Run(start(p, args, &[]).wait_with_output().unwrap())
}

/// `soma-flow ARGS` started in `p`, polling Slurm often, its output piped.
fn start(p: &Project, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = p.cmd(args);
    cmd.env("SOMA_FLOW_SLURM_POLL", "300ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Polls `check` every 100 ms until it is `Ok`, for at most `secs` seconds; then fails
/// with its last `Err`.
fn eventually<T>(secs: u64, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check() {
            Ok(done) => return done,
            Err(why) if Instant::now() >= deadline => panic!("{why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn ok_when(done: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if done {
        Ok(())
    } else {
        Err(why())
    }
}

/// The machine's cores: what a job asks for to fill the one-node cluster.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn stage<'a>(record: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &record["stages"][name]
}

/// State of each listed job named `soma-flow:<stage>` of `stages`, by stage.
fn jobs_of(stages: &[&str]) -> Vec<(String, String, String)> {
    let out = Command::new("squeue")
        .args(["--noheader", "--states=all", "--format=%i|%j|%T"])
        .output()
        .expect("squeue runs (scripts/test.sh starts the cluster)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split('|');
            let (id, name, state) = (f.next()?, f.next()?, f.next()?);
            let stage = name.strip_prefix("soma-flow:")?;
            stages
                .contains(&stage)
                .then(|| (id.to_string(), stage.to_string(), state.to_string()))
        })
        .collect()
}

#[test]
fn stages_run_as_slurm_jobs_and_the_cache_holds_across_executors() {
    let _c = cluster();
    let p = Project::new();
    p.write(
        "cluster.yaml",
        r#"name: cluster
executor: slurm
slurm: { partition: debug, time: "10" }
stages:
  make:
    kind: command
    with: { run: 'echo "job $SLURM_JOB_ID" > outputs/text', outs: [text] }
  shout:
    kind: command
    inputs: { src: make.text }
    slurm: { cpus: 1, mem: 100M }
    with: { run: "tr a-z A-Z < inputs/src > outputs/loud", outs: [loud] }
  here:
    kind: command
    executor: local
    inputs: { src: shout.loud }
    with: { run: 'cat inputs/src > outputs/o; echo "slurm: [$SLURM_JOB_ID]" >> outputs/o', outs: [o] }
  secrets:
    kind: command
    with: { run: 'echo "[$TEST_TOKEN]" > outputs/o', outs: [o], pass_env: [TEST_TOKEN] }
"#,
    );
    let started = start(&p, &["run", "cluster.yaml"], &[("TEST_TOKEN", "s3cr3t")]);
    let out = common::Run(started.wait_with_output().unwrap());
    assert_eq!(out.code(), 0, "{}", out.all());
    let o = std::fs::read_to_string(p.output_path("cluster.yaml", "here.o")).unwrap();
    let mut lines = o.lines();
    let first = lines.next().unwrap();
    let id = first.strip_prefix("JOB ").expect(first);
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "make ran in a Slurm job: {o}"
    );
    assert_eq!(lines.next(), Some("slurm: []"), "`here` ran locally: {o}");
    let secrets = std::fs::read_to_string(p.output_path("cluster.yaml", "secrets.o")).unwrap();
    assert_eq!(
        secrets, "[]\n",
        "a secret is not sent to the cluster's job records"
    );
    let rec = p.last_record();
    for s in ["make", "shout", "here"] {
        assert_eq!(stage(&rec, s)["status"], "ran", "{s}: {rec}");
    }
    let log = p
        .store()
        .join("logs")
        .join(rec["id"].as_str().unwrap())
        .join("make.slurm.log");
    assert!(log.exists(), "the job's log is kept: {}", log.display());

    // The same keys wherever they ran: all cached locally, and again on Slurm.
    for executor in ["local", "slurm"] {
        let out = run(&p, &["run", "cluster.yaml", "--executor", executor]);
        assert_eq!(out.code(), 0, "{}", out.all());
        assert!(
            out.stdout().contains("0 ran, 4 cached"),
            "--executor {executor}: {}",
            out.all()
        );
    }
}

#[test]
fn a_failed_job_shows_its_state_and_log_and_a_retry_can_save_it() {
    let _c = cluster();
    let p = Project::new();
    let marker = p.path().join("tried");
    p.write(
        "fail.yaml",
        &format!(
            r#"name: fail
executor: slurm
stages:
  bad:
    kind: command
    with: {{ run: "echo about to fail; exit 7", outs: [x] }}
  flaky:
    kind: command
    retry: {{ attempts: 3, backoff: 200ms }}
    with: {{ run: "if [ ! -f {m} ]; then touch {m}; echo first try fails; exit 1; fi; echo ok > outputs/x", outs: [x] }}
"#,
            m = marker.display()
        ),
    );
    let out = run(&p, &["run", "fail.yaml"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    let rec = p.last_record();
    let bad = stage(&rec, "bad");
    assert_eq!(bad["status"], "failed");
    let msg = bad["message"].as_str().unwrap();
    for part in [
        "about to fail",
        "exit status: 7",
        "Slurm job",
        "FAILED",
        "bad.slurm.log",
    ] {
        assert!(msg.contains(part), "{part:?} in {msg}");
    }
    assert!(out.stdout().contains("about to fail"), "{}", out.all());
    let flaky = stage(&rec, "flaky");
    assert_eq!(flaky["status"], "ran", "{rec}");
    let notes = flaky["notes"].to_string();
    assert!(
        notes.contains("attempt 1 of 3 failed") && notes.contains("first try fails"),
        "{notes}"
    );
}

#[test]
fn a_timeout_cancels_the_job_or_kills_the_process_group_and_frees_the_slot() {
    let _c = cluster();
    let p = Project::new();
    let pid = p.path().join("pid");
    p.write(
        "slow.yaml",
        &format!(
            r#"name: slow
stages:
  on-slurm:
    kind: command
    executor: slurm
    timeout: 2s
    with: {{ run: "sleep 120; touch outputs/x", outs: [x] }}
  here:
    kind: command
    timeout: 1s
    retry: {{ attempts: 2, backoff: 100ms }}
    with: {{ run: "sleep 300 & echo $! > {pid}; wait", outs: [x] }}
  next:
    kind: command
    with: {{ run: "echo done > outputs/x", outs: [x] }}
"#,
            pid = pid.display()
        ),
    );
    // One job slot: `next` runs only if the timed-out stage gave its slot back.
    let out = run(&p, &["run", "slow.yaml", "-j", "1"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    let rec = p.last_record();
    let slurm = stage(&rec, "on-slurm")["message"].as_str().unwrap();
    assert!(
        slurm.contains("timed out after 2s") && slurm.contains("was cancelled"),
        "{slurm}"
    );
    let here = stage(&rec, "here");
    let msg = here["message"].as_str().unwrap();
    assert!(
        msg.contains("attempt 2 of 2") && msg.contains("process group was killed"),
        "{msg}"
    );
    assert_eq!(stage(&rec, "next")["status"], "ran", "{rec}");
    let sleeper: i32 = std::fs::read_to_string(&pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !common::still_running(sleeper),
        "the timed-out stage's background process was killed"
    );
    // The cancelled job ends, and leaves nothing running.
    eventually(20, || {
        let left: Vec<_> = jobs_of(&["on-slurm"])
            .into_iter()
            .filter(|(_, _, s)| ["PENDING", "RUNNING", "COMPLETING"].contains(&s.as_str()))
            .collect();
        ok_when(left.is_empty(), || format!("still queued: {left:?}"))
    });
}

#[test]
fn time_in_the_queue_does_not_count_toward_a_timeout() {
    let _c = cluster();
    let p = Project::new();
    let cpus = cores();
    // A job that fills the cluster for 4 s, ahead of the stage's.
    let blocker = Command::new("sbatch")
        .args(["--parsable", "--job-name=blocker", "--output=/dev/null"])
        .arg(format!("--cpus-per-task={cpus}"))
        .args(["--wrap", "sleep 4"])
        .output()
        .expect("sbatch runs (scripts/test.sh starts the cluster)");
    assert!(blocker.status.success(), "{blocker:?}");
    p.write(
        "queued.yaml",
        &format!(
            "name: queued\nexecutor: slurm\nslurm: {{ cpus: {cpus} }}\nstages:\n  waits:\n    kind: command\n    timeout: 3s\n    with: {{ run: 'sleep 1; touch outputs/x', outs: [x] }}\n"
        ),
    );
    let out = run(&p, &["run", "queued.yaml"]);
    assert_eq!(
        out.code(),
        0,
        "queued ~4 s, ran 1 s, within 3 s: {}",
        out.all()
    );
}

#[test]
fn a_preempted_job_shows_its_state_and_a_retry_runs_it_again() {
    let _c = cluster();
    let p = Project::new();
    let cpus = cores();
    let started = p.path().join("started");
    // The stage fills the `debug` partition; a job in `urgent` then pre-empts it.
    p.write(
        "preempt.yaml",
        &format!(
            r#"name: preempt
executor: slurm
slurm: {{ partition: debug, cpus: {cpus} }}
stages:
  victim:
    kind: command
    retry: {{ attempts: 2, backoff: 1s }}
    with: {{ run: "if [ ! -f {m} ]; then touch {m}; sleep 120; fi; touch outputs/x", outs: [x] }}
"#,
            m = started.display()
        ),
    );
    let child = start(&p, &["run", "preempt.yaml"], &[]);
    eventually(60, || {
        ok_when(started.exists(), || "the stage's job never started".into())
    });
    let urgent = Command::new("sbatch")
        .args(["--parsable", "--partition=urgent", "--output=/dev/null"])
        .arg(format!("--cpus-per-task={cpus}"))
        .args(["--wrap", "sleep 2"])
        .output()
        .unwrap();
    assert!(urgent.status.success(), "{urgent:?}");
    let out = common::Run(child.wait_with_output().unwrap());
    assert_eq!(out.code(), 0, "the retry ran it: {}", out.all());
    let rec = p.last_record();
    let notes = stage(&rec, "victim")["notes"].to_string();
    assert!(
        notes.contains("attempt 1 of 2 failed") && notes.contains("PREEMPTED"),
        "{notes}"
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_cancels_running_and_queued_jobs() {
    let _c = cluster();
    let p = Project::new();
    let cpus = cores();
    // Each job takes every core: one runs, two wait in the queue.
    p.write(
        "queue.yaml",
        &format!(
            r#"name: queue
executor: slurm
slurm: {{ cpus: {cpus} }}
stages:
  q-a: {{ kind: command, with: {{ run: "sleep 120; touch outputs/x", outs: [x] }} }}
  q-b: {{ kind: command, with: {{ run: "sleep 120; touch outputs/x", outs: [x] }} }}
  q-c: {{ kind: command, with: {{ run: "sleep 120; touch outputs/x", outs: [x] }} }}
"#
        ),
    );
    let names = ["q-a", "q-b", "q-c"];
    // Every squeue call soma-flow makes, logged by a wrapper ahead of the real one.
    let bin = p.path().join("bin");
    let calls = p.path().join("squeue-calls");
    std::fs::create_dir_all(&bin).unwrap();
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v squeue"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let wrapper = bin.join("squeue");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
            calls.display(),
            real.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let child = start(&p, &["run", "queue.yaml"], &[("PATH", &path)]);
    let queued = eventually(60, || {
        let jobs = jobs_of(&names);
        let live: Vec<_> = jobs
            .iter()
            .filter(|(_, _, s)| s == "PENDING" || s == "RUNNING")
            .cloned()
            .collect();
        match live.len() == 3 && live.iter().any(|(_, _, s)| s == "PENDING") {
            true => Ok(live),
            false => Err(format!("the jobs never queued: {jobs:?}")),
        }
    });
    // One squeue call per interval follows all three jobs, not one call per job.
    let ids: Vec<&str> = queued.iter().map(|(id, _, _)| id.as_str()).collect();
    eventually(20, || {
        let log = std::fs::read_to_string(&calls).unwrap_or_default();
        let one_for_all = log.lines().any(|l| {
            let listed = l.rsplit(' ').next().unwrap_or("");
            ids.iter().all(|id| listed.split(',').any(|x| x == *id))
        });
        ok_when(one_for_all, || {
            format!("no squeue call followed all three: {log}")
        })
    });
    common::signal(&child, "INT");
    let out = common::Run(child.wait_with_output().unwrap());
    assert_eq!(out.code(), 130, "{}", out.all());
    assert!(
        out.stderr().contains("cancelled Slurm jobs"),
        "{}",
        out.all()
    );
    eventually(20, || {
        let jobs = jobs_of(&names);
        let live: Vec<_> = jobs
            .iter()
            .filter(|(id, _, s)| ids.contains(&id.as_str()) && s != "CANCELLED")
            .collect();
        ok_when(live.is_empty(), || format!("not cancelled: {live:?}"))
    });
    let rec = p.last_record();
    assert_eq!(rec["status"], "interrupted", "{rec}");
}

#[test]
fn each_running_stage_of_class_gpu_gets_its_own_device() {
    let p = Project::new();
    let stages: String = (0..4)
        .map(|i| {
            format!(
                "  g{i}:\n    kind: command\n    resource: gpu\n    with: {{ run: 'echo $CUDA_VISIBLE_DEVICES > outputs/d; sleep 1', outs: [d] }}\n"
            )
        })
        .collect();
    p.write(
        "gpus.yaml",
        &format!("name: gpus\nresources: {{ gpu: 2 }}\nstages:\n{stages}"),
    );
    let out = run(&p, &["run", "gpus.yaml", "-j", "4"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    let rec = p.last_record();
    let mut spans = Vec::new();
    for i in 0..4 {
        let s = stage(&rec, &format!("g{i}"));
        let d = std::fs::read_to_string(p.output_path("gpus.yaml", &format!("g{i}.d"))).unwrap();
        let device: u32 = d.trim().parse().unwrap_or_else(|_| panic!("g{i}: {d:?}"));
        assert!(device < 2, "g{i} on device {device}");
        let start = s["start_ms"].as_u64().unwrap();
        spans.push((device, start, start + s["duration_ms"].as_u64().unwrap()));
    }
    // Two stages that overlap in time never share a device.
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if a.1 < b.2 && b.1 < a.2 {
                assert_ne!(a.0, b.0, "overlapping stages on one device: {spans:?}");
            }
        }
    }
    let overlapping = spans
        .iter()
        .enumerate()
        .any(|(i, a)| spans[i + 1..].iter().any(|b| a.1 < b.2 && b.1 < a.2));
    assert!(overlapping, "two stages ran at once: {spans:?}");
}

#[test]
fn bad_executor_settings_are_located() {
    let p = Project::new();
    p.write(
        "bad.yaml",
        r#"name: bad
slurm: { time: "2h" }
stages:
  a:
    kind: command
    executor: kubernetes
    with: { run: "true" }
  b:
    kind: command
    retry: { attempts: 0 }
    slurm: { extra: ["constraint=a100"], mem: 16GB }
    with: { run: "true" }
"#,
    );
    let out = p.run(&["validate", "bad.yaml"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    let err = out.stderr();
    assert!(
        err.contains("unknown variant `kubernetes`, expected `local` or `slurm`"),
        "{err}"
    );
    p.write(
        "bad.yaml",
        &std::fs::read_to_string(p.path().join("bad.yaml"))
            .unwrap()
            .replace("kubernetes", "slurm"),
    );
    let out = p.run(&["validate", "bad.yaml"]);
    assert_eq!(out.code(), 2, "{}", out.all());
    let err = out.stderr();
    for part in [
        "bad.yaml:2:",
        "slurm.time: \"2h\" is not a Slurm time limit",
        "retry.attempts must be at least 1",
        "slurm.mem: \"16GB\"",
    ] {
        assert!(err.contains(part), "{part:?} in {err}");
    }
}

/// A filesystem without `flock` (Lustre without `-o flock`, some NFS), as a shim that
/// makes every `flock` call fail with ENOLCK, preloaded into soma-flow.
#[cfg(target_os = "linux")]
fn no_flock_shim(dir: &std::path::Path) -> std::path::PathBuf {
    let src = dir.join("noflock.c");
    std::fs::write(
        &src,
        "#include <errno.h>\nint flock(int fd, int op) { (void)fd; (void)op; errno = ENOLCK; return -1; }\n",
    )
    .unwrap();
    let lib = dir.join("libnoflock.so");
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .expect("a C compiler (cargo links with it)")
        .success();
    assert!(ok, "the shim builds");
    lib
}

#[cfg(target_os = "linux")]
#[test]
fn a_store_without_flock_uses_lease_files_and_still_builds_a_key_once() {
    let p = Project::new();
    let shim = no_flock_shim(p.path());
    let tally = p.path().join("tally");
    p.write(
        "slow.yaml",
        &format!(
            "name: slow\nstages:\n  s:\n    kind: command\n    with: {{ run: 'echo ran >> {}; sleep 1; echo done > outputs/o', outs: [o] }}\n",
            tally.display()
        ),
    );
    let start = || {
        p.cmd(&["run", "slow.yaml"])
            .env("LD_PRELOAD", &shim)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let outs = [a, b].map(|c| common::Run(c.wait_with_output().unwrap()));
    for out in &outs {
        assert_eq!(out.code(), 0, "{}", out.all());
        assert!(
            out.stderr().contains("has no working flock") && out.stderr().contains("lease files"),
            "the fallback is said: {}",
            out.all()
        );
    }
    assert_eq!(
        std::fs::read_to_string(&tally).unwrap(),
        "ran\n",
        "one run built it, the other waited for its lease and reused it"
    );
    let summaries: String = outs.iter().map(|o| o.stdout()).collect();
    assert!(
        summaries.contains("1 ran, 0 cached") && summaries.contains("0 ran, 1 cached"),
        "{summaries}"
    );
    // Chosen up front, without the warning.
    let out = common::Run(
        p.cmd(&["run", "slow.yaml"])
            .env("LD_PRELOAD", &shim)
            .env("SOMA_FLOW_LOCKS", "lease")
            .output()
            .unwrap(),
    );
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(!out.stderr().contains("flock"), "{}", out.all());
}

#[test]
fn jobs_on_nodes_without_the_shared_filesystem_go_through_the_remote_store() {
    let _c = cluster();
    let p = Project::new();
    let remote = p.path().join("remote");
    std::fs::create_dir_all(&remote).unwrap();
    let node = p.path().join("node");
    p.write(
        "nodes.yaml",
        &format!(
            r#"name: nodes
executor: slurm
remote: file://{remote}
slurm: {{ store: "{node}/$SLURM_JOB_ID" }}
stages:
  make:
    kind: command
    executor: local
    with: {{ run: "echo made here > outputs/text", outs: [text] }}
  shout:
    kind: command
    inputs: {{ src: make.text }}
    with: {{ run: 'tr a-z A-Z < inputs/src > outputs/loud; echo "job $SLURM_JOB_ID" >> outputs/loud', outs: [loud] }}
  back:
    kind: command
    executor: local
    inputs: {{ src: shout.loud }}
    with: {{ run: "cat inputs/src > outputs/o", outs: [o] }}
  secret:
    kind: command
    with: {{ run: "echo key > outputs/k", outs: [k], private: [k] }}
"#,
            remote = remote.display(),
            node = node.display()
        ),
    );
    let out = run(&p, &["run", "nodes.yaml"]);
    assert_eq!(out.code(), 1, "{}", out.all());
    let rec = p.last_record();
    let o = std::fs::read_to_string(p.output_path("nodes.yaml", "back.o")).unwrap();
    let job = o
        .strip_prefix("MADE HERE\njob ")
        .unwrap_or_else(|| panic!("{o}"))
        .trim();
    assert!(job.bytes().all(|b| b.is_ascii_digit()), "{o}");
    let shout = stage(&rec, "shout");
    assert_eq!(shout["status"], "ran", "{rec}");
    assert_eq!(shout["remote"], true, "its outputs came through the remote");
    // The job built in its node's store, from inputs it downloaded.
    let node_store = node.join(job);
    let objects = files_under(&node_store.join("objects"));
    assert!(objects.len() >= 2, "input and output: {objects:?}");
    assert!(
        files_under(&remote.join("jobs")).is_empty(),
        "the job's result was taken"
    );
    let secret = stage(&rec, "secret")["message"].as_str().unwrap();
    assert!(
        secret.contains("output `k`") && secret.contains("executor: local"),
        "{secret}"
    );

    // Without a remote store there is no way to hand outputs over.
    let out = run(
        &p,
        &["run", "nodes.yaml", "--remote", "none", "--target", "shout"],
    );
    assert_eq!(out.code(), 1, "{}", out.all());
    assert!(
        out.stdout().contains("need a remote store"),
        "{}",
        out.all()
    );
    // With it, everything stands.
    let out = run(&p, &["run", "nodes.yaml", "--target", "back"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    assert!(out.stdout().contains("0 ran, 3 cached"), "{}", out.all());
}
