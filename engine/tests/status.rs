//! `status`: whether each stage would run, and the reasons, one per change.

use soma_flow_engine::explain::{explain, Verdict};
use soma_flow_engine::record;

use crate::harness::Project;

fn verdicts(p: &Project, overrides: &[&str]) -> Vec<(String, Verdict)> {
    let plan = p.load("p.yaml", overrides).unwrap();
    let store = p.store();
    let previous = record::latest_for(&store, &p.path().join("p.yaml")).unwrap();
    explain(&plan, &store, previous.as_ref()).unwrap()
}

fn would_run(reasons: &[&str]) -> Verdict {
    Verdict::WouldRun(reasons.iter().map(|r| r.to_string()).collect())
}

#[test]
fn status_says_what_would_run_and_names_each_change_once() {
    let p = Project::new();
    let pipeline = "name: s\nparams: {greeting: hello}\nstages:\n  \
                    make: {kind: step, with: {text: '${params.greeting}'}}\n  \
                    shout: {kind: step, inputs: {src: make.out}}\n  \
                    apart: {kind: step, with: {text: x, sleep_ms: 1}}\n";
    p.write("p.yaml", pipeline);
    assert_eq!(
        verdicts(&p, &[]),
        [
            ("make".into(), would_run(&["never run with this pipeline"])),
            (
                "shout".into(),
                would_run(&["upstream `make` runs first; its output decides"])
            ),
            ("apart".into(), would_run(&["never run with this pipeline"])),
        ]
    );
    p.run("p.yaml", &[]);
    assert!(verdicts(&p, &[]).iter().all(|(_, v)| *v == Verdict::Cached));

    p.write(
        "p.yaml",
        &pipeline.replace("{text: x, sleep_ms: 1}", "{text: y, sleep_ms: 2}"),
    );
    assert_eq!(
        verdicts(&p, &["greeting=hi"]),
        [
            (
                "make".into(),
                would_run(&["param `greeting` changed (\"hello\" → \"hi\")"])
            ),
            (
                "shout".into(),
                would_run(&["upstream `make` runs first; its output decides"])
            ),
            (
                "apart".into(),
                would_run(&["`with` changed: sleep_ms, text"])
            ),
        ]
    );
}

#[test]
fn status_names_a_backend_change() {
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: b\nparams: {backend: cpu}\nbackend: '${params.backend}'\nstages:\n  \
         model: {kind: step, with: {backend: true}}\n",
    );
    p.run("p.yaml", &[]);
    assert_eq!(
        verdicts(&p, &["backend=fast"]),
        [("model".into(), would_run(&["backend changed (cpu → fast)"]))]
    );
}
