//! The outputs of `gaps`: per filled target, my model's on-chain loss beside the
//! winner's (`table`), and what they add up to (`summary`).

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One filled target, scored with my model and with the model that won it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub target: String,
    pub epoch: u64,
    pub winner: String,
    /// On-chain loss of my model on the target's data.
    pub my_loss: f32,
    /// On-chain loss of the winning model on the same data, same seed.
    pub winner_loss: f32,
    /// `my_loss - winner_loss`: above 0, I lose by that much.
    pub margin: f32,
    /// Cosine distance from my embedding of the data to the target's embedding.
    pub distance: f64,
    /// Whether the target was routed to one of my models.
    pub routed_to_me: bool,
    /// Whether my model would have beaten the winner (a lower loss, or it is the winner).
    pub would_win: bool,
    /// The data's first characters, to tell its domain at a glance.
    pub preview: String,
}

/// What the gaps add up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub targets: usize,
    /// Targets where my model would have won.
    pub would_win: usize,
    pub routed_to_me: usize,
    /// Of those routed to me, how many I would have won.
    pub would_win_routed: usize,
    pub mean_margin: f64,
    /// The targets I lose on by the most, worst first.
    pub worst: Vec<Gap>,
    /// Targets skipped (data or winner's weights unavailable), with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

impl Summary {
    pub fn of(gaps: &[Gap], worst: usize, skipped: Vec<String>) -> Self {
        let mut sorted: Vec<Gap> = gaps.to_vec();
        sorted.sort_by(|a, b| b.margin.total_cmp(&a.margin));
        sorted.retain(|g| !g.would_win);
        sorted.truncate(worst);
        let routed: Vec<&Gap> = gaps.iter().filter(|g| g.routed_to_me).collect();
        Summary {
            targets: gaps.len(),
            would_win: gaps.iter().filter(|g| g.would_win).count(),
            routed_to_me: routed.len(),
            would_win_routed: routed.iter().filter(|g| g.would_win).count(),
            mean_margin: if gaps.is_empty() {
                0.0
            } else {
                gaps.iter().map(|g| g.margin as f64).sum::<f64>() / gaps.len() as f64
            },
            worst: sorted,
            skipped,
        }
    }

    /// What people read: [`Summary::line`], then a line per worst target.
    pub fn lines(&self) -> Vec<String> {
        let worst = self.worst.iter().map(|g| {
            format!(
                "  loses on {} by {:+.4} (winner {}): {:?}",
                g.target, g.margin, g.winner, g.preview
            )
        });
        std::iter::once(self.line()).chain(worst).collect()
    }

    /// One line for the run summary.
    pub fn line(&self) -> String {
        let share = |n: usize, of: usize| {
            if of == 0 {
                "–".to_owned()
            } else {
                format!("{:.0}%", 100.0 * n as f64 / of as f64)
            }
        };
        format!(
            "I would win {}/{} filled targets ({}); {}/{} of those routed to me ({}); \
             mean margin {:+.4} (above 0: I lose)",
            self.would_win,
            self.targets,
            share(self.would_win, self.targets),
            self.would_win_routed,
            self.routed_to_me,
            share(self.would_win_routed, self.routed_to_me),
            self.mean_margin
        )
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}

pub fn read_summary(path: &Path) -> Result<Summary> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a gaps summary", path.display()))
}
