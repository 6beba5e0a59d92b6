//! `status`: say, per stage, whether it would run and why.

use anyhow::Result;

use super::{load, Env, ExitStatus, PipelineArgs, StoreArgs};
use crate::explain::{explain, Verdict};
use crate::record;

pub(super) fn run(env: &Env, pipeline: &PipelineArgs, store: &StoreArgs) -> Result<ExitStatus> {
    let plan = match load(env, pipeline) {
        Ok(plan) => plan,
        Err(status) => return Ok(status),
    };
    let store = store.open()?;
    let previous = record::latest_for(&store, &pipeline.file)?;
    for (stage, verdict) in explain(&plan, &store, previous.as_ref())? {
        match verdict {
            Verdict::Cached => println!("{stage:<24} cached"),
            Verdict::WouldRun(why) => println!("{stage:<24} would run: {}", why.join("; ")),
        }
    }
    Ok(ExitStatus::Ok)
}
