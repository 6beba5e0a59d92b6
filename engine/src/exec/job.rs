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

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::runner::{Executed, Unusable};
use super::slurm::Seen;
use super::Shared;
use crate::diag::Source;
use crate::key::CacheKey;
use crate::kind::Registry;
use crate::pipeline::{self, BackendSetting, LoadOptions, PlannedStage};
use crate::remote::{KeyScheme, Remote, Trust};
use crate::store::{self, Artifact, Store};

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
    let remote = match (own_store, &shared.remote) {
        (None, _) => None,
        (Some(_), Some(remote)) => Some(remote),
        (Some(_), None) => bail!(
            "its jobs have a store of their own (`slurm.store`), so they need a remote \
             store to get inputs from and put outputs in: name `remote` in the pipeline, \
             or give --remote"
        ),
    };
    if let (Some(_), Some((name, why))) = (remote, stage.private_output()) {
        bail!(
            "output `{name}` {why}, but a job with a store of its own (`slurm.store`) hands \
             its outputs over through the remote store; run this stage with `executor: local`"
        );
    }
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
        super::runner::upload(shared, stage, remote, "uploading inputs", &inputs)?;
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

/// How a job's process or Slurm job ended, in words for the errors above.
struct Ended {
    /// Cleanly (exit status 0, or Slurm's COMPLETED).
    ok: bool,
    what: String,
    /// Said after the job's own error message (its Slurm state and log).
    after_failure: String,
    log: JobLog,
}

/// Where a job's log is, read only when an error quotes it.
enum JobLog {
    /// Here: the error quotes its end.
    Here(PathBuf),
    /// On the job's node: the error says where.
    OnNode(String),
}

impl JobLog {
    fn place(&self) -> String {
        match self {
            JobLog::Here(path) => format!("its log: {}", path.display()),
            JobLog::OnNode(dir) => format!("its log is on its node, in {dir}/logs/"),
        }
    }

    /// For an error: the end of the log, or where it is.
    fn tail(&self) -> String {
        match self {
            JobLog::Here(path) => log_tail(path),
            JobLog::OnNode(_) => format!("; {}", self.place()),
        }
    }
}

fn timed_out(stage: &PlannedStage, what: &str) -> anyhow::Error {
    let t = stage.execution.timeout.unwrap_or_default();
    anyhow!(
        "timed out after {}; {what}",
        humantime::format_duration(Duration::from_secs(t.as_secs().max(1)))
    )
}

/// A child process in a group of its own: its standard error goes to the stage's job
/// log, its progress lines to the run's progress.
fn run_process(
    shared: &Shared,
    stage: &PlannedStage,
    job_file: &Path,
    device: Option<usize>,
    log: PathBuf,
) -> Result<Ended> {
    let deadline = stage.execution.timeout.map(|t| Instant::now() + t);
    let program = std::env::current_exe().context("cannot find the soma-flow program")?;
    let mut cmd = Command::new(&program);
    cmd.arg("stage-job")
        .arg(job_file)
        .current_dir(job_file.parent().expect("in the working directory"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&log)?))
        .stderr(Stdio::piped());
    if let Some(d) = device {
        cmd.env("CUDA_VISIBLE_DEVICES", d.to_string());
        shared.progress.message(&stage.name, &format!("on GPU {d}"));
    }
    let mut p = crate::process::spawn(&mut cmd)
        .with_context(|| format!("cannot start {}", program.display()))?;
    let stderr = p.child.stderr.take().expect("piped");
    let forward = forward_lines(stderr, &log, &stage.name, shared);
    let status = p.wait_until(deadline)?;
    let _ = forward.join();
    let Some(status) = status else {
        return Err(timed_out(stage, "its process group was killed"));
    };
    Ok(Ended {
        ok: status.success(),
        what: format!("its process ended ({status})"),
        after_failure: String::new(),
        log: JobLog::Here(log),
    })
}

/// A Slurm job, followed until it ends; cancelled once it has run for the stage's
/// `timeout`.
fn run_slurm(
    shared: &Shared,
    stage: &PlannedStage,
    spec: &JobSpec,
    job_file: &Path,
    log: JobLog,
) -> Result<Ended> {
    let program = std::env::current_exe().context("cannot find the soma-flow program")?;
    let program = shell_quote(&program.to_string_lossy());
    let script = job_file.with_file_name("job.sh");
    let header = format!(
        "#!/bin/sh\n# soma-flow: stage `{}` of {}\n",
        stage.name,
        spec.pipeline.display()
    );
    let body = match &log {
        // The node's own store; the job file comes with the script, on one line.
        JobLog::OnNode(store) => format!(
            "store=\"{store}\"\nmkdir -p \"$store/logs\"\n\
             exec >\"$store/logs/{stage}-$SLURM_JOB_ID.log\" 2>&1\n\
             exec {program} stage-job --store \"$store\" - <<'SOMA_FLOW_JOB'\n{}\nSOMA_FLOW_JOB\n",
            serde_json::to_string(spec)?,
            stage = stage.name,
        ),
        JobLog::Here(_) => format!(
            "exec {program} stage-job {}\n",
            shell_quote(&job_file.to_string_lossy())
        ),
    };
    // A job on its node writes its log there (the script redirects it).
    let output = match &log {
        JobLog::OnNode(_) => Path::new("/dev/null"),
        JobLog::Here(path) => path.as_path(),
    };
    std::fs::write(&script, header + &body)?;
    let id = shared.slurm.submit(
        &stage.name,
        &stage.execution.slurm,
        &script,
        output,
        shared.remote.is_some(),
    )?;
    let report = |msg: &str| shared.progress.message(&stage.name, msg);
    report(&format!("Slurm job {id} submitted"));
    let on_change = |seen: &Seen| match seen {
        Seen::Queued { state } | Seen::Ended { state, .. } => {
            report(&format!("Slurm job {id}: {state}"))
        }
        Seen::Submitted | Seen::Gone => {}
    };
    let Some(seen) = shared.slurm.wait(&id, stage.execution.timeout, &on_change) else {
        shared.slurm.cancel(std::slice::from_ref(&id));
        return Err(timed_out(stage, &format!("Slurm job {id} was cancelled")));
    };
    let (ok, ended) = match &seen {
        Seen::Ended { state, reason } if reason != "None" && !reason.is_empty() => {
            (state == "COMPLETED", format!("ended {state} ({reason})"))
        }
        Seen::Ended { state, .. } => (state == "COMPLETED", format!("ended {state}")),
        // Gone before it was seen ending: its result says how it went.
        _ => (true, "left the queue".into()),
    };
    Ok(Ended {
        ok,
        what: format!("Slurm job {id} {ended}"),
        after_failure: format!("\n(Slurm job {id} {ended}; {})", log.place()),
        log,
    })
}

/// The entry a job stored for `key` in this store, with every output present.
fn built_here(store: &Store, stage: &PlannedStage, key: &str) -> Result<Executed> {
    match super::runner::intact_entry(store, stage, key) {
        Ok(Some(entry)) => Ok(Executed::Built(entry, None)),
        Ok(None) => bail!("the job said it built the stage, but stored no result"),
        Err(Unusable::Entry(why)) => bail!("the job's result cannot be used: {why}"),
        Err(Unusable::Output(what)) => bail!("the job's output {what}"),
    }
}

/// The entry a job with a store of its own put in the remote store, with every output.
fn built_there(remote: &Remote, stage: &PlannedStage, key: &str) -> Result<Executed> {
    let found = super::runner::remote_entry(remote, stage, key)
        .context("the job's result in the remote store")?
        .ok_or_else(|| {
            anyhow!("the job said it built the stage, but the remote store has no entry for it")
        })?;
    Ok(Executed::BuiltElsewhere(found.entry))
}

/// Copies a job's stderr into its log, and passes its progress lines on.
fn forward_lines(
    from: impl std::io::Read + Send + 'static,
    log: &Path,
    stage: &str,
    shared: &Shared,
) -> std::thread::JoinHandle<()> {
    let log = std::fs::OpenOptions::new().append(true).open(log);
    let prefix = format!("      {stage}: ");
    let stage = stage.to_string();
    let progress = Arc::clone(&shared.progress);
    std::thread::spawn(move || {
        let mut log = log.ok();
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if let Some(f) = log.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            if let Some(msg) = line.strip_prefix(&prefix) {
                progress.message(&stage, msg);
            }
        }
    })
}

fn read_result(work: &Path) -> Option<JobResult> {
    let bytes = std::fs::read(work.join(RESULT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The last lines of a log, to put under an error.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return format!("; its log ({}) is empty", log.display());
    }
    let tail = &lines[lines.len().saturating_sub(15)..];
    format!(
        "; the end of its log ({}):\n{}",
        log.display(),
        tail.iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

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
    let executed = super::runner::execute_in(&shared, stage, &spec.key, &spec.inputs, &dir)?;
    let result = match executed {
        Executed::Deferred(reason) => JobResult::Deferred { reason },
        Executed::Built(entry, _) => {
            if let (Some(remote), Work::Own(_)) = (&remote, &work) {
                super::runner::publish(&shared, stage, remote, &entry, !spec.unsigned)
                    .context("cannot put the outputs in the remote store")?;
            }
            JobResult::Built
        }
        Executed::Found(..) | Executed::BuiltElsewhere(_) => JobResult::Built,
    };
    Ok((result, work))
}
