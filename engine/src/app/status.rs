//! `status`: say, per stage, whether it would run and why.

use std::path::Path;

use anyhow::Result;

use super::{load, Env, ExitStatus, PipelineArgs, StoreArgs};
use crate::explain::{explain, Verdict};
use crate::pipeline::Plan;
use crate::record;
use crate::store::Store;

/// `target` is a pipeline file, or a recorded run (default: the latest) whose
/// pipeline file is checked with the run's overrides (and `set` after them).
pub(super) fn run(
    env: &Env,
    target: Option<String>,
    set: Vec<String>,
    backend: Option<String>,
    store: &StoreArgs,
) -> Result<ExitStatus> {
    let opened = store.open()?;
    let pipeline = match target.as_deref().filter(|t| Path::new(t).is_file()) {
        Some(file) => PipelineArgs {
            file: file.into(),
            set,
            backend,
        },
        None => {
            let rec = record::find(&opened, target.as_deref().unwrap_or("latest"))?;
            eprintln!(
                "status of {} with the overrides of run {}",
                rec.pipeline.display(),
                rec.id
            );
            PipelineArgs {
                file: rec.pipeline,
                set: rec.overrides.into_iter().chain(set).collect(),
                backend: backend.or(Some(rec.backend)),
            }
        }
    };
    match load(env, &pipeline) {
        Ok(plan) => print(&plan, &opened, &pipeline.file),
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
