//! `compare`: the params that differ between runs and each stage's headline results.

use soma_flow_engine::app::compare::{compare, select, Selection};
use soma_flow_engine::app::{self, Command, ExitStatus, StoreArgs};

use crate::harness::{env, Project};

const CHAIN: &str = "
name: chain
params: {greeting: hello, unused: 1}
stages:
  make: {kind: step, with: {text: '${params.greeting}'}}
  shout: {kind: step, inputs: {src: make.out}, with: {text: '!'}}
";

#[test]
fn compare_shows_the_params_that_differ_and_each_stages_headline() {
    let p = Project::new();
    p.write("p.yaml", CHAIN);
    p.write(
        "other.yaml",
        "name: other\nstages:\n  s: {kind: step, with: {text: x}}\n",
    );
    p.run("p.yaml", &[]);
    p.run("p.yaml", &["greeting=hi"]);
    p.run("other.yaml", &[]);
    let store = p.store();

    let last = |n, file: Option<&str>| {
        let pipeline = file.map(|f| p.path().join(f));
        let which = Selection {
            ids: &[],
            last: n,
            pipeline: pipeline.as_deref(),
        };
        select(&store, &which).unwrap()
    };
    let runs = last(2, Some("p.yaml"));
    assert!(runs.iter().all(|r| r.name == "chain"));
    assert_eq!(last(5, None).len(), 3);

    let c = compare(&env(), &store, &runs, false);
    let row = |rows: &[soma_flow_engine::app::compare::Row], name: &str| -> Vec<String> {
        rows.iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row `{name}` in {rows:?}"))
            .values
            .iter()
            .map(|v| v.as_ref().map_or("-".into(), |v| v.to_string()))
            .collect()
    };
    assert_eq!(c.params.len(), 1, "only `greeting` differs: {:?}", c.params);
    assert_eq!(row(&c.params, "greeting"), ["\"hello\"", "\"hi\""]);
    assert_eq!(row(&c.results, "shout.out"), ["\"hello!\"", "\"hi!\""]);
    assert_eq!(row(&c.results, "make.length"), ["5", "2"]);
    assert_eq!(row(&c.results, "status"), ["\"ok\"", "\"ok\""]);
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let table = c.table();
    assert!(table.contains("--set greeting"), "{table}");
    assert!(table.contains(&runs[1].id), "{table}");

    // An output gone from the store (gc, a damaged disk) leaves that stage's results
    // out, and the comparison says why.
    let gone = store.path_of(&runs[0].stages["shout"].outputs["out"]);
    std::fs::remove_file(&gone).unwrap();
    let c = compare(&env(), &store, &runs, false);
    assert_eq!(row(&c.results, "shout.out"), ["-", "\"hi!\""]);
    assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
    assert!(c.problems[0].contains("shout"), "{:?}", c.problems);
}

#[test]
fn report_compare_draws_each_curve_with_a_line_per_run_under_the_table() {
    let p = Project::new();
    p.write("p.yaml", CHAIN);
    let ids: Vec<String> = [&[][..], &["greeting=hi"][..]]
        .iter()
        .map(|set| p.run("p.yaml", set).id)
        .collect();
    let out = p.path().join("page");
    let report = |ids: Vec<String>, compare: bool| {
        let command = Command::Report {
            ids,
            compare,
            out: Some(out.clone()),
        };
        let store = StoreArgs {
            store: Some(p.path().join("store")),
        };
        app::run_command(&env(), command, &store).unwrap()
    };
    assert_eq!(report(ids.clone(), true), ExitStatus::Ok);
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    for id in &ids {
        assert!(page.contains(id.as_str()), "{id} missing");
    }
    assert!(page.contains("<table") && page.contains("--set greeting"));
    // Two curves (make.chars, shout.chars), a line per run in each.
    assert_eq!(page.matches("<h3>").count(), 2, "{page}");
    assert_eq!(page.matches("<polyline").count(), 4, "{page}");
    // Without --compare, report takes one run.
    assert_eq!(report(ids, false), ExitStatus::Usage);
}
