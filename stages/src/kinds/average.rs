//! `average`: the weighted average of two or more models, or the guide's lerp
//! `mine + β·(theirs − mine)` (mine = the first model).

use anyhow::Result;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use soma_flow_engine::{InputPort, Inputs, Outcome, RunContext, StageKind, WithError};

use crate::merge::{average_files, check_weights, lerp_weights};

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AverageWith {
    /// One weight per model (normalised by their sum); default: equal weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    /// Share of the second model mixed into the first (exactly two models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
}

pub struct AverageKind;

impl AverageWith {
    fn weights_for(&self, count: usize) -> Result<Vec<f64>> {
        Ok(match (&self.weights, self.beta) {
            (Some(w), _) => w.clone(),
            (None, Some(beta)) => {
                anyhow::ensure!(count == 2, "`beta` mixes exactly two models, got {count}");
                lerp_weights(beta)
            }
            (None, None) => vec![1.0; count],
        })
    }
}

impl StageKind for AverageKind {
    type With = AverageWith;
    const NAME: &'static str = "average";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Weighted average (or lerp with beta) of models with matching tensors";

    fn inputs(&self, _: &AverageWith) -> Inputs {
        Inputs::Fixed(vec![InputPort::many("models")])
    }

    fn outputs(&self, _: &AverageWith) -> Vec<String> {
        vec!["model".into()]
    }

    fn check(&self, with: &AverageWith) -> Result<(), WithError> {
        if with.weights.is_some() && with.beta.is_some() {
            return Err(WithError::at(
                &["beta"],
                "give either `weights` or `beta`, not both",
            ));
        }
        if let Some(beta) = with.beta {
            if !(0.0..=1.0).contains(&beta) {
                return Err(WithError::at(
                    &["beta"],
                    format!("beta {beta} must be in [0, 1]"),
                ));
            }
        }
        if let Some(weights) = &with.weights {
            check_weights(weights, weights.len())
                .map_err(|e| WithError::at(&["weights"], e.to_string()))?;
        }
        Ok(())
    }

    fn run(&self, with: &AverageWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let models = ctx.input_list("models");
        let weights = with.weights_for(models.len())?;
        (ctx.progress)(&format!("averaging {} models", models.len()));
        average_files(models, &weights, &ctx.output("model"))?;
        ctx.note(format!(
            "averaged {} models with weights {weights:?}",
            models.len()
        ));
        Ok(Outcome::Done)
    }
}
