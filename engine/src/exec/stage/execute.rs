//! Step 4's one try: the stage built under its key's lock (and the remote store's
//! lease), unless another process or machine built it meanwhile: in this process
//! ([`build`](super::build)), or in a process or Slurm job of its own ([`job`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::build::{execute_in, Executed};
use super::lookup::{self, Origin};
use crate::exec::job::{self, Elsewhere};
use crate::exec::shared::Shared;
use crate::pipeline::{Executor, PlannedStage};
use crate::remote::{Claim, Lease, LeaseWatch, Remote, RemoteEntry};
use crate::store::{self, Artifact};

/// Builds stage `i` under its key's lock, unless another process did meanwhile: here,
/// or in a process or Slurm job of its own.
pub(in crate::exec) fn execute(
    shared: &Shared,
    i: usize,
    key: &str,
    inputs: &BTreeMap<String, Vec<Artifact>>,
    device: Option<usize>,
    sign: bool,
) -> Result<Executed> {
    let stage = &shared.plan.stages[i];
    let store = &shared.store;
    let _lock = match store.try_lock_key(key)? {
        Some(l) => l,
        None => {
            shared.progress.waiting(&stage.name);
            store.lock_key(key)?
        }
    };
    if !shared.no_cache {
        if let Some(entry) = lookup::local(shared, stage, key) {
            return Ok(Executed::Found(entry, Origin::Local));
        }
    }
    // Other machines: take the key's lease, or wait for whoever holds it.
    let lease = match &shared.remote {
        Some(remote) if !shared.no_cache => match claim_or_wait(shared, stage, remote, key) {
            Ok(Claimed::Built(found)) => {
                let (entry, origin) = Origin::remote(found);
                return Ok(Executed::Found(entry, origin));
            }
            Ok(Claimed::Lease(lease)) => Some(lease),
            Err(e) => {
                shared.progress.warn(&format!(
                    "{}: cannot claim it in the remote store ({e:#}); building it here",
                    stage.name
                ));
                None
            }
        },
        _ => None,
    };
    tracing::debug!(stage = %stage.name, %key, "running");
    let tag = &key[..16];
    store.clear_stale_tmp(tag);
    let work = store.tmp_dir(tag)?;
    let elsewhere = match shared.plan.executor_of(stage) {
        Executor::Slurm => Some(Elsewhere::Slurm),
        Executor::Local if stage.execution.timeout.is_some() || device.is_some() => {
            Some(Elsewhere::Process { device })
        }
        Executor::Local => None,
    };
    let result = match elsewhere {
        None => execute_in(shared, stage, key, inputs, &work),
        Some(how) => job::run_elsewhere(shared, stage, key, inputs, &work, &how, sign),
    };
    let _ = store::remove_any(&work);
    Ok(match result? {
        Executed::Built(entry, _) => Executed::Built(entry, lease),
        other => other,
    })
}

enum Claimed {
    /// Another machine built the key while this one waited.
    Built(RemoteEntry),
    Lease(Lease),
}

/// Takes the key's lease in the remote store, or waits while another machine holds it
/// until its result appears (a hit) or its lease expires (it died: build it here).
fn claim_or_wait(
    shared: &Shared,
    stage: &PlannedStage,
    remote: &Arc<Remote>,
    key: &str,
) -> Result<Claimed> {
    let mut told = false;
    let mut watch = LeaseWatch::default();
    loop {
        if let Some(found) = lookup::remote(shared, stage, key, true) {
            return Ok(Claimed::Built(found));
        }
        match remote.claim(key, &mut watch)? {
            Claim::Mine(lease) => return Ok(Claimed::Lease(lease)),
            Claim::Theirs { owner, ttl } => {
                if !told {
                    shared.progress.message(
                        &stage.name,
                        &format!(
                            "{owner} is building it; waiting for its result (its lease is \
                             taken over if it is not renewed for {})",
                            humantime::format_duration(ttl)
                        ),
                    );
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}
