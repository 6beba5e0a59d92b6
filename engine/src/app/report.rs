//! `report`: an HTML report of a recorded run, or (`--compare`) of runs side by side.

use std::path::PathBuf;

use anyhow::Result;

use super::compare::{compare, select, Selection};
use super::{load_recorded, Env, ExitStatus, StoreArgs};
use crate::report::CurveLines;
use crate::store::Store;
use crate::{dag, record, report};

pub(super) fn run(
    env: &Env,
    ids: &[String],
    compare: bool,
    out: Option<PathBuf>,
    store: &StoreArgs,
) -> Result<ExitStatus> {
    let store = store.open()?;
    if compare {
        return run_compare(env, ids, out, &store);
    }
    let id = match ids {
        [] => "latest",
        [id] => id.as_str(),
        _ => {
            eprintln!("error: `report` takes one run id; to put runs side by side, `report --compare ID ID...`");
            return Ok(ExitStatus::Usage);
        }
    };
    let rec = record::find(&store, id)?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("report-{}", rec.id)));
    let index = report::write(&store, &rec, &recorded_dependencies(env, &rec), &out)?;
    println!("{}", index.display());
    Ok(ExitStatus::Ok)
}

/// One page comparing the runs `ids`: the comparison table and each curve with a line
/// per run.
fn run_compare(
    env: &Env,
    ids: &[String],
    out: Option<PathBuf>,
    store: &Store,
) -> Result<ExitStatus> {
    let which = Selection {
        ids,
        last: 2,
        pipeline: None,
    };
    let records = select(store, &which)?;
    let c = compare(env, store, &records, true);
    // A line's label: the run, and its values of the params that differ.
    let labels: Vec<String> = (0..c.runs.len())
        .map(|i| {
            let set: Vec<String> = c
                .params
                .iter()
                .filter_map(|row| Some(format!("{}={}", row.name, row.values[i].as_ref()?)))
                .collect();
            match set.is_empty() {
                true => c.runs[i].clone(),
                false => format!("{} ({})", c.runs[i], set.join(", ")),
            }
        })
        .collect();
    let curves: Vec<CurveLines> = c
        .curves
        .iter()
        .map(|curve| {
            let lines = labels
                .iter()
                .zip(&curve.runs)
                .filter_map(|(id, points)| Some((id.clone(), points.clone()?)))
                .collect();
            (curve.name.clone(), lines)
        })
        .collect();
    let last = c.runs.last().map_or("", String::as_str);
    let out = out.unwrap_or_else(|| PathBuf::from(format!("report-compare-{last}")));
    let title = format!("{} runs side by side", c.runs.len());
    let index = report::write_comparison(&title, &c.table(), &curves, &c.problems, &out)?;
    println!("{}", index.display());
    Ok(ExitStatus::Ok)
}

/// The stage graph of a recorded run.
fn recorded_dependencies(env: &Env, rec: &record::RunRecord) -> report::Dependencies {
    // Nothing runs: a backend this build lacks must not hide the graph.
    match load_recorded(env, rec, env.backend.unchecked()) {
        Ok(plan) => Ok(dag::edges(&plan.stages)),
        Err(e) => {
            eprintln!("warning: the recorded pipeline does not load, so the report's graph has no arrows:\n{e}");
            Err(e.to_string())
        }
    }
}
