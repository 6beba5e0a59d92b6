//! Moving a stage's artifacts to and from the remote store, with progress: inputs a
//! remote hit upstream left there, and (the last step) what a stage built, published.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};

use crate::exec::shared::Shared;
use crate::pipeline::PlannedStage;
use crate::remote::{Lease, Meter, Remote};
use crate::store::{Artifact, CacheEntry, Check};

/// Step 5: gives the remote store, if the run has one, what stage `i` built, holding
/// the key's `lease` until its entry is published (then dropping it).
pub(in crate::exec) async fn built(
    shared: &Arc<Shared>,
    i: usize,
    entry: &CacheEntry,
    lease: Option<Lease>,
    sign: bool,
) {
    let Some(remote) = &shared.remote else {
        return;
    };
    let (shared, remote, entry) = (Arc::clone(shared), Arc::clone(remote), entry.clone());
    let _ = tokio::task::spawn_blocking(move || {
        share(&shared, &shared.plan.stages[i], &remote, &entry, sign);
        drop(lease);
    })
    .await;
}

/// Downloads one artifact from the remote into the local store, showing progress.
pub(in crate::exec) fn download(
    shared: &Shared,
    stage: &PlannedStage,
    remote: &Remote,
    what: &str,
    a: &Artifact,
) -> Result<()> {
    let report = |msg: &str| shared.progress.message(&stage.name, msg);
    let meter = Meter::new(format!("downloading {what}"), a.size, &report);
    remote
        .download(&shared.store, a, &meter)
        .with_context(|| format!("{what} ({}) from the remote store", a.hash.short()))
}

/// Brings the inputs a remote hit upstream left in the remote into the local store.
/// One that cannot come down fails the stage; an object found corrupt or missing is
/// removed from the remote, so the stage that makes it is built here next time.
pub(in crate::exec) fn fetch_inputs(
    shared: &Shared,
    stage: &PlannedStage,
    remote: &Remote,
    inputs: &BTreeMap<String, Vec<Artifact>>,
) -> Result<()> {
    for (name, arts) in inputs {
        for a in arts {
            if let Check::Missing = shared.store.verify(a)? {
                download(shared, stage, remote, &format!("input `{name}`"), a).map_err(|e| {
                    anyhow!("{e:#}; run again, and the stage that makes it is built here")
                })?;
            }
        }
    }
    Ok(())
}

/// Gives the remote store what a stage built: its outputs, then its entry (create-only,
/// so a key is never published twice), signed unless it derives from an entry nobody
/// verified (`sign`). A stage with an output that must stay on this machine is not
/// shared at all. Failures are warnings: the result stands here.
fn share(shared: &Shared, stage: &PlannedStage, remote: &Remote, entry: &CacheEntry, sign: bool) {
    if let Some((name, why)) = stage.private_output() {
        shared.progress.message(
            &stage.name,
            &format!("not shared with the remote store: output `{name}` {why}"),
        );
        return;
    }
    if let Err(e) = publish(shared, stage, remote, entry, sign) {
        shared.progress.warn(&format!(
            "{}: not shared with the remote store: {e:#}",
            stage.name
        ));
    }
}

/// Uploads a built stage's outputs, then its entry (signed when `sign` holds and this
/// machine signs).
pub(in crate::exec) fn publish(
    shared: &Shared,
    stage: &PlannedStage,
    remote: &Remote,
    entry: &CacheEntry,
    sign: bool,
) -> Result<()> {
    let outputs: Vec<&Artifact> = entry.outputs.values().collect();
    upload(shared, stage, remote, "uploading outputs", &outputs)?;
    remote.publish_entry(entry, sign)?;
    Ok(())
}

/// Uploads artifacts of the local store that the remote lacks, showing progress.
pub(in crate::exec) fn upload(
    shared: &Shared,
    stage: &PlannedStage,
    remote: &Remote,
    what: &str,
    artifacts: &[&Artifact],
) -> Result<()> {
    let report = |msg: &str| shared.progress.message(&stage.name, msg);
    let total = artifacts.iter().map(|a| a.size).sum();
    let meter = Meter::new(what.into(), total, &report);
    for a in artifacts {
        remote.upload(&shared.store, a, &meter)?;
    }
    Ok(())
}
