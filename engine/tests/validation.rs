//! Every validation error is reported with file:line:column before anything runs, and
//! several together.

use crate::harness::Project;

/// The diagnostics for pipeline `text`.
fn reject(text: &str) -> String {
    let p = Project::new();
    p.write("p.yaml", text);
    match p.load("p.yaml", &[]) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn assert_at(err: &str, place: &str, needle: &str) {
    assert!(
        err.contains(&format!("p.yaml:{place}:")),
        "expected p.yaml:{place} in:\n{err}"
    );
    assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
}

#[test]
fn unknown_keys() {
    let err = reject("name: x\nstages:\n  a:\n    kind: command\n    wiht: {run: 'true'}\n");
    assert_at(&err, "5:5", "unknown field `wiht`");
    let err = reject("name: x\nstage: {}\n");
    assert_at(&err, "2:1", "unknown field `stage`");
    let err = reject("name: x\nstages:\n  a:\n    kind: command\n    with:\n      run: 'true'\n      ouputs: [x]\n");
    assert_at(&err, "7:7", "unknown field `ouputs`");
}

#[test]
fn unknown_kind_suggests_the_closest() {
    let err = reject("name: x\nstages:\n  a:\n    kind: comand\n");
    assert_at(&err, "4:11", "unknown stage kind `comand`");
    assert!(err.contains("did you mean `command`"), "{err}");
}

#[test]
fn bad_with_values() {
    let err = reject(
        "name: x\nstages:\n  a:\n    kind: command\n    with:\n      run: 'true'\n      outs: {a: 1}\n",
    );
    assert_at(&err, "7:13", "invalid type: map, expected a string");
    let err = reject("name: x\nstages:\n  a:\n    kind: command\n    with: {outs: [x]}\n");
    assert_at(&err, "5:11", "missing field `run`");
    let err = reject("name: x\nstages:\n  a:\n    kind: command\n    with:\n      run: 'true'\n      outs: [ok, 'a/b']\n");
    assert_at(&err, "7:18", "invalid output name `a/b`");
    let err = reject("name: x\nstages:\n  a:\n    kind: step\n    with: {sleep_ms: soon}\n");
    assert_at(&err, "5:22", "invalid type: string \"soon\"");
}

/// A misspelled key gets the closest one as a hint, on the key; a value that should
/// be a map says so with the keys it takes, never with a Rust type's name.
#[test]
fn misspelled_keys_and_wrong_shapes_are_said_in_the_pipeline_s_terms() {
    let err = reject("name: x\nstages:\n  a:\n    kind: command\n    with:\n      rnu: 'true'\n");
    assert_at(&err, "6:7", "unknown field `rnu`");
    assert!(err.contains("did you mean `run`?"), "{err}");
    let err = reject("name: x\nstages:\n  a:\n    kind: command\n    with: hello\n");
    assert_at(&err, "5:11", "expected a map {");
    assert!(err.contains("run") && !err.contains("struct"), "{err}");
}

/// One value where a list of values is taken is the list of that value, in any
/// kind's settings; what else is wrong with it keeps its located error.
#[test]
fn a_single_value_is_a_list_of_one() {
    let p = Project::new();
    p.write(
        "p.yaml",
        "name: x\nstages:\n  a:\n    kind: command\n    with:\n      run: 'true'\n      outs: result\n",
    );
    let plan = p
        .load("p.yaml", &[])
        .expect("a single output name is accepted");
    let stage = &plan.stages["a"];
    assert_eq!(stage.outputs, ["result"]);
    // The same cache key as the list.
    assert_eq!(stage.with["outs"], serde_json::json!(["result"]));
}

/// A key a kind moved into a group still loads under its old spelling, as the same
/// `with` (the same cache key), with a warning at the old key that shows the new
/// spelling as written (`${params…}` and all); a bad value under the old spelling is
/// an error at the old key; both spellings at once is an error.
#[test]
fn old_spellings_load_with_a_located_warning_and_the_same_with() {
    let p = Project::new();
    let pipeline = |with: &str| {
        format!("name: x\nparams: {{w: 2}}\nstages:\n  a:\n    kind: shaped\n    with:\n{with}")
    };
    p.write(
        "new.yaml",
        &pipeline("      count: 1\n      shape: {width: '${params.w}', height: 3, kind: square}\n"),
    );
    p.write(
        "old.yaml",
        &pipeline(
            "      count: 1\n      width: '${params.w}'\n      height: 3\n      shape: square\n",
        ),
    );
    let new = p.load("new.yaml", &[]).expect("the new spelling loads");
    let old = p.load("old.yaml", &[]).expect("the old spelling loads");
    assert!(new.warnings.is_empty());
    assert_eq!(old.stages["a"].with, new.stages["a"].with);
    assert_eq!(old.stages["a"].with["shape"]["width"], 2);
    let warnings: Vec<String> = old.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[0].starts_with("warning: "), "{}", warnings[0]);
    let at = |w: &str, place: &str, needle: &str| {
        assert!(
            w.contains(&format!("old.yaml:{place}: ")) && w.contains(needle),
            "{w}"
        )
    };
    // In the file's order (the old key that the group took the name of moves first).
    at(&warnings[0], "8:7", "with.width: moved to `shape.width`");
    assert!(
        warnings[0].contains("write `shape: { width: \"${params.w}\" }`"),
        "{}",
        warnings[0]
    );
    at(&warnings[1], "9:7", "with.height: moved to `shape.height`");
    at(&warnings[2], "10:7", "with.shape: moved to `shape.kind`");

    let err = reject(&pipeline("      width: wide\n"));
    assert_at(&err, "7:14", "with.width: invalid type: string \"wide\"");
    let err = reject(&pipeline("      width: 1\n      shape: {width: 2}\n"));
    assert_at(&err, "7:7", "unknown field `width`");
}

#[test]
fn references_to_missing_stages_and_outputs() {
    let err = reject(
        "name: x\nstages:\n  make:\n    kind: command\n    with: {run: 'true', outs: [text]}\n  b:\n    kind: command\n    inputs: {src: mkae.text}\n    with: {run: 'true'}\n",
    );
    assert_at(&err, "8:19", "no stage named `mkae`");
    assert!(err.contains("did you mean `make`"), "{err}");
    let err = reject(
        "name: x\nstages:\n  make:\n    kind: command\n    with: {run: 'true', outs: [text]}\n  b:\n    kind: command\n    inputs: {src: make.txt}\n    with: {run: 'true'}\n",
    );
    assert_at(&err, "8:19", "stage `make` has no output `txt`");
    let err = reject(
        "name: x\nstages:\n  b:\n    kind: command\n    needs: [ghost]\n    with: {run: 'true'}\n",
    );
    assert_at(&err, "5:13", "no stage named `ghost`");
    let err = reject("name: x\nstages:\n  b:\n    kind: command\n    inputs: {src: nodot}\n    with: {run: 'true'}\n");
    assert_at(&err, "5:19", "is not a reference");
}

#[test]
fn cycles_print_their_path() {
    let err = reject(
        "name: x\nstages:\n  a:\n    kind: command\n    needs: [c]\n    with: {run: 'true'}\n  b:\n    kind: command\n    needs: [a]\n    with: {run: 'true'}\n  c:\n    kind: command\n    needs: [b]\n    with: {run: 'true'}\n",
    );
    let cycle = err
        .lines()
        .find(|l| l.contains("dependency cycle:"))
        .unwrap_or_else(|| panic!("{err}"));
    for s in ["a", "b", "c"] {
        assert!(
            cycle.contains(&format!("{s} ->")) || cycle.ends_with(s),
            "{cycle}"
        );
    }
    assert!(err.contains("p.yaml:"), "{err}");
}

#[test]
fn undefined_params_and_overrides() {
    let err = reject("name: x\nparams: {greeting: hi}\nstages:\n  a:\n    kind: command\n    with:\n      run: 'echo ${params.greting}'\n");
    assert_at(&err, "7:12", "undefined param `greting`");
    assert!(err.contains("did you mean `greeting`"), "{err}");

    let p = Project::new();
    p.write(
        "p.yaml",
        "name: x\nparams: {steps: 1}\nstages:\n  a: {kind: step}\n",
    );
    let err = p.load("p.yaml", &["stpes=3"]).err().unwrap().to_string();
    assert!(err.contains("did you mean `steps`"), "{err}");
    let err = p.load("p.yaml", &["steps"]).err().unwrap().to_string();
    assert!(err.contains("expected NAME=VALUE"), "{err}");
    assert!(p.load("p.yaml", &["steps=3"]).is_ok());
}

#[test]
fn yaml_syntax_and_duplicates() {
    let err = reject("name: x\nstages:\n  a:\n    kind: command\n    with: {run: 'true'\n  b: 1\n");
    assert!(
        err.contains("p.yaml:") && err.contains("invalid YAML"),
        "{err}"
    );
    let err = reject("name: x\nstages:\n  a:\n    kind: command\n    with: {run: 'true'}\n  a:\n    kind: command\n");
    assert_at(&err, "6:3", "duplicate key `a`");
}

#[test]
fn several_errors_are_reported_together() {
    let err = reject("name: x\nstages:\n  a:\n    kind: nope\n  b:\n    kind: command\n    needs: [zzz]\n    with: {run: 'true'}\n");
    assert!(
        err.trim_end().ends_with("p.yaml") && err.contains("2 errors in "),
        "{err}"
    );
}

#[test]
fn a_remote_with_trust_loads_and_a_bad_address_is_named_at_its_line() {
    let address = format!("0x{}", "ab".repeat(32));
    let p = Project::new();
    p.write(
        "p.yaml",
        &format!(
            "name: x\nremote:\n  url: s3://b/x\n  trust: [{address}]\nstages:\n  s:\n    kind: step\n"
        ),
    );
    let plan = p.load("p.yaml", &[]).unwrap_or_else(|e| panic!("{e}"));
    let remote = plan.remote.as_ref().unwrap();
    assert_eq!(remote.url, "s3://b/x");
    assert_eq!(remote.trust.as_ref().unwrap(), &address.parse().unwrap());
    let err = reject(
        "name: x\nremote:\n  url: s3://b/x\n  trust: [0x12]\nstages:\n  s:\n    kind: step\n",
    );
    assert!(err.contains("p.yaml:"), "{err}");
    assert!(err.contains("64 hex digits"), "{err}");
    let err =
        reject("name: x\nremote: { url: s3://b/x, trusts: any }\nstages:\n  s:\n    kind: step\n");
    assert!(err.contains("trusts"), "{err}");
}
