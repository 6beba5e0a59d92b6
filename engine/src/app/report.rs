//! `report`: an HTML report of a recorded run.

use std::path::PathBuf;

use anyhow::Result;

use super::{load_recorded, Env, ExitStatus, StoreArgs};
use crate::{dag, record, report};

pub(super) fn run(
    env: &Env,
    id: &str,
    out: Option<PathBuf>,
    store: &StoreArgs,
) -> Result<ExitStatus> {
    let store = store.open()?;
    let rec = record::find(&store, id)?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("report-{}", rec.id)));
    let index = report::write(&store, &rec, &recorded_dependencies(env, &rec), &out)?;
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
