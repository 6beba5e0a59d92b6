//! `soma-flow verify`: repeats a recorded run from nothing in a scratch store and
//! compares each stage's outputs with the recorded ones by content hash, so that
//! reproducibility is shown rather than claimed.

use std::fmt;

use crate::pipeline::Plan;
use crate::record::{RunRecord, StageStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every output has the recorded hash.
    Identical,
    /// These outputs differ from the recorded ones.
    Differs(Vec<String>),
    /// The kind's outputs are not a function of its inputs (see
    /// [`crate::StageKind::irreproducible`]).
    NotComparable(&'static str),
    /// The recorded run or the repeat has no outputs for the stage.
    Missing(String),
}

impl Verdict {
    /// Whether this verdict disproves reproducibility.
    pub fn is_failure(&self) -> bool {
        matches!(self, Verdict::Differs(_) | Verdict::Missing(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Identical => f.write_str("identical"),
            Verdict::Differs(outputs) => write!(f, "DIFFERS: {}", outputs.join(", ")),
            Verdict::NotComparable(why) => write!(f, "not compared: {why}"),
            Verdict::Missing(why) => write!(f, "MISSING: {why}"),
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
        let verdict = match (stage.prepared.irreproducible(), repeat.stages.get(name)) {
            (Some(why), _) => Verdict::NotComparable(why),
            (None, Some(after)) if produced(after.status) => {
                let differs: Vec<String> = before
                    .outputs
                    .iter()
                    .filter(|(output, a)| after.outputs.get(*output) != Some(*a))
                    .map(|(output, _)| output.clone())
                    .collect();
                if differs.is_empty() {
                    Verdict::Identical
                } else {
                    Verdict::Differs(differs)
                }
            }
            (None, after) => Verdict::Missing(match after {
                Some(s) => format!(
                    "the repeat {}{}",
                    s.status.label(),
                    s.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                None => "the repeat has no such stage".into(),
            }),
        };
        out.push((name.clone(), verdict));
    }
    out
}
