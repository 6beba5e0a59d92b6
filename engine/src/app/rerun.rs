//! `rerun`: run a recorded run's pipeline again with its recorded params and backend.

use anyhow::Result;

use super::{recorded_plan, run::run_plan, Env, ExecArgs, ExitStatus, StoreArgs};
use crate::record;

pub(super) fn run(env: &Env, id: &str, exec: &ExecArgs, store: &StoreArgs) -> Result<ExitStatus> {
    let store = store.open()?;
    let rec = record::find(&store, id)?;
    eprintln!(
        "rerunning {} ({}) with {} override(s), backend {}",
        rec.id,
        rec.pipeline.display(),
        rec.overrides.len(),
        rec.backend
    );
    match recorded_plan(env, &rec) {
        Ok(plan) => run_plan(env, plan, store, exec, rec.overrides.clone()),
        Err(status) => Ok(status),
    }
}
