//! `slurm:` settings as a pipeline writes them (for the pipeline and for each stage),
//! checked as `sbatch` would check them; the Slurm executor (`exec/slurm.rs`) turns
//! them into `sbatch` options.

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
