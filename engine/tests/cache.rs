//! The cache: a rerun runs only what changed; a damaged store is detected and rebuilt;
//! concurrent runs build a key once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use soma_flow_engine::app;
use soma_flow_engine::record::StageStatus;
use soma_flow_engine::store::Locking;

use crate::harness::{options, output, statuses, Project};
use soma_flow_test_support::files_under;

const CHAIN: &str = "
name: chain
params: {greeting: hello}
stages:
  make: {kind: step, with: {text: '${params.greeting}', tally: TALLY}}
  shout: {kind: step, inputs: {src: make.out}, with: {text: '!', tally: TALLY}}
  apart: {kind: step, with: {text: alone, tally: TALLY}}
";

#[test]
fn a_rerun_runs_nothing_then_only_what_a_changed_param_reaches() {
    let p = Project::new();
    p.write("p.yaml", CHAIN);
    let first = p.run("p.yaml", &[]);
    assert!(statuses(&first).iter().all(|(_, s)| *s == StageStatus::Ran));
    assert_eq!(output(&p.store(), &first, "shout"), "hello!");

    let second = p.run("p.yaml", &[]);
    assert!(statuses(&second)
        .iter()
        .all(|(_, s)| *s == StageStatus::Hit));
    assert_eq!(p.executed().len(), 3, "nothing executed again");

    let third = p.run("p.yaml", &["greeting=hi"]);
    assert_eq!(
        statuses(&third),
        [
            ("make", StageStatus::Ran),
            ("shout", StageStatus::Ran),
            ("apart", StageStatus::Hit)
        ]
    );
    assert_eq!(output(&p.store(), &third, "shout"), "hi!");
    // The same output as before gives the same key downstream.
    let fourth = p.run("p.yaml", &[]);
    assert!(statuses(&fourth)
        .iter()
        .all(|(_, s)| *s == StageStatus::Hit));
    assert_eq!(fourth.stages["shout"].key, first.stages["shout"].key);
}

#[test]
fn no_cache_executes_every_stage() {
    let p = Project::new();
    p.write("p.yaml", CHAIN);
    p.run("p.yaml", &[]);
    let mut opts = options(2, &[]);
    opts.no_cache = true;
    let again = p.run_with("p.yaml", &[], opts);
    assert!(statuses(&again).iter().all(|(_, s)| *s == StageStatus::Ran));
    assert_eq!(p.executed().len(), 6);
}

#[test]
fn a_corrupt_or_missing_object_is_rebuilt_not_reused() {
    let p = Project::new();
    p.write("p.yaml", CHAIN);
    let first = p.run("p.yaml", &[]);
    let store = p.store();
    let made = store.path_of(&first.stages["make"].outputs["out"]);
    let mut perm = std::fs::metadata(&made).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&made, perm).unwrap();
    std::fs::write(&made, "tampered").unwrap();
    std::fs::remove_file(store.path_of(&first.stages["apart"].outputs["out"])).unwrap();

    let second = p.run("p.yaml", &[]);
    assert_eq!(
        statuses(&second),
        [
            ("make", StageStatus::Ran),
            ("shout", StageStatus::Hit),
            ("apart", StageStatus::Ran)
        ],
        "make's rebuilt output is the same, so shout's key is unchanged"
    );
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "hello");
}

#[test]
fn concurrent_runs_share_the_store_and_build_a_key_once() {
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: slow\nstages:\n  s: {kind: step, with: {sleep_ms: 500, tally: TALLY}}\n",
    );
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| p.run("p.yaml", &[]));
        let b = scope.spawn(|| p.run("p.yaml", &[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(p.executed(), ["s"], "the second run waited and reused it");
    let mut got = [a.stages["s"].status, b.stages["s"].status];
    got.sort_by_key(|s| s.label());
    assert_eq!(got, [StageStatus::Hit, StageStatus::Ran]);
}

#[test]
fn with_lease_files_for_locks_a_key_is_still_built_once_and_gc_waits_for_runs() {
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: slow\nstages:\n  s: {kind: step, with: {sleep_ms: 500, tally: TALLY}}\n",
    );
    let lease = Locking::Lease {
        ttl: Duration::from_secs(3),
    };
    let store = || p.store().with_locking(lease);
    let run = || {
        let plan = p.load("p.yaml", &[]).unwrap();
        app::execute(Arc::new(plan), store(), options(4, &[])).unwrap()
    };
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(run);
        let b = scope.spawn(run);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(p.executed(), ["s"], "the second run waited and reused it");
    let mut got = [a.stages["s"].status, b.stages["s"].status];
    got.sort_by_key(|s| s.label());
    assert_eq!(got, [StageStatus::Hit, StageStatus::Ran]);
    let locks = p.path().join("store/locks");
    let leases: Vec<_> = files_under(&locks)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "lease"))
        .collect();
    assert!(leases.is_empty(), "every lease was released: {leases:?}");

    // gc (exclusive) waits for a run (shared), and a run waits for gc.
    let (released, done) = (AtomicBool::new(false), AtomicBool::new(false));
    let run_lock = store().lock_store(false).unwrap();
    std::thread::scope(|scope| {
        let gc = scope.spawn(|| {
            let held = store().lock_store(true).unwrap();
            assert!(released.load(Ordering::SeqCst), "gc waited for the run");
            held
        });
        std::thread::sleep(Duration::from_millis(600));
        released.store(true, Ordering::SeqCst);
        drop(run_lock);
        let gc_lock = gc.join().unwrap();
        let next_run = scope.spawn(|| {
            let _held = store().lock_store(false).unwrap();
            assert!(done.load(Ordering::SeqCst), "the run waited for gc");
        });
        std::thread::sleep(Duration::from_millis(600));
        done.store(true, Ordering::SeqCst);
        drop(gc_lock);
        next_run.join().unwrap();
    });
}

#[test]
fn the_backend_enters_the_key_of_the_stages_that_require_it_only() {
    let p = Project::new();
    let pipeline = "name: b\nparams: {backend: cpu}\nbackend: '${params.backend}'\nstages:\n  \
                    model: {kind: step, with: {backend: true, tally: TALLY}}\n  \
                    plain: {kind: step, with: {tally: TALLY}}\n";
    p.write("p.yaml", pipeline);
    let cpu = p.run("p.yaml", &[]);
    assert_eq!(cpu.backend, "cpu");
    let fast = p.run("p.yaml", &["backend=fast"]);
    assert_eq!(fast.backend, "fast");
    assert_eq!(
        statuses(&fast),
        [("model", StageStatus::Ran), ("plain", StageStatus::Hit)]
    );
    let plan = p.load("p.yaml", &["backend=cpu"]).unwrap();
    let store = p.store();
    let verdicts = soma_flow_engine::explain::explain(&plan, &store, Some(&fast)).unwrap();
    assert_eq!(verdicts[1].1, soma_flow_engine::explain::Verdict::Cached);
    assert_eq!(
        verdicts[0].1,
        soma_flow_engine::explain::Verdict::Cached,
        "cpu's entry is still there"
    );

    // The binary's setting judges the name, and only when some stage needs it.
    let err = p
        .load("p.yaml", &["backend=gpu"])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("this test offers `cpu` and `fast`, not `gpu`") && err.contains("p.yaml:3:"),
        "{err}"
    );
    // `--backend` is the command line's fault, not the file's: no place in it.
    let env = crate::harness::env();
    let opts = soma_flow_engine::pipeline::LoadOptions {
        registry: &env.registry,
        overrides: &[],
        backend: Some("gpu"),
        backends: env.backend,
    };
    let source = soma_flow_engine::pipeline::read(&p.path().join("p.yaml")).unwrap();
    let err = soma_flow_engine::pipeline::load(source, &opts)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(err, "this test offers `cpu` and `fast`, not `gpu`");
    p.write(
        "plain.yaml",
        "name: plain\nbackend: gpu\nstages:\n  s: {kind: step}\n",
    );
    assert!(p.load("plain.yaml", &[]).is_ok());
}
