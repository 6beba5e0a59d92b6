//! `run`: load a pipeline and execute it; also the execution `rerun` and `verify` share.

use std::sync::Arc;

use anyhow::Result;

use super::{load, Env, ExecArgs, ExitStatus, PipelineArgs, StoreArgs};
use crate::exec::{self, ExecOptions};
use crate::pipeline::Plan;
use crate::progress::fmt_duration;
use crate::record::{RunRecord, StageStatus};
use crate::store::Store;

pub(super) fn run(
    env: &Env,
    pipeline: &PipelineArgs,
    exec: &ExecArgs,
    targets: &[String],
    dry_run: bool,
    store: &StoreArgs,
) -> Result<ExitStatus> {
    let plan = match load(env, pipeline).map(|plan| plan.only(targets)) {
        Ok(Ok(plan)) => plan,
        Ok(Err(why)) => {
            eprintln!("error: {why}");
            return Ok(ExitStatus::Usage);
        }
        Err(status) => return Ok(status),
    };
    let store = store.open()?;
    if dry_run {
        return super::status::print(&plan, &store, &pipeline.file);
    }
    run_plan(plan, store, exec, pipeline.set.clone())
}

pub(super) fn run_plan(
    plan: Plan,
    store: Store,
    exec: &ExecArgs,
    overrides: Vec<String>,
) -> Result<ExitStatus> {
    let record = execute(Arc::new(plan), store, exec.options(overrides))?;
    print_summary(&record);
    Ok(record.status.into())
}

/// Runs a plan, saving its record in `store`.
pub fn execute(plan: Arc<Plan>, store: Store, opts: ExecOptions) -> Result<RunRecord> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let record = rt.block_on(exec::run(plan, store, opts));
    // An interrupted run returns while in-process stages may still compute; their
    // results are not wanted.
    rt.shutdown_background();
    record
}

pub fn print_summary(r: &RunRecord) {
    println!();
    println!(
        "{:<24} {:<18} {:<9} {:>8}",
        "stage", "kind", "status", "time"
    );
    for (name, s) in &r.stages {
        println!(
            "{name:<24} {:<18} {:<9} {:>8}",
            s.kind,
            s.status.label(),
            s.time_label()
        );
        if let (Some(msg), StageStatus::Failed | StageStatus::Deferred) = (&s.message, s.status) {
            for line in msg.lines() {
                println!("    {line}");
            }
        }
    }
    for (name, s) in r.stages.iter().filter(|(_, s)| !s.notes.is_empty()) {
        println!("\n{name}:");
        for note in &s.notes {
            for line in note.lines() {
                println!("  {line}");
            }
        }
    }
    println!(
        "\nrun {} ({}): {} ran, {} cached, {} deferred, {} failed, {} skipped in {}",
        r.id,
        r.name,
        r.count(StageStatus::Ran),
        r.count(StageStatus::Hit),
        r.count(StageStatus::Deferred),
        r.count(StageStatus::Failed),
        r.count(StageStatus::Skipped),
        fmt_duration(std::time::Duration::from_millis(r.duration_ms)),
    );
}
