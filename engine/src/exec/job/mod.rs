//! A stage executed outside the soma-flow process that schedules it: in a process of its
//! own on this machine (a stage with a `timeout` or a `gpu` device), or as a Slurm job.
//! Either way the program runs itself with the hidden `stage-job` command for exactly
//! one stage and key, described by a job file.
//!
//! - With the store on a filesystem the job's machine shares, the job file lies in the
//!   stage's working directory; the job builds the stage into the same store and writes
//!   its result file beside the job file.
//! - A Slurm job with a store of its own (`slurm.store`, for nodes without the shared
//!   filesystem) gets its job file on its standard input, its inputs from the remote
//!   store (the submitter uploads them first), and puts its outputs, cache entry and
//!   result there.
//!
//! The scheduling process holds the key's lock (and remote lease) meanwhile; the job
//! takes none. The program is this process's own executable, which must route
//! `stage-job` to [`stage_job`]: every binary built on [`crate::app::Command`] does.

mod launch;
mod stage_job;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::shared::Shared;
use super::stage::build::Executed;
use super::stage::lookup::{intact_entry, remote_entry, Unusable};
use super::stage::share::upload;
use crate::pipeline::PlannedStage;
use crate::remote::Remote;
use crate::store::{self, Artifact, Store};
use launch::{read_result, run_process, run_slurm, JobLog};
pub use stage_job::stage_job;

const JOB_FILE: &str = "job.json";
const RESULT_FILE: &str = "result.json";

/// What a job builds: the plan it comes from (the pipeline's text as the run read it,
/// so later edits change nothing), the stage, its key and its inputs.
#[derive(Debug, Serialize, Deserialize)]
struct JobSpec {
    pipeline: PathBuf,
    pipeline_source: String,
    overrides: Vec<String>,
    backend: String,
    stage: String,
    key: String,
    inputs: BTreeMap<String, Vec<Artifact>>,
    run_id: String,
    /// The store, where the job's machine shares it; `None`: the job has one of its own
    /// (`stage-job --store`).
    store: Option<PathBuf>,
    remote: Option<String>,
    /// Where the job puts its result: its job file's folder (`None`), or the remote
    /// store under this name.
    remote_result: Option<String>,
    /// Its inputs derive from a remote entry nobody verified: its own entry is not
    /// signed.
    #[serde(default)]
    unsigned: bool,
}

/// How a job ended, as it writes it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub(super) enum JobResult {
    /// Built and stored under its key (the cache entry is the result).
    Built,
    Deferred {
        reason: String,
    },
    Failed {
        message: String,
    },
}

/// Where a stage runs when not in this process.
pub(super) enum Elsewhere {
    /// A child process in a group of its own, with its GPU if it holds one.
    Process {
        device: Option<usize>,
    },
    Slurm,
}

/// Runs `stage` elsewhere, with `work` (a fresh working directory in the store) as its
/// working directory where the job shares this filesystem, and says how it ended; a
/// job that dies, times out or is cancelled without a result is an error with the end
/// of its log.
pub(super) fn run_elsewhere(
    shared: &Shared,
    stage: &PlannedStage,
    key: &str,
    inputs: &BTreeMap<String, Vec<Artifact>>,
    work: &Path,
    how: &Elsewhere,
    sign: bool,
) -> Result<Executed> {
    let own_store = match how {
        Elsewhere::Slurm => stage.execution.slurm.store.as_deref(),
        Elsewhere::Process { .. } => None,
    };
    let remote = match own_store {
        Some(_) => Some(handover(shared, stage)?),
        None => None,
    };
    let spec = JobSpec {
        pipeline: std::path::absolute(&shared.plan.source.path)?,
        pipeline_source: shared.plan.source.text.clone(),
        overrides: shared.overrides.clone(),
        backend: shared.plan.backend.clone(),
        stage: stage.name.clone(),
        key: key.to_string(),
        inputs: inputs.clone(),
        run_id: shared.run_id.clone(),
        store: match remote {
            None => Some(std::path::absolute(shared.store.root())?),
            Some(_) => None,
        },
        remote: shared.remote.as_ref().map(|r| r.url().to_string()),
        // One name per try: a cancelled try's late result is never taken for the next's.
        remote_result: remote.map(|_| {
            let attempt = work.file_name().map(|n| n.to_string_lossy().into_owned());
            format!("{}-{}", shared.run_id, attempt.unwrap_or_default())
        }),
        unsigned: !sign,
    };
    if let Some(remote) = remote {
        let inputs: Vec<&Artifact> = inputs.values().flatten().collect();
        upload(shared, stage, remote, "uploading inputs", &inputs)?;
    }
    let job_file = work.join(JOB_FILE);
    store::write_atomic(&job_file, &serde_json::to_vec_pretty(&spec)?)?;
    let log_dir = shared.store.logs_dir(&shared.run_id);
    std::fs::create_dir_all(&log_dir)?;
    let ended = match how {
        Elsewhere::Process { device } => {
            let log = log_dir.join(format!("{}.job.log", stage.name));
            run_process(shared, stage, &job_file, *device, log)?
        }
        Elsewhere::Slurm => {
            let log = match own_store {
                Some(store) => JobLog::OnNode(store.to_string()),
                None => JobLog::Here(log_dir.join(format!("{}.slurm.log", stage.name))),
            };
            run_slurm(shared, stage, &spec, &job_file, log)?
        }
    };
    let result = match (&spec.remote_result, remote) {
        (Some(name), Some(remote)) => remote
            .take_job_result(name)?
            .and_then(|b| serde_json::from_slice(&b).ok()),
        _ => read_result(work),
    };
    match result {
        Some(JobResult::Failed { message }) => bail!("{message}{}", ended.after_failure),
        Some(JobResult::Deferred { reason }) if ended.ok => Ok(Executed::Deferred(reason)),
        Some(JobResult::Built) if ended.ok => match remote {
            None => built_here(&shared.store, stage, key),
            Some(remote) => built_there(remote, stage, key),
        },
        _ => bail!("{} without a result{}", ended.what, ended.log.tail()),
    }
}

/// The remote store through which a job with a store of its own (`slurm.store`) gets
/// its inputs and hands its outputs over: the run's, which it needs, and which must be
/// allowed to hold every output.
fn handover<'a>(shared: &'a Shared, stage: &PlannedStage) -> Result<&'a Arc<Remote>> {
    let Some(remote) = &shared.remote else {
        bail!(
            "its jobs have a store of their own (`slurm.store`), so they need a remote \
             store to get inputs from and put outputs in: name `remote` in the pipeline, \
             or give --remote"
        );
    };
    if let Some((name, why)) = stage.private_output() {
        bail!(
            "output `{name}` {why}, but a job with a store of its own (`slurm.store`) hands \
             its outputs over through the remote store; run this stage with `executor: local`"
        );
    }
    Ok(remote)
}

/// The entry a job stored for `key` in this store, with every output present.
fn built_here(store: &Store, stage: &PlannedStage, key: &str) -> Result<Executed> {
    match intact_entry(store, stage, key) {
        Ok(Some(entry)) => Ok(Executed::Built(entry, None)),
        Ok(None) => bail!("the job said it built the stage, but stored no result"),
        Err(Unusable::Entry(why)) => bail!("the job's result cannot be used: {why}"),
        Err(Unusable::Output(what)) => bail!("the job's output {what}"),
    }
}

/// The entry a job with a store of its own put in the remote store, with every output.
fn built_there(remote: &Remote, stage: &PlannedStage, key: &str) -> Result<Executed> {
    let found = remote_entry(remote, stage, key)
        .context("the job's result in the remote store")?
        .ok_or_else(|| {
            anyhow!("the job said it built the stage, but the remote store has no entry for it")
        })?;
    Ok(Executed::BuiltElsewhere(found.entry))
}
