//! The `stage-job` command: the job's side, building one stage in the job's store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

use super::{JobResult, JobSpec, RESULT_FILE};
use crate::diag::Source;
use crate::exec::shared::Shared;
use crate::exec::stage::build::{execute_in, Executed};
use crate::exec::stage::share::publish;
use crate::key::CacheKey;
use crate::kind::Registry;
use crate::pipeline::{self, BackendSetting, LoadOptions};
use crate::remote::{KeyScheme, Remote, Trust};
use crate::store::{self, Store};

/// The `stage-job` command: builds the stage a job file (`-`: standard input)
/// describes, in the job's store (the job file's, else `store`), puts its result where
/// the job file says, and says whether it was built (or deferred).
pub fn stage_job(
    registry: &Registry,
    backends: BackendSetting,
    keys: KeyScheme,
    job_file: &Path,
    store: Option<&Path>,
) -> Result<bool> {
    let from_stdin = job_file == Path::new("-");
    let read = || -> Result<JobSpec> {
        let bytes = if from_stdin {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
            b
        } else {
            std::fs::read(job_file)?
        };
        Ok(serde_json::from_slice(&bytes)?)
    };
    let spec = read().with_context(|| format!("cannot read job file {}", job_file.display()))?;
    // It signs what it publishes with this node's SOMA_FLOW_REMOTE_KEY, if it has one.
    let remote = match &spec.remote {
        Some(url) => Some(Arc::new(Remote::open_with(
            url,
            Trust::from_env(keys, None)?,
        )?)),
        None => None,
    };
    let (result, work) = match build(registry, backends, &spec, job_file, store, remote.clone()) {
        Ok((result, work)) => (result, Some(work)),
        Err(e) => (
            JobResult::Failed {
                message: format!("{e:#}"),
            },
            None,
        ),
    };
    let bytes = serde_json::to_vec(&result)?;
    match (&spec.remote_result, &remote) {
        (Some(name), Some(remote)) => remote.put_job_result(name, bytes)?,
        _ if !from_stdin => store::write_atomic(
            &job_file
                .parent()
                .context("the job file has no folder")?
                .join(RESULT_FILE),
            &bytes,
        )?,
        _ => bail!("the job file says nowhere to put its result"),
    }
    if let Some(Work::Own(dir)) = work {
        let _ = store::remove_any(&dir);
    }
    match &result {
        JobResult::Failed { message } => {
            eprintln!("error: {message}");
            Ok(false)
        }
        JobResult::Deferred { reason } => {
            eprintln!("deferred: {reason}");
            Ok(true)
        }
        JobResult::Built => Ok(true),
    }
}

/// The job's working directory: its job file's folder, or one of its own store's.
enum Work {
    Shared,
    Own(PathBuf),
}

fn build(
    registry: &Registry,
    backends: BackendSetting,
    spec: &JobSpec,
    job_file: &Path,
    store_arg: Option<&Path>,
    remote: Option<Arc<Remote>>,
) -> Result<(JobResult, Work)> {
    let opts = LoadOptions {
        registry,
        overrides: &spec.overrides,
        backend: Some(&spec.backend),
        backends,
    };
    let plan = pipeline::load(
        Source::new(&spec.pipeline, spec.pipeline_source.clone()),
        &opts,
    )
    .map_err(|e| anyhow!("{e}"))?;
    let index = plan
        .stages
        .get_index_of(&spec.stage)
        .with_context(|| format!("the pipeline has no stage `{}`", spec.stage))?;
    let key = CacheKey::compute(&plan.stages[index], &plan, &spec.inputs)?;
    if key.hash != spec.key {
        bail!(
            "stage `{}` has key {} here, not {} as submitted: this node sees other files, \
             or another soma-flow, than the machine that submitted it",
            spec.stage,
            &key.hash[..16],
            &spec.key[..16.min(spec.key.len())]
        );
    }
    let store_root = spec
        .store
        .as_deref()
        .or(store_arg)
        .context("the job names no store it shares, and none was given (--store)")?;
    let store = Store::open(store_root)?;
    let work = match (&spec.store, job_file.parent()) {
        (Some(_), Some(_)) if job_file != Path::new("-") => Work::Shared,
        _ => Work::Own(store.tmp_dir(&spec.key[..16.min(spec.key.len())])?),
    };
    let dir = match &work {
        Work::Shared => job_file.parent().expect("matched above").to_path_buf(),
        Work::Own(dir) => dir.clone(),
    };
    let shared = Shared::new(
        Arc::new(plan),
        store,
        spec.run_id.clone(),
        spec.overrides.clone(),
        remote.clone(),
        1,
        false,
    )?;
    let stage = &shared.plan.stages[index];
    let executed = execute_in(&shared, stage, &spec.key, &spec.inputs, &dir)?;
    let result = match executed {
        Executed::Deferred(reason) => JobResult::Deferred { reason },
        Executed::Built(entry, _) => {
            if let (Some(remote), Work::Own(_)) = (&remote, &work) {
                publish(&shared, stage, remote, &entry, !spec.unsigned)
                    .context("cannot put the outputs in the remote store")?;
            }
            JobResult::Built
        }
        Executed::Found(..) | Executed::BuiltElsewhere(_) => JobResult::Built,
    };
    Ok((result, work))
}
