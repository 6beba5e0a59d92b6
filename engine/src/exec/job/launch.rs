//! Launching a job and following it to its end: a process of its own, or a Slurm job.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use super::{JobResult, JobSpec, RESULT_FILE};
use crate::exec::shared::Shared;
use crate::exec::slurm::Seen;
use crate::pipeline::PlannedStage;

/// How a job's process or Slurm job ended, in words for the errors above.
pub(super) struct Ended {
    /// Cleanly (exit status 0, or Slurm's COMPLETED).
    pub ok: bool,
    pub what: String,
    /// Said after the job's own error message (its Slurm state and log).
    pub after_failure: String,
    pub log: JobLog,
}

/// Where a job's log is, read only when an error quotes it.
pub(super) enum JobLog {
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
    pub(super) fn tail(&self) -> String {
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
pub(super) fn run_process(
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
pub(super) fn run_slurm(
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

pub(super) fn read_result(work: &Path) -> Option<JobResult> {
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
