//! `soma-flow verify`: repeats a recorded run from nothing in a scratch store and
//! compares each stage's outputs with the recorded ones by content hash, so that
//! reproducibility is shown rather than claimed.

use std::fmt;

use crate::pipeline::Plan;
use crate::record::{RunRecord, StageStatus};

/// How one stage of the repeat compares with the recorded run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Outputs with the recorded hash.
    pub identical: Vec<String>,
    /// Outputs whose hash differs from the recorded one.
    pub differs: Vec<String>,
    /// Outputs the kind declares irreproducible, with its reason
    /// ([`crate::StageKind::irreproducible`]).
    pub not_compared: Vec<(String, &'static str)>,
    /// Why the repeat has nothing to compare (it failed, deferred or was skipped).
    pub missing: Option<String>,
}

impl Verdict {
    /// Whether this stage disproves reproducibility.
    pub fn is_failure(&self) -> bool {
        self.missing.is_some() || !self.differs.is_empty()
    }

    /// Every compared output is identical, and there was at least one.
    pub fn is_identical(&self) -> bool {
        !self.is_failure() && !self.identical.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not_compared = || {
            self.not_compared
                .iter()
                .map(|(output, why)| format!("{output}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if let Some(why) = &self.missing {
            write!(f, "MISSING: {why}")
        } else if !self.differs.is_empty() {
            write!(f, "DIFFERS: {}", self.differs.join(", "))
        } else if self.identical.is_empty() {
            write!(f, "not compared ({})", not_compared())
        } else if self.not_compared.is_empty() {
            f.write_str("identical")
        } else {
            write!(f, "identical (not compared: {})", not_compared())
        }
    }
}

fn produced(status: StageStatus) -> bool {
    matches!(status, StageStatus::Ran | StageStatus::Hit)
}

/// Per stage of `plan`, how the `repeat` compares with the `original` record.
/// Stages the original run did not complete are left out: there is nothing to
/// compare them with.
pub fn compare(plan: &Plan, original: &RunRecord, repeat: &RunRecord) -> Vec<(String, Verdict)> {
    let mut out = Vec::new();
    for (name, stage) in &plan.stages {
        let Some(before) = original.stages.get(name).filter(|s| produced(s.status)) else {
            continue;
        };
        let mut verdict = Verdict::default();
        let mut compared = Vec::new();
        for (output, artifact) in &before.outputs {
            match stage.prepared.irreproducible(output) {
                Some(why) => verdict.not_compared.push((output.clone(), why)),
                None => compared.push((output, artifact)),
            }
        }
        if !compared.is_empty() {
            match repeat.stages.get(name).filter(|s| produced(s.status)) {
                Some(after) => {
                    for (output, artifact) in compared {
                        match after.outputs.get(output) == Some(artifact) {
                            true => verdict.identical.push(output.clone()),
                            false => verdict.differs.push(output.clone()),
                        }
                    }
                }
                None => {
                    verdict.missing = Some(match repeat.stages.get(name) {
                        Some(s) => format!(
                            "the repeat {}{}",
                            s.status.label(),
                            s.message
                                .as_deref()
                                .map(|m| format!(": {m}"))
                                .unwrap_or_default()
                        ),
                        None => "the repeat has no such stage".into(),
                    })
                }
            }
        }
        out.push((name.clone(), verdict));
    }
    out
}
