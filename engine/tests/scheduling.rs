//! The scheduler: dependency order, parallelism within `--jobs` and resource classes,
//! failures and deferrals, interrupts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use soma_flow_engine::app::ExitStatus;
use soma_flow_engine::exec::StopOn;
use soma_flow_engine::record::{RunStatus, StageStatus};

use crate::harness::{options, output, statuses, Project};

const DIAMOND: &str = "
name: diamond
stages:
  a: {kind: step, with: {text: A, sleep_ms: 300, tally: TALLY}}
  b: {kind: step, with: {text: B, sleep_ms: 300, tally: TALLY}}
  c:
    kind: step
    inputs: {x: a.out, y: b.out}
    with: {text: C, tally: TALLY}
";

#[test]
fn stages_start_when_their_inputs_are_done_and_independent_ones_overlap() {
    let p = Project::new();
    p.write("p.yaml", DIAMOND);
    let record = p.run_with("p.yaml", &[], options(2, &[]));
    assert_eq!(record.status, RunStatus::Ok);
    let runs = p.executions();
    let find = |s: &str| runs.iter().find(|e| e.stage == s).unwrap().clone();
    let (a, b, c) = (find("a"), find("b"), find("c"));
    assert!(a.overlaps(&b), "a and b are independent: {runs:?}");
    assert!(c.start >= a.end && c.start >= b.end, "{runs:?}");
    assert_eq!(output(&p.store(), &record, "c"), "ABC");
}

#[test]
fn jobs_bound_how_many_stages_run_at_once() {
    let p = Project::new();
    p.write("p.yaml", DIAMOND);
    p.run_with("p.yaml", &[], options(1, &[]));
    let runs = p.executions();
    assert_eq!(runs.len(), 3);
    for (i, x) in runs.iter().enumerate() {
        for y in &runs[i + 1..] {
            assert!(!x.overlaps(y), "one job at a time: {runs:?}");
        }
    }
}

#[test]
fn a_resource_class_limits_its_stages_to_its_capacity() {
    for (capacity, overlap) in [("", false), ("resources: {accel: 2}\n", true)] {
        let p = Project::new();
        p.write(
            "p.yaml",
            &format!(
                "name: accel\n{capacity}stages:\n  \
                 a: {{kind: step, with: {{sleep_ms: 300, tally: TALLY, resource: accel}}}}\n  \
                 b: {{kind: step, resource: accel, with: {{sleep_ms: 300, tally: TALLY}}}}\n"
            ),
        );
        p.run("p.yaml", &[]);
        let runs = p.executions();
        assert_eq!(
            runs[0].overlaps(&runs[1]),
            overlap,
            "{capacity:?}: {runs:?}"
        );
    }
}

#[test]
fn a_failed_stage_skips_its_dependents_only() {
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: f\nstages:\n  \
         bad: {kind: step, with: {fail: true}}\n  \
         after: {kind: step, inputs: {x: bad.out}}\n  \
         other: {kind: step, with: {text: fine}}\n",
    );
    let record = p.run("p.yaml", &[]);
    assert_eq!(
        statuses(&record),
        [
            ("bad", StageStatus::Failed),
            ("after", StageStatus::Skipped),
            ("other", StageStatus::Ran)
        ]
    );
    assert!(record.stages["bad"]
        .message
        .as_deref()
        .unwrap()
        .contains("asked to fail"));
    assert_eq!(ExitStatus::from(record.status), ExitStatus::Failed);
}

#[test]
fn a_deferred_stage_caches_nothing_and_holds_its_dependents() {
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: d\nstages:\n  \
         later: {kind: step, with: {defer: true, tally: TALLY}}\n  \
         after: {kind: step, inputs: {x: later.out}}\n",
    );
    for _ in 0..2 {
        let record = p.run("p.yaml", &[]);
        assert_eq!(
            statuses(&record),
            [
                ("later", StageStatus::Deferred),
                ("after", StageStatus::Skipped)
            ]
        );
        assert_eq!(ExitStatus::from(record.status), ExitStatus::Deferred);
    }
    assert_eq!(p.executed(), ["later", "later"], "asked again each run");
}

#[test]
fn an_interrupt_stops_the_run_and_records_it_as_interrupted() {
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: i\nstages:\n  \
         slow: {kind: step, with: {sleep_ms: 3000}}\n  \
         after: {kind: step, inputs: {x: slow.out}}\n",
    );
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut opts = options(2, &[]);
    opts.stop_on = StopOn::Notified(Arc::clone(&stop));
    let t0 = Instant::now();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        stop.notify_one();
    });
    let record = p.run_with("p.yaml", &[], opts);
    stopper.join().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "it did not wait for the stage"
    );
    assert_eq!(record.status, RunStatus::Interrupted);
    assert_eq!(ExitStatus::from(record.status), ExitStatus::Interrupted);
    assert_eq!(
        statuses(&record),
        [
            ("slow", StageStatus::Interrupted),
            ("after", StageStatus::Skipped)
        ]
    );
    let saved = soma_flow_engine::record::find(&p.store(), &record.id).unwrap();
    assert_eq!(saved.status, RunStatus::Interrupted, "the record is saved");
    assert!(saved.stages["slow"].outputs.is_empty());
}
