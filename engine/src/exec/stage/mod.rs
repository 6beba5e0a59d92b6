//! One stage, as the scheduler hands it out: a short pipeline of named steps, each in a
//! module of its own and testable alone:
//!
//! 1. key and 2. lookup ([`lookup`]): the stage's cache key; its result here, else in
//!    the remote store;
//! 3. admit ([`admit`]): refused if it acts for the user on unverified inputs; else a
//!    job slot and its resource class's slot;
//! 4. execute, with retry ([`retry`]): under the key's lock ([`execute`]), in this
//!    process ([`build`]) or in a job of its own ([`crate::exec::job`]);
//! 5. publish ([`share`]): what it built, to the remote store.
//!
//! [`Finished`] says how it ended.

pub(super) mod admit;
pub(super) mod build;
pub(super) mod execute;
mod finished;
pub(super) mod lookup;
mod retry;
pub(super) mod share;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, Result};

use super::shared::Shared;
use crate::store::Artifact;
use build::Executed;
pub(super) use finished::Finished;

/// The artifacts a stage is given, by input name.
pub(super) type Inputs = BTreeMap<String, Vec<Artifact>>;

/// Runs stage `i` on `inputs`; `tainted` names the stage upstream whose remote entry
/// nobody verified, if the inputs derive from one; `cached` is its result in this
/// store when [`lookup::cached_here`] found it.
pub(super) async fn run(
    shared: Arc<Shared>,
    i: usize,
    inputs: Inputs,
    tainted: Option<String>,
    cached: Option<lookup::Cached>,
) -> Finished {
    let stage = &shared.plan.stages[i];
    let mut f = Finished::starting(&inputs, &shared);
    // Key and cache lookup need no job slot: a fully cached pipeline never waits.
    let keyed = match cached {
        Some((key, entry)) => Ok((key, Some((entry, lookup::Origin::Local)))),
        None => {
            let _permit = shared.lookups.acquire().await.expect("never closed");
            let (s, inputs) = (Arc::clone(&shared), inputs.clone());
            blocking(move || lookup::key_and_lookup(&s, i, &inputs)).await
        }
    };
    let (key, hit) = match keyed {
        Ok(keyed) => keyed,
        Err(e) => return f.failed(&shared, stage, format!("{e:#}")),
    };
    let hash = key.hash.clone();
    f.key = Some(key);
    if let Some(hit) = hit {
        return f.hit(&shared, stage, hit, tainted);
    }
    if let Some(refusal) = admit::refusal(&shared, stage, tainted.as_deref()) {
        return f.failed(&shared, stage, refusal);
    }
    let admission = admit::admit(&shared, stage).await;
    f.executing(&shared, stage);
    let (device, sign) = (admission.device, tainted.is_none());
    let tried = retry::tries(
        stage.execution.attempts,
        stage.execution.backoff,
        || {
            let (s, hash, inputs) = (Arc::clone(&shared), hash.clone(), inputs.clone());
            blocking(move || execute::execute(&s, i, &hash, &inputs, device, sign))
        },
        |n, why, wait| {
            shared.progress.warn(&format!(
                "{}: attempt {n} of {} failed ({why}); trying again in {}",
                stage.name,
                stage.execution.attempts,
                humantime::format_duration(wait)
            ))
        },
    )
    .await;
    f.executed(&shared, tried.notes);
    match tried.result {
        Ok(Executed::Found(entry, origin)) => f.found(entry, origin, &stage.name, tainted),
        Ok(Executed::Built(entry, lease)) => {
            // The upload holds no job slot and no resource class: the next stage may
            // start. The lease is held until the entry is published.
            drop(admission);
            share::built(&shared, i, &entry, lease, sign).await;
            f.built(entry, tainted, false);
        }
        Ok(Executed::BuiltElsewhere(entry)) => f.built(entry, tainted, true),
        Ok(Executed::Deferred(reason)) => f.deferred(reason),
        Err(e) => return f.failed(&shared, stage, format!("{e:#}")),
    }
    f.said(&shared, stage)
}

/// Runs `work` on tokio's blocking threads; a task that panicked is an error.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| anyhow!("stage task failed: {e}"))?
}
