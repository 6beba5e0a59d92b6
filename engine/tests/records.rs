//! Run records, and what reads them: gc keeps what a record references, verify
//! compares a repeat with the record.

use soma_flow_engine::app;
use soma_flow_engine::record::{self, StageStatus};
use soma_flow_engine::store::Store;
use soma_flow_engine::verify;

use crate::harness::{keys, options, Project};

#[test]
fn a_record_keeps_the_params_overrides_source_and_what_each_stage_used() {
    let p = Project::new();
    let text = "name: rec\nparams: {n: 1}\nstages:\n  \
                a: {kind: step, with: {text: 'n=${params.n}'}}\n  \
                b: {kind: step, inputs: {x: a.out}}\n";
    p.write("p.yaml", text);
    let run = p.run("p.yaml", &["n=2"]);
    let saved = record::find(&p.store(), &run.id).unwrap();
    assert_eq!(saved.overrides, ["n=2"]);
    assert_eq!(saved.params["n"], 2);
    assert_eq!(saved.pipeline_source, text);
    assert_eq!(saved.stages["a"].params_used, ["n"]);
    assert_eq!(saved.stages["a"].with["text"], "n=2");
    assert_eq!(
        saved.stages["b"].inputs["x"],
        [saved.stages["a"].outputs["out"].hash.to_string()],
        "b's record names the object a produced"
    );
    assert_eq!(keys(&saved).len(), 2);
    assert_eq!(
        record::latest_for(&p.store(), &p.path().join("p.yaml"))
            .unwrap()
            .unwrap()
            .id,
        run.id
    );
}

#[test]
fn gc_removes_only_what_no_record_references() {
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: gc\nparams: {word: one}\nstages:\n  \
         a: {kind: step, with: {text: '${params.word}', tally: TALLY}}\n  \
         shared: {kind: step, with: {text: same, tally: TALLY}}\n",
    );
    let store = p.store();
    let old = p.run("p.yaml", &[]);
    let new = p.run("p.yaml", &["word=two"]);
    let dry = app::gc(&store, true).unwrap();
    assert!(dry.objects.is_empty(), "both runs are recorded: {dry:?}");

    std::fs::remove_file(store.runs_dir().join(format!("{}.json", old.id))).unwrap();
    let swept = app::gc(&store, false).unwrap();
    assert_eq!(
        swept.objects.len(),
        1,
        "only `one` was unreferenced: {swept:?}"
    );
    assert_eq!(swept.bytes, 3);
    assert!(!store.path_of(&old.stages["a"].outputs["out"]).exists());
    for stage in ["a", "shared"] {
        assert!(store.path_of(&new.stages[stage].outputs["out"]).exists());
    }
    // The removed entry is a miss, not a dangling hit.
    let again = p.run("p.yaml", &[]);
    assert_eq!(again.stages["a"].status, StageStatus::Ran);
    assert_eq!(again.stages["shared"].status, StageStatus::Hit);
}

#[test]
fn verify_finds_identical_and_differing_stages() {
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: v\nstages:\n  \
         same: {kind: step, with: {text: fixed}}\n  \
         clock: {kind: command, with: {run: 'date +%s%N > outputs/o', outs: [o]}}\n",
    );
    let original = p.run("p.yaml", &[]);
    let plan = std::sync::Arc::new(p.load("p.yaml", &[]).unwrap());
    let scratch = tempfile::tempdir().unwrap();
    let mut opts = options(2, &[]);
    opts.no_cache = true;
    let repeat = app::execute(
        std::sync::Arc::clone(&plan),
        Store::open(scratch.path()).unwrap(),
        opts,
    )
    .unwrap();
    let verdicts: std::collections::BTreeMap<_, _> = verify::compare(&plan, &original, &repeat)
        .into_iter()
        .collect();
    assert!(verdicts["same"].is_identical(), "{verdicts:?}");
    assert!(verdicts["clock"].is_failure(), "{verdicts:?}");
}
