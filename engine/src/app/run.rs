//! `run`: load a pipeline and execute it; also the execution `rerun` and `verify` share.

use std::sync::Arc;

use anyhow::Result;

use super::{load_as_given, Env, ExecArgs, ExitStatus, PipelineArgs, StoreArgs};
use crate::duration::fmt_duration;
use crate::exec::{self, ExecOptions};
use crate::params;
use crate::pipeline::Plan;
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
    let points = params::grid(&pipeline.set);
    // Every grid point loads before any runs: a bad value stops the sweep up front.
    let mut plans = Vec::new();
    for set in &points {
        // Each point's paths are resolved once, and recorded as resolved.
        let point = PipelineArgs {
            set: set.clone(),
            ..pipeline.clone()
        }
        .paths_from_working_dir();
        match load_as_given(env, &point).map(|plan| plan.only(targets)) {
            Ok(Ok(plan)) => plans.push((plan, point.set)),
            Ok(Err(why)) => {
                eprintln!("error: {why}");
                return Ok(ExitStatus::Usage);
            }
            Err(status) => return Ok(status),
        }
    }
    let store = store.open()?;
    if dry_run {
        for (plan, set) in &plans {
            if points.len() > 1 {
                println!("--set {}:", set.join(" --set "));
            }
            super::status::print(plan, &store, &pipeline.file)?;
        }
        return Ok(ExitStatus::Ok);
    }
    if points.len() == 1 {
        let (plan, set) = plans.pop().expect("one point");
        return run_plan(env, plan, store, exec, set);
    }
    sweep(env, plans, &store, exec)
}

/// Runs the grid points one after another, each its own run: a stage that several
/// points share (same key) runs in the first and is a cache hit in the others. Ends
/// with the points side by side.
fn sweep(
    env: &Env,
    plans: Vec<(Plan, Vec<String>)>,
    store: &Store,
    exec: &ExecArgs,
) -> Result<ExitStatus> {
    let total = plans.len();
    let mut records = Vec::new();
    let mut worst = ExitStatus::Ok;
    // A stopped sweep stops; otherwise a failure outranks a deferral.
    let rank = |s: ExitStatus| match s {
        ExitStatus::Ok => 0,
        ExitStatus::Deferred => 1,
        ExitStatus::Failed | ExitStatus::Usage => 2,
        ExitStatus::Interrupted => 3,
    };
    let remote = exec.remote.open(plans[0].0.remote.as_ref(), env.keys);
    for (i, (plan, set)) in plans.into_iter().enumerate() {
        eprintln!("sweep {}/{total}: --set {}", i + 1, set.join(" --set "));
        let options = exec.options(set, remote.clone());
        let record = execute(Arc::new(exec.apply(plan)), store.clone(), options)?;
        print_summary(&record);
        let status = ExitStatus::from(record.status);
        records.push(record);
        if rank(status) > rank(worst) {
            worst = status;
        }
        if status == ExitStatus::Interrupted {
            break;
        }
    }
    println!("\nsweep of {total} runs ({} done):", records.len());
    println!(
        "{}",
        super::compare::compare(env, store, &records, false).table()
    );
    Ok(worst)
}

pub(super) fn run_plan(
    env: &Env,
    plan: Plan,
    store: Store,
    exec: &ExecArgs,
    overrides: Vec<String>,
) -> Result<ExitStatus> {
    let remote = exec.remote.open(plan.remote.as_ref(), env.keys);
    let record = execute(
        Arc::new(exec.apply(plan)),
        store,
        exec.options(overrides, remote),
    )?;
    print_summary(&record);
    Ok(record.status.into())
}

/// Runs a plan, saving its record in `store`. The walk and the stages' steps are
/// futures on this thread; whatever blocks (lookups, builds, transfers) runs on
/// tokio's blocking threads, so no worker threads are needed (nor the hops to them).
pub fn execute(plan: Arc<Plan>, store: Store, opts: ExecOptions) -> Result<RunRecord> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let record = rt.block_on(exec::run(plan, store, opts));
    // An interrupted run returns while in-process stages may still compute; their
    // results are not wanted.
    rt.shutdown_background();
    record
}

/// The run's table and notes on stdout, written at once (a large graph's table is
/// thousands of lines).
pub fn print_summary(r: &RunRecord) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // A closed stdout (`| head`) is not the run's failure.
    let _ = write_summary(&mut out, r).and_then(|()| out.flush());
}

fn write_summary(out: &mut impl std::io::Write, r: &RunRecord) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:<18} {:<9} {:>8}",
        "stage", "kind", "status", "time"
    )?;
    for (name, s) in &r.stages {
        writeln!(
            out,
            "{name:<24} {:<18} {:<9} {:>8}",
            s.kind,
            if s.remote && s.status == StageStatus::Hit {
                "remote"
            } else {
                s.status.label()
            },
            s.time_label()
        )?;
        if let (Some(msg), StageStatus::Failed | StageStatus::Deferred) = (&s.message, s.status) {
            for line in msg.lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    for (name, s) in r.stages.iter().filter(|(_, s)| !s.notes.is_empty()) {
        writeln!(out, "\n{name}:")?;
        for note in &s.notes {
            for line in note.lines() {
                writeln!(out, "  {line}")?;
            }
        }
    }
    let interrupted = match r.count(StageStatus::Interrupted) {
        0 => String::new(),
        n => format!(", {n} interrupted"),
    };
    writeln!(
        out,
        "\nrun {} ({}): {} ran, {} cached, {} deferred, {} failed, {} skipped{interrupted} in {}",
        r.id,
        r.name,
        r.count(StageStatus::Ran),
        r.count(StageStatus::Hit),
        r.count(StageStatus::Deferred),
        r.count(StageStatus::Failed),
        r.count(StageStatus::Skipped),
        fmt_duration(std::time::Duration::from_millis(r.duration_ms)),
    )?;
    Ok(())
}
