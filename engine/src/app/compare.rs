//! `compare`: runs side by side: the params that differ, each stage's headline results
//! (what its kind reads from its stored outputs), status and wall time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::Value as Json;

use super::{load_recorded, Env, ExitStatus};
use crate::kind::{CachedOutputs, Prepared};
use crate::record::{self, RunRecord};
use crate::store::Store;
use crate::table::{pipe, Align};

/// Which runs to compare: these ids, else the last `last` (of `pipeline`, if given).
pub struct Selection<'a> {
    pub ids: &'a [String],
    pub last: usize,
    pub pipeline: Option<&'a Path>,
}

/// One named value per run (`None`: the run has none).
#[derive(Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub values: Vec<Option<Json>>,
}

/// One named curve: per run its `(x, y)` points (`None`: the run has none).
#[derive(Debug, Serialize)]
pub struct CurveRow {
    pub name: String,
    pub runs: Vec<Option<Vec<(f64, f64)>>>,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub runs: Vec<String>,
    /// Params whose values differ between the runs, and `--backend` if it does.
    pub params: Vec<Row>,
    /// `stage.result` headlines, then each run's status and wall time.
    pub results: Vec<Row>,
    /// `stage.series` curves: per run its points, if it has them (when asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub curves: Vec<CurveRow>,
    /// Why some results are missing (an output removed by `gc`, a kind that failed to
    /// read its output).
    pub problems: Vec<String>,
}

pub(super) fn run(
    env: &Env,
    store: &Store,
    which: &Selection<'_>,
    json: bool,
) -> Result<ExitStatus> {
    let records = select(store, which)?;
    // The table shows no curves; `--json` carries them.
    let comparison = compare(env, store, &records, json);
    if json {
        println!("{}", serde_json::to_string_pretty(&comparison)?);
    } else {
        println!("{}", comparison.table());
        for problem in &comparison.problems {
            eprintln!("warning: {problem}");
        }
    }
    Ok(ExitStatus::Ok)
}

/// The records `which` names, oldest first.
pub fn select(store: &Store, which: &Selection<'_>) -> Result<Vec<RunRecord>> {
    if !which.ids.is_empty() {
        return which.ids.iter().map(|id| record::find(store, id)).collect();
    }
    let pipeline = which
        .pipeline
        .map(|p| {
            p.canonicalize()
                .map_err(|e| anyhow::anyhow!("cannot find {}: {e}", p.display()))
        })
        .transpose()?;
    let mut all: Vec<RunRecord> = record::list(store)?
        .into_iter()
        .filter(|r| pipeline.as_ref().is_none_or(|p| &r.pipeline == p))
        .collect();
    if all.is_empty() {
        bail!("no recorded runs to compare (see `soma-flow runs`)");
    }
    let skip = all.len().saturating_sub(which.last.max(1));
    Ok(all.split_off(skip))
}

/// The runs side by side; each stage's curves too when `with_curves` (they are read
/// from the outputs, so only when they will be shown).
pub fn compare(env: &Env, store: &Store, records: &[RunRecord], with_curves: bool) -> Comparison {
    let mut problems = Vec::new();
    let mut params = Rows::default();
    let mut results = Rows::default();
    let mut curves = Rows::default();
    for (i, rec) in records.iter().enumerate() {
        params.set("--backend", i, Json::String(rec.backend.clone()));
        for (name, value) in &rec.params {
            params.set(name, i, value.clone());
        }
        each_stage(
            env,
            store,
            rec,
            &mut problems,
            |stage, prepared, outputs| {
                for (name, value) in prepared.headline(outputs)? {
                    results.set(&format!("{stage}.{name}"), i, value);
                }
                if with_curves {
                    for (name, points) in prepared.curves(outputs)? {
                        curves.set(&format!("{stage}.{name}"), i, points);
                    }
                }
                Ok(())
            },
        );
    }
    let curves = curves
        .per_run(records.len())
        .map(|(name, runs)| CurveRow { name, runs })
        .collect();
    let mut results: Vec<Row> = results
        .per_run(records.len())
        .map(|(name, values)| Row { name, values })
        .collect();
    let each = |f: &dyn Fn(&RunRecord) -> Json| records.iter().map(|r| Some(f(r))).collect();
    results.push(Row {
        name: "status".into(),
        values: each(&|r| serde_json::to_value(r.status).unwrap_or(Json::Null)),
    });
    results.push(Row {
        name: "wall time".into(),
        values: each(&|r| {
            let d = std::time::Duration::from_millis(r.duration_ms);
            Json::String(crate::duration::fmt_duration(d))
        }),
    });
    let params = params
        .per_run(records.len())
        .filter(|(_, values)| values.iter().any(|v| v != &values[0]))
        .map(|(name, values)| Row { name, values })
        .collect();
    Comparison {
        runs: records.iter().map(|r| r.id.clone()).collect(),
        params,
        results,
        curves,
        problems,
    }
}

/// Calls `read` with each stage of a recorded run that has outputs, its prepared kind
/// (from the recorded pipeline) and its stored outputs; what fails becomes a problem.
fn each_stage(
    env: &Env,
    store: &Store,
    rec: &RunRecord,
    problems: &mut Vec<String>,
    mut read: impl FnMut(&str, &dyn Prepared, &CachedOutputs<'_>) -> Result<()>,
) {
    // Nothing runs: a backend this build lacks must not hide the results.
    let plan = match load_recorded(env, rec, env.backend.unchecked()) {
        Ok(plan) => plan,
        Err(e) => {
            problems.push(format!("run {}: its pipeline does not load: {e}", rec.id));
            return;
        }
    };
    for (name, stage) in &rec.stages {
        let Some(planned) = plan.stages.get(name) else {
            continue;
        };
        if stage.outputs.is_empty() {
            continue;
        }
        let outputs: BTreeMap<String, PathBuf> = stage
            .outputs
            .iter()
            .map(|(output, artifact)| (output.clone(), store.path_of(artifact)))
            .filter(|(_, path)| path.exists())
            .collect();
        let cached = CachedOutputs {
            outputs: &outputs,
            store: store.root(),
            fetch: None,
        };
        if let Err(e) = read(name, planned.prepared.as_ref(), &cached) {
            problems.push(format!("run {}, stage `{name}`: {e:#}", rec.id));
        }
    }
}

/// Named values of runs, gathered run by run; names keep their first appearance.
struct Rows<T>(indexmap::IndexMap<String, BTreeMap<usize, T>>);

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Rows(Default::default())
    }
}

impl<T> Rows<T> {
    fn set(&mut self, name: &str, run: usize, value: T) {
        self.0
            .entry(name.to_string())
            .or_default()
            .insert(run, value);
    }

    /// Each name with its value per run, `None` where a run has none.
    fn per_run(self, runs: usize) -> impl Iterator<Item = (String, Vec<Option<T>>)> {
        self.0
            .into_iter()
            .map(move |(name, mut values)| (name, (0..runs).map(|i| values.remove(&i)).collect()))
    }
}

impl Comparison {
    /// Params that differ, then results: one column per run.
    pub fn table(&self) -> String {
        let mut columns = vec![("", Align::Left)];
        columns.extend(self.runs.iter().map(|id| (id.as_str(), Align::Right)));
        let rows: Vec<Vec<String>> = self
            .params
            .iter()
            .map(|row| match row.name.starts_with("--") {
                true => (row.name.clone(), row),
                false => (format!("--set {}", row.name), row),
            })
            .chain(self.results.iter().map(|row| (row.name.clone(), row)))
            .map(|(label, row)| {
                std::iter::once(label)
                    .chain(row.values.iter().map(|v| show(v.as_ref())))
                    .collect()
            })
            .collect();
        pipe(&columns, &rows)
    }
}

/// A value as a table cell: fractions to 4 decimals, `-` for none, and text over 24
/// characters (a model id) as its start and end (`--json` has it whole).
fn show(value: Option<&Json>) -> String {
    let text = match value {
        None | Some(Json::Null) => "-".into(),
        Some(Json::Number(n)) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or(f64::NAN)),
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 24 {
        return text;
    }
    let (head, tail): (String, String) = (
        chars[..12].iter().collect(),
        chars[chars.len() - 6..].iter().collect(),
    );
    format!("{head}…{tail}")
}
