//! A stage executed outside the soma-flow process that schedules it: in a process of its
//! own on this machine (a stage with a `timeout` or a `gpu` device), or as a Slurm job.
//! Either way the program runs itself with the hidden `stage-job` command for exactly
//! one stage and key, described by a job file in the stage's working directory; it
//! builds the stage into the same store and writes its result file beside the job file.
//!
//! The scheduling process holds the key's lock meanwhile; the job takes none.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::slurm::Seen;
use super::Shared;
use crate::diag::Source;
use crate::key::CacheKey;
use crate::kind::Registry;
use crate::pipeline::{self, BackendSetting, LoadOptions, PlannedStage};
use crate::remote::Remote;
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
    store: PathBuf,
    remote: Option<String>,
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

/// Runs `stage` elsewhere in `work` (a fresh working directory in the store) and says
/// how it ended; a job that dies, times out or is cancelled without a result is an
/// error with the end of its log.
pub(super) fn run_elsewhere(
    shared: &Shared,
    stage: &PlannedStage,
    key: &str,
    inputs: &BTreeMap<String, Vec<Artifact>>,
    work: &Path,
    how: &Elsewhere,
) -> Result<JobResult> {
    let spec = JobSpec {
        pipeline: std::path::absolute(&shared.plan.source.path)?,
        pipeline_source: shared.plan.source.text.clone(),
        overrides: shared.overrides.clone(),
        backend: shared.plan.backend.clone(),
        stage: stage.name.clone(),
        key: key.to_string(),
        inputs: inputs.clone(),
        run_id: shared.run_id.clone(),
        store: std::path::absolute(shared.store.root())?,
        remote: shared.remote.as_ref().map(|r| r.url().to_string()),
    };
    let job_file = work.join(JOB_FILE);
    store::write_atomic(&job_file, &serde_json::to_vec_pretty(&spec)?)?;
    let program = std::env::current_exe().context("cannot find the soma-flow program")?;
    let deadline = stage.execution.timeout.map(|t| Instant::now() + t);
    let log_dir = shared.store.logs_dir(&shared.run_id);
    std::fs::create_dir_all(&log_dir)?;
    let report = |msg: &str| shared.progress.message(&stage.name, msg);
    let timed_out = |what: &str| {
        let t = stage.execution.timeout.unwrap_or_default();
        anyhow!(
            "timed out after {}; {what}",
            humantime::format_duration(Duration::from_secs(t.as_secs().max(1)))
        )
    };
    match how {
        Elsewhere::Process { device } => {
            let log = log_dir.join(format!("{}.job.log", stage.name));
            let mut cmd = Command::new(&program);
            cmd.arg("stage-job")
                .arg(&job_file)
                .current_dir(work)
                .stdin(Stdio::null())
                .stdout(Stdio::from(std::fs::File::create(&log)?))
                .stderr(Stdio::piped());
            if let Some(d) = device {
                cmd.env("CUDA_VISIBLE_DEVICES", d.to_string());
                report(&format!("on GPU {d}"));
            }
            let mut p = crate::process::spawn(&mut cmd)
                .with_context(|| format!("cannot start {}", program.display()))?;
            let stderr = p.child.stderr.take().expect("piped");
            let forward = forward_lines(stderr, &log, &stage.name, shared);
            let status = p.wait_until(deadline)?;
            let _ = forward.join();
            let Some(status) = status else {
                return Err(timed_out("its process group was killed"));
            };
            read_result(work).ok_or_else(|| {
                anyhow!(
                    "its process ended ({status}) without a result{}",
                    log_tail(&log)
                )
            })
        }
        Elsewhere::Slurm => {
            let log = log_dir.join(format!("{}.slurm.log", stage.name));
            let script = work.join("job.sh");
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\n# soma-flow: stage `{}` of {}\nexec {} stage-job {}\n",
                    stage.name,
                    spec.pipeline.display(),
                    shell_quote(&program.to_string_lossy()),
                    shell_quote(&job_file.to_string_lossy()),
                ),
            )?;
            let id = shared
                .slurm
                .submit(&stage.name, &stage.execution.slurm, &script, &log)?;
            report(&format!("Slurm job {id} submitted"));
            let on_change = |seen: &Seen| match seen {
                Seen::Queued { state } => report(&format!("Slurm job {id}: {state}")),
                Seen::Ended { state, .. } => report(&format!("Slurm job {id}: {state}")),
                Seen::Submitted | Seen::Gone => {}
            };
            let Some(seen) = shared.slurm.wait(&id, deadline, &on_change) else {
                shared.slurm.cancel(std::slice::from_ref(&id));
                return Err(timed_out(&format!("Slurm job {id} was cancelled")));
            };
            let ended = match &seen {
                Seen::Ended { state, reason } if reason != "None" && !reason.is_empty() => {
                    format!("ended {state} ({reason})")
                }
                Seen::Ended { state, .. } => format!("ended {state}"),
                _ => "left the queue".into(),
            };
            match read_result(work) {
                Some(JobResult::Failed { message }) => {
                    bail!(
                        "{message}\n(Slurm job {id} {ended}; its log: {})",
                        log.display()
                    )
                }
                Some(done) if !matches!(&seen, Seen::Ended { state, .. } if state != "COMPLETED") => {
                    Ok(done)
                }
                _ => bail!("Slurm job {id} {ended} without a result{}", log_tail(&log)),
            }
        }
    }
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

/// The `stage-job` command: builds the stage a job file describes, writes the result
/// file beside it, and says whether it was built (or deferred).
pub fn stage_job(registry: &Registry, backends: BackendSetting, job_file: &Path) -> Result<bool> {
    let work = job_file
        .parent()
        .context("the job file has no folder")?
        .to_path_buf();
    let result = build(registry, backends, job_file, &work).unwrap_or_else(|e| JobResult::Failed {
        message: format!("{e:#}"),
    });
    store::write_atomic(&work.join(RESULT_FILE), &serde_json::to_vec(&result)?)?;
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

fn build(
    registry: &Registry,
    backends: BackendSetting,
    job_file: &Path,
    work: &Path,
) -> Result<JobResult> {
    let spec: JobSpec = serde_json::from_slice(
        &std::fs::read(job_file).with_context(|| format!("cannot read {}", job_file.display()))?,
    )
    .with_context(|| format!("{} is not a job file", job_file.display()))?;
    let opts = LoadOptions {
        registry,
        overrides: &spec.overrides,
        backend: Some(&spec.backend),
        backends,
    };
    let plan = pipeline::load(Source::new(&spec.pipeline, spec.pipeline_source), &opts)
        .map_err(|e| anyhow!("{e}"))?;
    let stage = plan
        .stages
        .get(&spec.stage)
        .with_context(|| format!("the pipeline has no stage `{}`", spec.stage))?;
    let key = CacheKey::compute(stage, &plan, &spec.inputs)?;
    if key.hash != spec.key {
        bail!(
            "stage `{}` has key {} here, not {} as submitted: this node sees other files, \
             or another soma-flow, than the machine that submitted it",
            spec.stage,
            &key.hash[..16],
            &spec.key[..16.min(spec.key.len())]
        );
    }
    let remote = match &spec.remote {
        Some(url) => Some(Arc::new(Remote::open(url)?)),
        None => None,
    };
    let index = plan.stages.get_index_of(&spec.stage).expect("found above");
    let shared = Shared::new(
        Arc::new(plan),
        Store::open(&spec.store)?,
        spec.run_id,
        spec.overrides,
        remote,
        1,
        false,
    )?;
    let stage = &shared.plan.stages[index];
    Ok(
        match super::runner::execute_in(&shared, stage, &spec.key, &spec.inputs, work)? {
            super::runner::Executed::Deferred(reason) => JobResult::Deferred { reason },
            _ => JobResult::Built,
        },
    )
}
