//! The `with` settings that `train` and `distill` share, their checks, and the
//! learning-rate schedule.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use soma_flow_engine::WithError;

use crate::contract::SEQ_LEN;
use crate::model::ArchConfig;

/// Which position ids training batches carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Positions {
    /// Global byte offsets within each document, as the chain feeds them.
    #[default]
    Chain,
    /// 0..seq_len in every sequence, as the reference quickstart feeds them.
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// `lr` after warmup (the reference quickstart).
    #[default]
    Constant,
    /// Cosine decay from `lr` to `min_lr` over the steps after warmup.
    Cosine,
}

/// Training settings (flattened into the kinds' `with`).
#[serde_inline_default]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Settings {
    /// Architecture: a preset name or `{preset, dim, layers, heads, hidden, ...}`.
    /// Default `v1`, or inferred from `init`'s weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub arch: Option<ArchConfig>,
    /// Optimizer steps.
    #[serde_inline_default(1000)]
    pub steps: usize,
    /// Seeds initialisation, sequence sampling, dropout and SIGReg noise.
    #[serde(default)]
    pub seed: u64,
    #[serde_inline_default(1e-4)]
    pub lr: f64,
    /// Final learning rate of the cosine schedule.
    #[serde(default)]
    pub min_lr: f64,
    #[serde(default)]
    pub schedule: Schedule,
    /// Steps of linear warmup to `lr`.
    #[serde(default)]
    pub warmup: usize,
    #[serde_inline_default(0.9)]
    pub beta1: f64,
    #[serde_inline_default(0.999)]
    pub beta2: f64,
    #[serde_inline_default(1e-8)]
    pub eps: f64,
    /// L2 penalty added to the gradients (Adam's coupled weight decay).
    #[serde(default)]
    pub weight_decay: f64,
    /// Sequences per micro-batch.
    #[serde_inline_default(2)]
    pub batch: usize,
    /// Micro-batches accumulated per optimizer step.
    #[serde_inline_default(64)]
    pub accum: usize,
    /// Dropout on the residual branches while training.
    #[serde_inline_default(0.1)]
    pub dropout: f64,
    #[serde(default)]
    pub positions: Positions,
    /// Sequence length (the chain's is 1024; shorter for quick CPU runs).
    #[serde_inline_default(SEQ_LEN)]
    pub seq_len: usize,
    /// Steps between checkpoints (0: none).
    #[serde_inline_default(100)]
    pub checkpoint_every: usize,
    /// Attention heads of `init`/teacher weights (default: V1's 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("all settings have defaults")
    }
}

fn positive(key: &str, ok: bool, what: &str) -> Result<(), WithError> {
    if ok {
        Ok(())
    } else {
        Err(WithError::at(&[key], format!("`{key}` must be {what}")))
    }
}

/// Rejects keys that no flattened part of a `with` claimed.
pub fn reject_unknown(unknown: &BTreeMap<String, serde_json::Value>) -> Result<(), WithError> {
    match unknown.keys().next() {
        Some(key) => Err(WithError::at(&[key], format!("unknown setting `{key}`"))),
        None => Ok(()),
    }
}

impl Settings {
    pub fn check(&self) -> Result<(), WithError> {
        positive("steps", self.steps > 0, "at least 1")?;
        positive(
            "lr",
            self.lr > 0.0 && self.lr.is_finite(),
            "a positive number",
        )?;
        positive(
            "min_lr",
            (0.0..=self.lr).contains(&self.min_lr),
            "between 0 and `lr`",
        )?;
        positive("beta1", (0.0..1.0).contains(&self.beta1), "in [0, 1)")?;
        positive("beta2", (0.0..1.0).contains(&self.beta2), "in [0, 1)")?;
        positive("eps", self.eps > 0.0, "a positive number")?;
        positive("weight_decay", self.weight_decay >= 0.0, "0 or more")?;
        positive("batch", self.batch > 0, "at least 1")?;
        positive("accum", self.accum > 0, "at least 1")?;
        positive("dropout", (0.0..1.0).contains(&self.dropout), "in [0, 1)")?;
        positive("seq_len", self.seq_len > 0, "at least 1")?;
        if let Some(arch) = &self.arch {
            positive(
                "seq_len",
                self.seq_len <= arch.max_seq_len,
                "at most the architecture's max_seq_len",
            )?;
        }
        positive("heads", self.heads != Some(0), "at least 1")
    }

    /// Learning rate of optimizer step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = (self.steps - self.warmup).max(1) as f64;
                let progress = (step - self.warmup) as f64 / span;
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                self.min_lr + (self.lr - self.min_lr) * cosine
            }
        }
    }

    /// Tokens one optimizer step consumes.
    pub fn tokens_per_step(&self) -> usize {
        self.batch * self.accum * self.seq_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_reaches_min_lr() {
        let s = Settings {
            steps: 10,
            lr: 1.0,
            min_lr: 0.1,
            warmup: 2,
            schedule: Schedule::Cosine,
            ..Settings::default()
        };
        assert_eq!(s.lr_at(0), 0.5);
        assert_eq!(s.lr_at(1), 1.0);
        assert_eq!(s.lr_at(2), 1.0);
        assert!((s.lr_at(10) - 0.1).abs() < 1e-12);
        assert!(s.lr_at(6) < 1.0 && s.lr_at(6) > 0.1);
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = |s: Settings| s.check().unwrap_err().path;
        let key = |k: &str| vec![soma_flow_engine::yaml::PathSeg::Key(k.into())];
        assert_eq!(
            bad(Settings {
                steps: 0,
                ..Default::default()
            }),
            key("steps")
        );
        assert_eq!(
            bad(Settings {
                lr: 0.0,
                ..Default::default()
            }),
            key("lr")
        );
        assert_eq!(
            bad(Settings {
                accum: 0,
                ..Default::default()
            }),
            key("accum")
        );
        assert!(Settings::default().check().is_ok());
    }
}
