//! `verify`: repeat a recorded run from nothing in a scratch store and say, per stage,
//! whether its outputs are bit-identical to the recorded ones.

use std::sync::Arc;

use anyhow::Result;

use super::{execute, recorded_plan, Env, ExecArgs, ExitStatus, RemoteArgs};
use crate::record;
use crate::store::{self, Store};

pub(super) fn run(
    env: &Env,
    store: &Store,
    id: &str,
    keep: bool,
    jobs: Option<usize>,
) -> Result<ExitStatus> {
    let original = record::find(store, id)?;
    let plan = match recorded_plan(env, &original) {
        Ok(plan) => plan,
        Err(status) => return Ok(status),
    };
    // Held for the whole repeat: gc (which takes it exclusively) then leaves the
    // scratch store under tmp/ alone.
    let _store_lock = store.lock_store(false)?;
    let scratch_dir = store.tmp_dir("verify")?;
    eprintln!(
        "verifying {} ({}): repeating it from nothing in {}",
        original.id,
        original.pipeline.display(),
        scratch_dir.display()
    );
    // From nothing: no remote store either.
    let exec = ExecArgs {
        jobs,
        no_cache: true,
        remote: RemoteArgs { url: None },
        executor: None,
    };
    let plan = Arc::new(plan);
    let repeat = execute(
        Arc::clone(&plan),
        Store::open(&scratch_dir)?,
        exec.options(original.overrides.clone(), None),
    )?;
    let verdicts = crate::verify::compare(&plan, &original, &repeat);
    println!("\n{:<24} {:<18} result", "stage", "kind");
    for (name, verdict) in &verdicts {
        println!("{name:<24} {:<18} {verdict}", original.stages[name].kind);
    }
    let failures = verdicts.iter().filter(|(_, v)| v.is_failure()).count();
    let identical = verdicts.iter().filter(|(_, v)| v.is_identical()).count();
    println!(
        "\n{identical} stage(s) identical, {failures} not, {} not comparable",
        verdicts.len() - identical - failures
    );
    if keep {
        println!("scratch store kept: {}", scratch_dir.display());
    } else {
        store::discard(&scratch_dir)?;
    }
    Ok(if failures == 0 {
        ExitStatus::Ok
    } else {
        ExitStatus::Failed
    })
}
