//! The `with` settings of the training kinds (`train`, `distill`), their checks, the
//! learning-rate schedule, and where the last release's flat keys moved.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use soma_flow_engine::{Move, WithError};

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
pub enum Decay {
    /// `lr` after warmup (the reference quickstart).
    #[default]
    Constant,
    /// Cosine decay from `lr` to `min_lr` over the steps after warmup.
    Cosine,
}

/// The settings of a training kind's `with`, grouped as Burn groups a training
/// config: the run itself at the top level, then `optimizer`, `schedule`, `data`, and
/// `objective` (what sets the kind apart; `train` has nothing there).
#[serde_inline_default]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "{O}With", bound = "O: JsonSchema + Default + Serialize")]
pub struct Settings<O = NoObjective> {
    /// Architecture: a preset name or `{preset, dim, layers, heads, hidden, ...}`.
    /// Default `v1`, or inferred from `init`'s weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub arch: Option<ArchConfig>,
    /// Attention heads of `init`/teacher weights (default: V1's 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// Optimizer steps.
    #[serde_inline_default(1000)]
    pub steps: usize,
    /// Seeds initialisation, sequence sampling, dropout and SIGReg noise.
    #[serde(default)]
    pub seed: u64,
    /// Dropout on the residual branches while training.
    #[serde_inline_default(0.1)]
    pub dropout: f64,
    /// Steps between checkpoints (0: none).
    #[serde_inline_default(100)]
    pub checkpoint_every: usize,
    #[serde(default)]
    pub optimizer: Adam,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default)]
    pub data: Batches,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub objective: O,
}

/// `train`'s objective (CE + 0.02 SIGReg, as the chain scores) takes no settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Train")]
pub struct NoObjective {}

/// Whether `value` serialises to an empty map (an objective without settings).
fn is_empty<O: Serialize>(value: &O) -> bool {
    serde_json::to_value(value).is_ok_and(|v| v.as_object().is_some_and(|m| m.is_empty()))
}

/// `optimizer:` Adam's settings.
#[serde_inline_default]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Adam {
    /// Learning rate (peak, after warmup).
    #[serde_inline_default(1e-4)]
    pub lr: f64,
    #[serde_inline_default(0.9)]
    pub beta1: f64,
    #[serde_inline_default(0.999)]
    pub beta2: f64,
    #[serde_inline_default(1e-8)]
    pub eps: f64,
    /// L2 penalty added to the gradients (Adam's coupled weight decay).
    #[serde(default)]
    pub weight_decay: f64,
}

/// `schedule:` how the learning rate moves over the steps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Steps of linear warmup to `optimizer.lr`.
    #[serde(default)]
    pub warmup: usize,
    #[serde(default)]
    pub decay: Decay,
    /// Final learning rate of the cosine decay.
    #[serde(default)]
    pub min_lr: f64,
}

/// `data:` what one optimizer step reads.
#[serde_inline_default]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Batches {
    /// Sequences per micro-batch.
    #[serde_inline_default(2)]
    pub batch: usize,
    /// Micro-batches accumulated per optimizer step.
    #[serde_inline_default(64)]
    pub accum: usize,
    /// Sequence length (the chain's is 1024; shorter for quick CPU runs).
    #[serde_inline_default(SEQ_LEN)]
    pub seq_len: usize,
    #[serde(default)]
    pub positions: Positions,
}

/// Where each flat key of the last release moved (read for one more release).
pub const MOVED: &[Move] = &[
    ("lr", &["optimizer", "lr"]),
    ("beta1", &["optimizer", "beta1"]),
    ("beta2", &["optimizer", "beta2"]),
    ("eps", &["optimizer", "eps"]),
    ("weight_decay", &["optimizer", "weight_decay"]),
    ("warmup", &["schedule", "warmup"]),
    ("schedule", &["schedule", "decay"]),
    ("min_lr", &["schedule", "min_lr"]),
    ("batch", &["data", "batch"]),
    ("accum", &["data", "accum"]),
    ("seq_len", &["data", "seq_len"]),
    ("positions", &["data", "positions"]),
];

/// Defaults, as an empty `with` gives them.
pub(crate) fn defaults<T: serde::de::DeserializeOwned>() -> T {
    serde_json::from_value(serde_json::json!({})).expect("all settings have defaults")
}

impl<O: Default + serde::de::DeserializeOwned> Default for Settings<O> {
    fn default() -> Self {
        defaults()
    }
}

impl Default for Adam {
    fn default() -> Self {
        defaults()
    }
}

impl Default for Batches {
    fn default() -> Self {
        defaults()
    }
}

/// `Ok` when `ok`, else an error at `path` saying what its value must be.
fn require(path: &[&str], ok: bool, what: &str) -> Result<(), WithError> {
    match ok {
        true => Ok(()),
        false => Err(WithError::at(
            path,
            format!("`{}` must be {what}", path.join(".")),
        )),
    }
}

impl<O> Settings<O> {
    /// Checks the shared settings (the objective's are its kind's).
    pub fn check(&self) -> Result<(), WithError> {
        let (o, d) = (&self.optimizer, &self.data);
        require(&["steps"], self.steps > 0, "at least 1")?;
        let positive = o.lr > 0.0 && o.lr.is_finite();
        require(&["optimizer", "lr"], positive, "a positive number")?;
        let below_lr = (0.0..=o.lr).contains(&self.schedule.min_lr);
        require(
            &["schedule", "min_lr"],
            below_lr,
            "between 0 and `optimizer.lr`",
        )?;
        require(
            &["optimizer", "beta1"],
            (0.0..1.0).contains(&o.beta1),
            "in [0, 1)",
        )?;
        require(
            &["optimizer", "beta2"],
            (0.0..1.0).contains(&o.beta2),
            "in [0, 1)",
        )?;
        require(&["optimizer", "eps"], o.eps > 0.0, "a positive number")?;
        require(
            &["optimizer", "weight_decay"],
            o.weight_decay >= 0.0,
            "0 or more",
        )?;
        require(&["data", "batch"], d.batch > 0, "at least 1")?;
        require(&["data", "accum"], d.accum > 0, "at least 1")?;
        require(&["data", "seq_len"], d.seq_len > 0, "at least 1")?;
        require(
            &["dropout"],
            (0.0..1.0).contains(&self.dropout),
            "in [0, 1)",
        )?;
        if let Some(arch) = &self.arch {
            let fits = d.seq_len <= arch.max_seq_len;
            require(
                &["data", "seq_len"],
                fits,
                "at most the architecture's max_seq_len",
            )?;
        }
        require(&["heads"], self.heads != Some(0), "at least 1")
    }

    /// Learning rate of optimizer step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        let (lr, s) = (self.optimizer.lr, &self.schedule);
        if step < s.warmup {
            return lr * (step + 1) as f64 / s.warmup as f64;
        }
        match s.decay {
            Decay::Constant => lr,
            Decay::Cosine => {
                let span = (self.steps - s.warmup).max(1) as f64;
                let progress = (step - s.warmup) as f64 / span;
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                s.min_lr + (lr - s.min_lr) * cosine
            }
        }
    }

    /// Tokens one optimizer step consumes.
    pub fn tokens_per_step(&self) -> usize {
        self.data.batch * self.data.accum * self.data.seq_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_reaches_min_lr() {
        let s: Settings = Settings {
            steps: 10,
            optimizer: Adam {
                lr: 1.0,
                ..Adam::default()
            },
            schedule: Schedule {
                warmup: 2,
                decay: Decay::Cosine,
                min_lr: 0.1,
            },
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
        let bad = |s: Settings| s.check().unwrap_err();
        let keys = |e: WithError| e.path.iter().map(ToString::to_string).collect::<String>();
        let s = Settings {
            steps: 0,
            ..Default::default()
        };
        assert_eq!(keys(bad(s)), ".steps");
        let mut s = Settings::default();
        s.optimizer.lr = 0.0;
        let e = bad(s);
        assert_eq!(e.message, "`optimizer.lr` must be a positive number");
        assert_eq!(keys(e), ".optimizer.lr");
        let mut s = Settings::default();
        s.data.accum = 0;
        assert_eq!(keys(bad(s)), ".data.accum");
        assert!(Settings::<NoObjective>::default().check().is_ok());
    }
}
