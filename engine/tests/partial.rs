//! Part of a pipeline (`run --target` keeps the targets and what they need) and sweeps
//! (`--set NAME=A,B` runs every combination).

use std::sync::Arc;

use soma_flow_engine::app;
use soma_flow_engine::record::StageStatus;

use crate::harness::{options, statuses, Project};

const GRAPH: &str = "
name: graph
stages:
  make: {kind: step, with: {text: made, tally: TALLY}}
  shout: {kind: step, inputs: {src: make.out}, with: {text: '!', tally: TALLY}}
  after: {kind: step, needs: [shout], with: {text: later, tally: TALLY}}
  apart: {kind: step, with: {text: alone, tally: TALLY}}
";

fn names(plan: &soma_flow_engine::pipeline::Plan) -> Vec<&str> {
    plan.stages.keys().map(String::as_str).collect()
}

#[test]
fn a_target_keeps_itself_and_what_it_needs_in_order() {
    let p = Project::new();
    p.write("p.yaml", GRAPH);
    let load = |targets: &[&str]| {
        let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        p.load("p.yaml", &[]).unwrap().only(&targets)
    };
    assert_eq!(names(&load(&["shout"]).unwrap()), ["make", "shout"]);
    assert_eq!(
        names(&load(&["after"]).unwrap()),
        ["make", "shout", "after"]
    );
    assert_eq!(names(&load(&["apart", "make"]).unwrap()), ["make", "apart"]);
    assert_eq!(names(&load(&[]).unwrap()).len(), 4, "no target: everything");

    let err = load(&["shot"]).err().unwrap();
    assert!(
        err.contains("no stage `shot`") && err.contains("did you mean `shout`"),
        "{err}"
    );
    assert!(err.contains("`apart`") && err.contains("p.yaml"), "{err}");
}

#[test]
fn a_partial_run_runs_and_records_only_its_part_and_the_rest_follows_from_the_cache() {
    let p = Project::new();
    p.write("p.yaml", GRAPH);
    let plan = p
        .load("p.yaml", &[])
        .unwrap()
        .only(&["shout".to_string()])
        .unwrap();
    let part = app::execute(Arc::new(plan), p.store(), options(4, &[])).unwrap();
    assert_eq!(
        statuses(&part),
        [("make", StageStatus::Ran), ("shout", StageStatus::Ran)]
    );
    assert_eq!(p.executed(), ["make", "shout"]);

    let whole = p.run("p.yaml", &[]);
    assert_eq!(
        statuses(&whole),
        [
            ("make", StageStatus::Hit),
            ("shout", StageStatus::Hit),
            ("after", StageStatus::Ran),
            ("apart", StageStatus::Ran)
        ]
    );
}

#[test]
fn a_sweep_is_every_combination_and_brackets_and_quotes_keep_their_commas() {
    let set = |items: &[&str]| -> Vec<String> { items.iter().map(|s| s.to_string()).collect() };
    assert_eq!(
        soma_flow_engine::params::grid(&set(&["lr=1e-4,3e-4", "beta=0.1,0.3", "steps=5"])),
        [
            set(&["lr=1e-4", "beta=0.1", "steps=5"]),
            set(&["lr=1e-4", "beta=0.3", "steps=5"]),
            set(&["lr=3e-4", "beta=0.1", "steps=5"]),
            set(&["lr=3e-4", "beta=0.3", "steps=5"]),
        ]
    );
    assert_eq!(
        soma_flow_engine::params::grid(&set(&["betas=[0, 0.3]", "name=\"a,b\"", "m={x: 1, y: 2}"])),
        [set(&["betas=[0, 0.3]", "name=\"a,b\"", "m={x: 1, y: 2}"])]
    );
    assert_eq!(
        soma_flow_engine::params::grid(&set(&["betas=[0],[0.1, 0.2]"])),
        [set(&["betas=[0]"]), set(&["betas=[0.1, 0.2]"])]
    );
    assert_eq!(soma_flow_engine::params::grid(&[]), [Vec::<String>::new()]);
}
