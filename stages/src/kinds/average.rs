//! `average`: the weighted average of two or more models, or the guide's lerp
//! `mine + β·(theirs − mine)` (mine = the first model), with β given or chosen on
//! held-out data.

use std::path::Path;

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use soma_flow_engine::table::{pipe, Align};
use soma_flow_engine::{
    CachedOutputs, InputPort, Inputs, Outcome, Requirements, RunContext, StageKind, WithError,
};

use crate::backend::BackendChoice;
use crate::merge::{average_files, check_weights, lerp_weights};
use crate::score::{blobs, score_on_blobs, winner_index};
use crate::training::documents::open_documents;

#[serde_inline_default]
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AverageWith {
    /// One weight per model (normalised by their sum); default: equal weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    /// Share of the second model mixed into the first (exactly two models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// Candidate βs, each scored on the `holdout` input with the chain's score; the
    /// best is kept. Include 0 to keep the first model when mixing hurts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub betas: Option<Vec<f64>>,
    /// For `betas`: attention heads of the models (default: the preset whose shapes
    /// match the weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// For `betas`: the SIGReg noise seed of the score.
    #[serde(default)]
    pub seed: u64,
    /// For `betas`: holdout documents scored (each one blob, as the chain scores it).
    #[serde_inline_default(4)]
    pub max_blobs: usize,
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
    const ABOUT: &'static str = "Weighted average (or lerp with beta, or the best of betas on \
                                 held-out data) of models with matching tensors";

    fn inputs(&self, _: &AverageWith) -> Inputs {
        Inputs::Fixed(vec![
            InputPort::many("models"),
            InputPort::optional("holdout"),
        ])
    }

    /// With `betas`, `search` holds each candidate's held-out loss and the one kept.
    fn outputs(&self, with: &AverageWith) -> Vec<String> {
        match with.betas {
            Some(_) => vec!["model".into(), "search".into()],
            None => vec!["model".into()],
        }
    }

    /// Choosing among `betas` scores the candidates on the backend.
    fn requirements(&self, with: &AverageWith) -> Requirements {
        match with.betas {
            Some(_) => Requirements::backend_in(super::MODEL_RESOURCE),
            None => Requirements::default(),
        }
    }

    /// With `betas`: the β kept and its held-out loss.
    fn headline(
        &self,
        with: &AverageWith,
        outputs: &CachedOutputs<'_>,
    ) -> Result<Vec<(String, serde_json::Value)>> {
        if with.betas.is_none() {
            return Ok(Vec::new());
        }
        let path = outputs.output("search")?;
        let search: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)
            .with_context(|| format!("{} is not a β search", path.display()))?;
        let kept = &search["kept"];
        Ok(vec![
            ("β kept".into(), kept["beta"].clone()),
            ("held-out loss".into(), kept["loss"].clone()),
        ])
    }

    fn check(&self, with: &AverageWith) -> Result<(), WithError> {
        let given = [
            with.weights.is_some(),
            with.beta.is_some(),
            with.betas.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(WithError::at(
                &["beta"],
                "give one of `weights`, `beta` and `betas`",
            ));
        }
        let in_range = |key: &str, beta: f64| {
            if (0.0..=1.0).contains(&beta) {
                Ok(())
            } else {
                Err(WithError::at(
                    &[key],
                    format!("beta {beta} must be in [0, 1]"),
                ))
            }
        };
        if let Some(beta) = with.beta {
            in_range("beta", beta)?;
        }
        if let Some(betas) = &with.betas {
            if betas.is_empty() {
                return Err(WithError::at(&["betas"], "`betas` is empty")
                    .help("e.g. `betas: [0, 0.1, 0.2, 0.3, 0.5]`"));
            }
            for &beta in betas {
                in_range("betas", beta)?;
            }
            if with.max_blobs == 0 {
                return Err(WithError::at(
                    &["max_blobs"],
                    "`max_blobs` must be at least 1",
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
        if let Some(betas) = &with.betas {
            anyhow::ensure!(
                models.len() == 2,
                "`betas` mixes exactly two models, got {}",
                models.len()
            );
            let holdout = ctx
                .input("holdout")
                .context("`betas` are chosen on held-out data: give the `holdout` input")?;
            let backend = crate::backend::resolve(ctx.backend)?;
            return search(with, betas, models, holdout, backend, ctx);
        }
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

/// Mixes the two models at each β, scores each mix on the holdout blobs, and keeps the
/// mix with the lowest mean loss (the first of equals). One candidate is on disk
/// beside the best so far.
fn search(
    with: &AverageWith,
    betas: &[f64],
    models: &[std::path::PathBuf],
    holdout: &Path,
    backend: BackendChoice,
    ctx: &RunContext<'_>,
) -> Result<Outcome> {
    let docs = open_documents(holdout)?;
    let blobs = blobs(docs.as_ref(), with.max_blobs);
    anyhow::ensure!(!blobs.is_empty(), "the holdout data holds no documents");
    let candidate = ctx.workdir.join("candidate.safetensors");
    let mut losses: Vec<f32> = Vec::with_capacity(betas.len());
    for (i, &beta) in betas.iter().enumerate() {
        (ctx.progress)(&format!(
            "β = {beta}: mixing and scoring on {} holdout blob(s) ({}/{})",
            blobs.len(),
            i + 1,
            betas.len()
        ));
        average_files(models, &lerp_weights(beta), &candidate)?;
        let reports = score_on_blobs(
            std::slice::from_ref(&candidate),
            &blobs,
            with.seed,
            with.heads,
            backend,
        )?;
        losses.push(reports.iter().map(|r| r.models[0].loss).sum::<f32>() / blobs.len() as f32);
        // The best so far, by the chain's rule (lowest loss, first of equals), is kept.
        if winner_index(&losses) == Some(i) {
            std::fs::rename(&candidate, ctx.output("model"))?;
        }
    }
    let best = winner_index(&losses).context("every candidate's held-out loss is NaN")?;
    let (beta, loss) = (betas[best], losses[best]);
    let rows: Vec<Vec<String>> = betas
        .iter()
        .zip(&losses)
        .enumerate()
        .map(|(i, (b, l))| {
            let mark = if i == best { "← kept" } else { "" };
            vec![b.to_string(), format!("{l:.6}"), mark.into()]
        })
        .collect();
    ctx.note(format!(
        "β chosen on held-out data (on-chain loss, mean over {} blob(s)): {beta}",
        blobs.len()
    ));
    ctx.note(pipe(
        &[
            ("β", Align::Right),
            ("loss", Align::Right),
            ("", Align::Left),
        ],
        &rows,
    ));
    let search = serde_json::json!({
        "blobs": blobs.len(),
        "seed": with.seed,
        "candidates": betas
            .iter()
            .zip(&losses)
            .map(|(b, l)| serde_json::json!({"beta": b, "loss": l}))
            .collect::<Vec<_>>(),
        "kept": {"beta": beta, "loss": loss},
    });
    std::fs::write(ctx.output("search"), serde_json::to_vec_pretty(&search)?)?;
    Ok(Outcome::Done)
}
