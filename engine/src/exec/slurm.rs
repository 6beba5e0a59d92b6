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

use anyhow::{bail, Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A stage's Slurm job settings: `sbatch` options, and where the job's store is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    /// `--partition`: the partition (queue) to run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--account`: the account charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--time`: Slurm's own limit on the job, in its format (`30`, `4:00:00`,
    /// `1-00:00:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `--gpus`: GPUs for the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// `--cpus-per-task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// `--mem`: memory per node (`16G`, `4000M`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// `--qos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// Further `sbatch` options, each as written on its command line
    /// (`--constraint=a100`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
    /// For nodes that do not share the submitting machine's filesystem: the store the
    /// job uses on its node (`$VARIABLES` expand there, e.g. `$TMPDIR/soma-flow`). The
    /// job then gets its inputs from the remote store (`remote`, which this needs) and
    /// puts its outputs there. Without it, the job uses the submitter's store, which
    /// must be on a filesystem the nodes share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

impl SlurmSettings {
    /// These settings over `base`, key by key; `extra` options add to the base's.
    pub fn over(self, base: &SlurmSettings) -> SlurmSettings {
        let base = base.clone();
        SlurmSettings {
            partition: self.partition.or(base.partition),
            account: self.account.or(base.account),
            time: self.time.or(base.time),
            gpus: self.gpus.or(base.gpus),
            cpus: self.cpus.or(base.cpus),
            mem: self.mem.or(base.mem),
            qos: self.qos.or(base.qos),
            extra: base.extra.into_iter().chain(self.extra).collect(),
            store: self.store.or(base.store),
        }
    }

    /// The first setting `sbatch` would reject, and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let words = [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
        ];
        for (key, value) in words {
            if let Some(v) = value {
                if v.is_empty() || v.contains(char::is_whitespace) {
                    return Err((key, format!("{v:?} is not a Slurm name (one word)")));
                }
            }
        }
        if let Some(t) = &self.time {
            if !slurm_time(t) {
                return Err((
                    "time",
                    format!(
                        "{t:?} is not a Slurm time limit; e.g. `30` (minutes), `4:00:00`, \
                         `1-12:00:00` or `infinite`"
                    ),
                ));
            }
        }
        if let Some(m) = &self.mem {
            let digits = m.trim_end_matches(['K', 'M', 'G', 'T']);
            if digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || m.len() > digits.len() + 1
            {
                return Err((
                    "mem",
                    format!("{m:?} is not a Slurm memory size; e.g. `16G` or `4000M`"),
                ));
            }
        }
        for (key, n) in [("gpus", self.gpus), ("cpus", self.cpus)] {
            if n == Some(0) {
                return Err((key, "must be at least 1 (leave it out for none)".into()));
            }
        }
        if let Some(st) = &self.store {
            if st.is_empty() || st.contains(['"', '`', '\\', '\n']) {
                return Err((
                    "store",
                    format!("{st:?} is not a usable path (no quotes, backquotes or backslashes)"),
                ));
            }
        }
        if let Some(bad) = self.extra.iter().find(|o| !o.starts_with('-')) {
            return Err((
                "extra",
                format!("{bad:?} is not an sbatch option; each starts with `-`, e.g. `--constraint=a100`"),
            ));
        }
        Ok(())
    }

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

/// Slurm's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, or no limit.
fn slurm_time(t: &str) -> bool {
    if ["infinite", "unlimited"].contains(&t.to_ascii_lowercase().as_str()) {
        return true;
    }
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(number) && (1..=3).contains(&parts.len()) && parts.iter().all(|p| number(p))
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
    fn time_limits_as_slurm_reads_them() {
        for ok in [
            "30",
            "30:00",
            "4:00:00",
            "1-0",
            "1-12:00",
            "2-00:00:00",
            "infinite",
        ] {
            assert!(slurm_time(ok), "{ok}");
        }
        for bad in ["", "1h", "1:2:3:4", "-1", "a-1", "1-", "4:00:x"] {
            assert!(!slurm_time(bad), "{bad}");
        }
    }

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

    #[test]
    fn settings_sbatch_would_reject_are_named() {
        let bad = |s: SlurmSettings| s.check().unwrap_err().0;
        let mem = SlurmSettings {
            mem: Some("16GB".into()),
            ..Default::default()
        };
        assert_eq!(bad(mem), "mem");
        let extra = SlurmSettings {
            extra: vec!["constraint=a100".into()],
            ..Default::default()
        };
        assert_eq!(bad(extra), "extra");
        let partition = SlurmSettings {
            partition: Some("gpu a100".into()),
            ..Default::default()
        };
        assert_eq!(bad(partition), "partition");
        let ok = SlurmSettings {
            mem: Some("16G".into()),
            time: Some("1-00:00:00".into()),
            ..Default::default()
        };
        assert!(ok.check().is_ok());
    }
}
