//! The Slurm executor: a stage becomes one `sbatch` job that runs this program for
//! exactly that stage and key (the hidden `stage-job` command, [`super::job`]), with the
//! store on a filesystem the cluster's nodes share. One `squeue` call per interval
//! follows every job of the run; an interrupt or a timeout cancels them (`scancel`).
//!
//! Without accounting (`sacct`), a job's end is read from `squeue`, which lists a
//! finished job for `MinJobAge` (300 s by default); a job gone from the queue before it
//! was seen ending is judged by the result file its soma-flow wrote, or its absence.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

use crate::pipeline::SlurmSettings;
use anyhow::{bail, Context, Result};

impl SlurmSettings {
    fn sbatch_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut opt = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(format!("--{flag}={v}"));
            }
        };
        opt("partition", self.partition.clone());
        opt("account", self.account.clone());
        opt("time", self.time.clone());
        opt("gpus", self.gpus.map(|n| n.to_string()));
        opt("cpus-per-task", self.cpus.map(|n| n.to_string()));
        opt("mem", self.mem.clone());
        opt("qos", self.qos.clone());
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// What `squeue` last said of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seen {
    /// Submitted, not yet listed.
    Submitted,
    /// Pending, running, completing, suspended, requeued…
    Queued { state: String },
    /// A final state (COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL,
    /// OUT_OF_MEMORY…), with Slurm's reason.
    Ended { state: String, reason: String },
    /// No longer listed (older than `MinJobAge`).
    Gone,
}

impl Seen {
    fn is_final(&self) -> bool {
        matches!(self, Seen::Ended { .. } | Seen::Gone)
    }
}

const FINAL_STATES: [&str; 10] = [
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "PREEMPTED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "SPECIAL_EXIT",
];

/// The run's Slurm jobs, followed by one poller thread.
pub(super) struct Slurm {
    poll: Duration,
    jobs: Mutex<BTreeMap<String, Seen>>,
    changed: Condvar,
    poller: Once,
}

impl Slurm {
    /// Polls every `SOMA_FLOW_SLURM_POLL` (default 5s) once jobs are submitted.
    pub(super) fn new() -> Result<Arc<Slurm>> {
        let poll = crate::duration::from_env("SOMA_FLOW_SLURM_POLL", Duration::from_secs(5))
            .map_err(anyhow::Error::msg)?;
        Ok(Arc::new(Slurm {
            poll,
            jobs: Mutex::new(BTreeMap::new()),
            changed: Condvar::new(),
            poller: Once::new(),
        }))
    }

    /// Submits `script` as a job named after `stage`, with its output in `log`;
    /// returns its id. The job gets this process's environment (sbatch's default)
    /// without its secrets (signing keys, tokens), which would otherwise rest in the
    /// cluster's job records; with `remote_store`, the cloud stores' settings and
    /// credentials stay, for the job to reach the remote store.
    pub(super) fn submit(
        self: &Arc<Self>,
        stage: &str,
        settings: &SlurmSettings,
        script: &Path,
        log: &Path,
        remote_store: bool,
    ) -> Result<String> {
        let mut cmd = Command::new("sbatch");
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if crate::command::is_secret_name(&name)
                && !(remote_store && crate::remote::is_store_setting(&name))
            {
                cmd.env_remove(name.as_ref());
            }
        }
        cmd.arg("--parsable")
            .arg(format!("--job-name=soma-flow:{stage}"))
            .arg(format!("--output={}", log.display()))
            .arg(format!("--chdir={}", std::env::temp_dir().display()))
            .args(settings.sbatch_args())
            .arg(script);
        let out = cmd
            .output()
            .context("cannot run `sbatch`: is Slurm installed here, and on PATH?")?;
        if !out.status.success() {
            bail!(
                "sbatch refused the job: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        // `--parsable` prints `id` or `id;cluster`.
        let id = stdout.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            bail!("sbatch gave no job id (it said {:?})", stdout.trim());
        }
        self.jobs_lock().insert(id.clone(), Seen::Submitted);
        self.start_poller();
        Ok(id)
    }

    fn jobs_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Seen>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_poller(self: &Arc<Self>) {
        self.poller.call_once(|| {
            // The thread holds a weak reference: it ends with the run.
            let weak = Arc::downgrade(self);
            let poll = self.poll;
            std::thread::spawn(move || loop {
                std::thread::sleep(poll);
                let Some(slurm) = weak.upgrade() else { return };
                slurm.poll_once();
            });
        });
    }

    /// The jobs not yet seen ending.
    fn live(&self) -> Vec<String> {
        self.jobs_lock()
            .iter()
            .filter(|(_, s)| !s.is_final())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// One `squeue` call for every job not yet seen ending.
    fn poll_once(&self) {
        let ids = self.live();
        if ids.is_empty() {
            return;
        }
        let listed = match squeue(&ids) {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!("squeue failed ({e:#}); trying again");
                return;
            }
        };
        let mut jobs = self.jobs_lock();
        for id in ids {
            let seen = match listed.get(&id) {
                Some((state, reason)) if FINAL_STATES.contains(&state.as_str()) => Seen::Ended {
                    state: state.clone(),
                    reason: reason.clone(),
                },
                Some((state, _)) => Seen::Queued {
                    state: state.clone(),
                },
                None => Seen::Gone,
            };
            jobs.insert(id, seen);
        }
        drop(jobs);
        self.changed.notify_all();
    }

    /// Waits until job `id` ends, or (then `None`) has run for `timeout`, counted from
    /// when it was first seen running (time in the queue does not count), telling
    /// `on_change` each new state.
    pub(super) fn wait(
        &self,
        id: &str,
        timeout: Option<Duration>,
        on_change: &dyn Fn(&Seen),
    ) -> Option<Seen> {
        let mut last = Seen::Submitted;
        let mut deadline = None;
        let mut jobs = self.jobs_lock();
        loop {
            let seen = jobs.get(id).cloned().unwrap_or(Seen::Gone);
            if seen != last {
                on_change(&seen);
                last = seen.clone();
            }
            if seen.is_final() {
                return Some(seen);
            }
            // Running (or suspended, completing): past the queue.
            if deadline.is_none() && matches!(&seen, Seen::Queued { state } if state != "PENDING") {
                deadline = timeout.map(|t| Instant::now() + t);
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(self.poll),
                    _ => return None,
                },
                None => self.poll,
            };
            jobs = self
                .changed
                .wait_timeout(jobs, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Cancels `ids` (`scancel`); a failure is a warning.
    pub(super) fn cancel(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        match Command::new("scancel").args(ids).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => tracing::warn!(
                "scancel {}: {}",
                ids.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => tracing::warn!("cannot run scancel: {e}"),
        }
    }

    /// Cancels every job of the run not yet seen ending; returns their ids.
    pub(super) fn cancel_all(&self) -> Vec<String> {
        let ids = self.live();
        self.cancel(&ids);
        ids
    }
}

/// `squeue`'s listing of `ids`: state and reason by id. A finished job is listed for
/// `MinJobAge`; when none of `ids` is known any more, squeue fails with "Invalid job id",
/// which is an empty listing.
fn squeue(ids: &[String]) -> Result<BTreeMap<String, (String, String)>> {
    let out = Command::new("squeue")
        .args(["--noheader", "--states=all", "--format=%i|%T|%r", "--jobs"])
        .arg(ids.join(","))
        .output()
        .context("cannot run `squeue`")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        bail!("squeue: {}", stderr.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut f = line.trim().splitn(3, '|');
            let id = f.next()?.to_string();
            let state = f.next()?.trim_end_matches('+').to_string();
            let reason = f.next().unwrap_or("").to_string();
            Some((id, (state, reason)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_overrides_the_pipeline_key_by_key() {
        let base = SlurmSettings {
            partition: Some("cpu".into()),
            account: Some("lab".into()),
            extra: vec!["--exclusive".into()],
            ..Default::default()
        };
        let own = SlurmSettings {
            partition: Some("gpu".into()),
            gpus: Some(1),
            extra: vec!["--constraint=a100".into()],
            ..Default::default()
        };
        assert_eq!(
            own.over(&base).sbatch_args(),
            [
                "--partition=gpu",
                "--account=lab",
                "--gpus=1",
                "--exclusive",
                "--constraint=a100"
            ]
        );
    }
}
