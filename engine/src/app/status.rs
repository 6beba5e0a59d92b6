//! `status`: say, per stage, whether it would run and why.

use std::path::Path;

use anyhow::Result;

use super::{load, Env, ExitStatus, PipelineArgs, StoreArgs};
use crate::explain::{explain, Verdict};
use crate::pipeline::Plan;
use crate::record;
use crate::store::Store;

pub(super) fn run(env: &Env, pipeline: &PipelineArgs, store: &StoreArgs) -> Result<ExitStatus> {
    match load(env, pipeline) {
        Ok(plan) => print(&plan, &store.open()?, &pipeline.file),
        Err(status) => Ok(status),
    }
}

/// Per stage of `plan`, whether it would run and why (`status`, `run --dry-run`).
pub(super) fn print(plan: &Plan, store: &Store, file: &Path) -> Result<ExitStatus> {
    let previous = record::latest_for(store, file)?;
    for (stage, verdict) in explain(plan, store, previous.as_ref())? {
        match verdict {
            Verdict::Cached => println!("{stage:<24} cached"),
            Verdict::WouldRun(why) => println!("{stage:<24} would run: {}", why.join("; ")),
        }
    }
    Ok(ExitStatus::Ok)
}
