//! `score`: the on-chain loss of my model and the competitors' on held-out data, and
//! who would win.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use soma_flow_engine::{InputPort, Inputs, Outcome, Requirements, RunContext, StageKind};

use crate::formats::{competitors, embedding};
use crate::score::{cosine_distance, score_models, ScoreReport};
use crate::training::documents::{open_documents, Documents};

#[serde_inline_default]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreWith {
    /// Seed of the SIGReg noise stream (the chain derives it per submission).
    #[serde(default)]
    pub seed: u64,
    /// Attention heads of the models (default: the preset whose shapes match the weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// With a dataset as `data`, each document is one blob (one data submission); at
    /// most this many are scored.
    #[serde_inline_default(16)]
    pub max_blobs: usize,
}

pub struct ScoreKind;

/// One scored model, labelled for people.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoredModel {
    pub name: String,
    /// Mean on-chain loss over the blobs scored.
    pub loss: f32,
    /// Blobs on which this model had the lowest loss.
    #[serde(default)]
    pub wins: usize,
    pub embedding: Vec<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<f64>,
}

/// The `scores` output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scores {
    pub seed: u64,
    pub blobs: usize,
    pub models: Vec<ScoredModel>,
    pub winner: usize,
}

impl StageKind for ScoreKind {
    type With = ScoreWith;
    const NAME: &'static str = "score";
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "On-chain loss and embedding of models on a data blob, and the winner";

    fn inputs(&self, _: &ScoreWith) -> Inputs {
        Inputs::Fixed(vec![
            InputPort::optional("model"),
            InputPort {
                name: "models",
                required: false,
                many: true,
            },
            InputPort::optional("competitors"),
            InputPort::required("data"),
            InputPort::optional("target"),
        ])
    }

    /// `winner` is the winning model's weights, so that a pipeline can go on from
    /// the best of its candidates (e.g. average with the strongest competitor).
    fn outputs(&self, _: &ScoreWith) -> Vec<String> {
        vec!["scores".into(), "winner".into()]
    }

    fn requirements(&self, _: &ScoreWith) -> Requirements {
        Requirements::backend_in(super::MODEL_RESOURCE)
    }

    fn run(&self, with: &ScoreWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let mut named: Vec<(String, PathBuf)> = Vec::new();
        for port in ["model", "models"] {
            for (path, label) in ctx.input_list(port).iter().zip(ctx.input_labels(port)) {
                named.push((label.clone(), path.clone()));
            }
        }
        if let Some(dir) = ctx.input("competitors") {
            named.extend(competitors::files(dir)?);
        }
        anyhow::ensure!(
            !named.is_empty(),
            "nothing to score: give `model`, `models` or `competitors`"
        );
        let target = ctx.input("target").map(embedding::read).transpose()?;
        let (names, paths): (Vec<String>, Vec<PathBuf>) = named.into_iter().unzip();
        let backend = crate::backend::resolve(ctx.backend)?;
        let docs = open_documents(ctx.input("data").expect("required input"))?;
        let blobs = blobs(docs.as_ref(), with.max_blobs);
        let mut reports = Vec::new();
        for (i, blob) in blobs.iter().enumerate() {
            (ctx.progress)(&format!(
                "scoring {} model(s) on blob {}/{} ({} bytes)",
                paths.len(),
                i + 1,
                blobs.len(),
                blob.len()
            ));
            reports.push(score_models(&paths, blob, with.seed, with.heads, backend)?);
        }
        let scores = label(&reports, &names, with.seed, target.as_deref())?;
        ctx.note(table(&scores));
        std::fs::write(ctx.output("scores"), serde_json::to_vec_pretty(&scores)?)?;
        link_or_copy(&paths[scores.winner], &ctx.output("winner"))?;
        Ok(Outcome::Done)
    }
}

/// Combines the scores of several blobs (mean loss and embedding, wins per model),
/// names the models and adds their distance to `target`. One blob is exactly the chain's.
pub fn label(
    reports: &[ScoreReport],
    names: &[String],
    seed: u64,
    target: Option<&[f32]>,
) -> Result<Scores> {
    anyhow::ensure!(
        !reports.is_empty(),
        "no data to score: the data input holds no documents"
    );
    let n = reports.len() as f32;
    let models = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let loss = reports.iter().map(|r| r.models[i].loss).sum::<f32>() / n;
            let mut embedding = vec![0.0f32; reports[0].models[i].embedding.len()];
            for r in reports {
                for (acc, x) in embedding.iter_mut().zip(&r.models[i].embedding) {
                    *acc += x / n;
                }
            }
            let distance = target.map(|t| cosine_distance(&embedding, t)).transpose()?;
            let wins = reports.iter().filter(|r| r.winner == i).count();
            Ok(ScoredModel {
                name: name.clone(),
                loss,
                wins,
                embedding,
                distance,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let losses: Vec<f32> = models.iter().map(|m| m.loss).collect();
    let winner = crate::score::winner_index(&losses).context("every model's loss is NaN")?;
    Ok(Scores {
        seed,
        blobs: reports.len(),
        models,
        winner,
    })
}

/// The human table printed by `soma-flow score` and in run summaries.
pub fn table(scores: &Scores) -> String {
    let with_distance = scores.models.iter().any(|m| m.distance.is_some());
    let w = scores
        .models
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let mut out = format!("{:<3} {:<w$} {:>12} {:>5}", "#", "model", "loss", "wins");
    if with_distance {
        out.push_str(&format!(" {:>10}", "distance"));
    }
    for (i, m) in scores.models.iter().enumerate() {
        out.push_str(&format!(
            "\n{:<3} {:<w$} {:>12.6} {:>5}",
            i, m.name, m.loss, m.wins
        ));
        if let Some(d) = m.distance {
            out.push_str(&format!(" {d:>10.6}"));
        }
        if i == scores.winner {
            out.push_str("  ← winner");
        }
    }
    out.push_str(&format!(
        "\n(on-chain loss, noise seed {}, mean over {} blob(s))",
        scores.seed, scores.blobs
    ));
    out
}

/// Stored inputs are immutable, so a hard link is as good as a copy and costs
/// nothing for 4.8 GB weights; across file systems it falls back to copying.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// The blobs to score: each document is one blob (a file is one document); empty
/// documents have nothing to score and are left out.
fn blobs(docs: &dyn Documents, max: usize) -> Vec<&[u8]> {
    (0..docs.len())
        .map(|i| docs.get(i))
        .filter(|d| !d.is_empty())
        .take(max)
        .collect()
}
