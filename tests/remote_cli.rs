//! The remote store through the binary, against moto: `run --remote` on two stores,
//! and `push` and `pull` killed midway (`kill -9`) leaving nothing that lies, then
//! finishing when run again.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::Project;
use crate::moto;

/// A 48 MiB random output: long enough to transfer that a kill lands midway.
const BIG: &str = "name: big
stages:
  big:
    kind: command
    with:
      run: head -c 48M /dev/urandom > outputs/big
      outs: [big]
";

/// Every stored object of the store at `root` matches its name.
fn assert_objects_intact(root: &Path) {
    let Ok(shards) = std::fs::read_dir(root.join("objects")) else {
        return;
    };
    for shard in shards {
        for object in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = object.unwrap().path();
            let (hash, _) = soma_flow_engine::hash::hash_file(&path).unwrap();
            assert_eq!(
                path.file_name().unwrap().to_str().unwrap(),
                hash,
                "{} does not match its name",
                path.display()
            );
        }
    }
}

/// Runs `args` and kills it with SIGKILL once `ready` holds (or after 20 s).
fn killed(p: &Project, args: &[&str], ready: impl Fn() -> bool) {
    let mut child = p
        .cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Parts a download in the store at `root` logged as written, over all its files.
fn parts_logged(root: &Path) -> usize {
    std::fs::read_dir(root.join("tmp/remote")).map_or(0, |dir| {
        dir.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "parts"))
            .map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .count()
            })
            .sum()
    })
}

#[test]
fn push_and_pull_killed_midway_leave_nothing_that_lies_and_finish_when_run_again() {
    moto::shared("cli-remote-kill");
    let url = "s3://cli-remote-kill/cache";
    let p = Project::new();
    p.write("big.yaml", BIG);
    let (a, b, c) = ("--store=a", "--store=b", "--store=c");
    let run = p.run(&[a, "run", "big.yaml"]);
    assert_eq!(run.code(), 0, "{}", run.all());

    // A push killed midway: whatever the remote shows must be whole. A fresh store
    // pulls either nothing (no entry yet) or the verified object.
    let start = Instant::now();
    killed(&p, &[a, "push", "--remote", url], || {
        start.elapsed() > Duration::from_millis(150)
    });
    let pulled = p.run(&[c, "pull", "big.yaml", "--remote", url]);
    assert_eq!(pulled.code(), 0, "{}", pulled.all());
    assert_objects_intact(&p.path().join("c"));

    // Pushed again, it completes; the next push has nothing to do.
    let push = p.run(&[a, "push", "--remote", url]);
    assert_eq!(push.code(), 0, "{}", push.all());
    let again = p.run(&[a, "push", "--remote", url]);
    assert!(
        again.stdout().contains("in the remote store already"),
        "{}",
        again.all()
    );

    // A pull killed midway leaves no object that is not whole; run again, it
    // finishes (resuming the parts it had) and the next run is a local hit.
    let store_b = p.path().join("b");
    killed(&p, &[b, "pull", "big.yaml", "--remote", url], || {
        parts_logged(&store_b) > 0
    });
    assert_objects_intact(&store_b);
    let pulled = p.run(&[b, "pull", "big.yaml", "--remote", url]);
    assert_eq!(pulled.code(), 0, "{}", pulled.all());
    assert!(pulled.stdout().contains("pulled"), "{}", pulled.all());
    assert_objects_intact(&p.path().join("b"));
    let local = p.run(&[b, "run", "big.yaml"]);
    assert_eq!(local.code(), 0, "{}", local.all());
    assert!(local.stdout().contains("cached"), "{}", local.all());
}

#[test]
fn run_with_remote_on_a_second_store_runs_nothing() {
    moto::shared("cli-remote-run");
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: p\nremote: s3://cli-remote-run/c\nstages:\n  s:\n    kind: command\n    with: { run: echo hi > outputs/o, outs: [o] }\n",
    );
    let first = p.run(&["--store=a", "run", "p.yaml"]);
    assert_eq!(first.code(), 0, "{}", first.all());
    let second = p.run(&["--store=b", "run", "p.yaml"]);
    assert_eq!(second.code(), 0, "{}", second.all());
    assert!(second.stdout().contains("remote"), "{}", second.all());
    // `--remote none` turns it off: the stage runs on the third store.
    let third = p.run(&["--store=c", "run", "p.yaml", "--remote", "none"]);
    assert_eq!(third.code(), 0, "{}", third.all());
    assert!(third.stdout().contains("ran"), "{}", third.all());
}
