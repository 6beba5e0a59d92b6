//! `score`: the on-chain loss of my model and the competitors' on held-out data, and
//! who would win.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use serde_json::Value as Json;
use soma_flow_engine::{
    CachedOutputs, InputPort, Inputs, Outcome, Requirements, RunContext, StageKind,
};

use crate::formats::scores::{caption, headline, label, table, verdict, Scores};
use crate::formats::{competitors, embedding};
use crate::score::{blobs, score_on_blobs};
use crate::training::documents::open_documents;

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

impl StageKind for ScoreKind {
    type With = ScoreWith;
    const NAME: &'static str = "score";
    // 3: `scores` says which model is mine.
    const VERSION: u32 = 3;
    const ABOUT: &'static str =
        "On-chain loss and embedding of models on a data blob, and the winner";

    fn inputs(&self, _: &ScoreWith) -> Inputs {
        Inputs::Fixed(vec![
            InputPort::optional("model"),
            InputPort {
                required: false,
                ..InputPort::many("models")
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

    fn headline(&self, _: &ScoreWith, outputs: &CachedOutputs<'_>) -> Result<Vec<(String, Json)>> {
        let path = outputs.output("scores")?;
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let scores: Scores = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a score table", path.display()))?;
        Ok(headline(&scores))
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
        (ctx.progress)(&format!(
            "scoring {} model(s) on {} blob(s)",
            paths.len(),
            blobs.len()
        ));
        let reports = score_on_blobs(&paths, &blobs, with.seed, with.heads, backend)?;
        let mut scores = label(&reports, &names, with.seed, target.as_deref())?;
        // `model` is mine (it comes first): say first whether it wins.
        scores.mine = ctx.input("model").map(|_| 0);
        if let Some(mine) = scores.mine {
            ctx.note(verdict(&scores, mine));
        }
        ctx.note(table(&scores));
        ctx.note(caption(&scores));
        std::fs::write(ctx.output("scores"), serde_json::to_vec_pretty(&scores)?)?;
        link_or_copy(&paths[scores.winner], &ctx.output("winner"))?;
        Ok(Outcome::Done)
    }
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
