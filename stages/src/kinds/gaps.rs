//! `gaps`: where my model loses to the network's winners. For each filled target,
//! the on-chain loss of my model and of the target's winning model on the target's
//! data (the chain's scoring, the same seed), and for targets routed to my models,
//! whether I would have won. Writes the table, a summary, and the data I lose on as
//! a dataset, ready for `train` or `distill`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use serde_json::Value as Json;
use soma_flow_chain::ObjectID;
use soma_flow_engine::{
    CachedOutputs, InputPort, Inputs, Outcome, Requirements, RunContext, StageKind, WithError,
};

use crate::data::{
    network_files, network_offer, Dataset, DatasetWriter, Offer, TargetFilter, TargetState, WonBy,
};
use crate::formats::competitors;
use crate::formats::gaps::{read_summary, write_json, Gap, Summary};
use crate::network::lifecycle::{self, Revealed};
use crate::network::with::{NetworkSchema, NetworkWith};
use crate::network::Network;
use crate::score::{cosine_distance, score_on_blobs};

#[serde_inline_default]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GapsWith {
    /// Which network, and whose models are mine (the signer's).
    #[serde(default)]
    #[schemars(with = "NetworkSchema")]
    pub network: NetworkWith,
    /// The targets' statuses to read (default both `filled` and `claimed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<TargetState>,
    /// Only targets generated (and so filled) in this epoch or later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_epoch: Option<u64>,
    /// Only targets generated in this epoch or earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_epoch: Option<u64>,
    /// Whose wins to compare against: `any` (the default), `me` or a model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub won_by: Option<WonBy>,
    /// At most this many targets, the most recent first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Seed of the SIGReg noise stream: the scoring service's (0) by default.
    #[serde(default)]
    pub seed: u64,
    /// Attention heads of the models (default: the preset whose shapes match the weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// How many of the targets I lose on by the most the summary names.
    #[serde_inline_default(5)]
    pub worst: usize,
    /// Fail when a target's data or its winner's weights cannot be had (default: skip
    /// it with a note).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,
}

impl GapsWith {
    fn targets(&self) -> TargetFilter {
        TargetFilter {
            status: self.status.clone(),
            from_epoch: self.from_epoch,
            to_epoch: self.to_epoch,
            won_by: self.won_by.unwrap_or(WonBy::Any),
            limit: self.limit,
        }
    }
}

pub struct GapsKind;

impl StageKind for GapsKind {
    type With = GapsWith;
    const NAME: &'static str = "gaps";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "My model's on-chain loss against each filled target's winner, and the data I lose on";

    /// `model` is my weights (a candidate or my committed model); `competitors` (a
    /// fetch-competitors directory) spares downloading winners it holds.
    fn inputs(&self, _: &GapsWith) -> Inputs {
        Inputs::Fixed(vec![
            InputPort::required("model"),
            InputPort::optional("competitors"),
        ])
    }

    fn outputs(&self, _: &GapsWith) -> Vec<String> {
        vec!["table".into(), "summary".into(), "dataset".into()]
    }

    fn check(&self, with: &GapsWith) -> Result<(), WithError> {
        with.network.check()?;
        with.targets().check()
    }

    fn requirements(&self, _: &GapsWith) -> Requirements {
        Requirements::backend_in(super::MODEL_RESOURCE)
    }

    fn irreproducible(&self, _: &GapsWith, _: &str) -> Option<&'static str> {
        Some("reads the network's state at run time")
    }

    /// The gaps stand only while the network offers the same filled targets.
    fn revalidate(&self, with: &GapsWith, cached: &CachedOutputs<'_>) -> Result<()> {
        let recorded = Dataset::open(cached.output("dataset")?)?
            .manifest()
            .network
            .clone()
            .context("the gaps hold no record of what the network offered")?;
        let owner = recorded.owner()?;
        let net = with.network.open(cached.store)?;
        let now = network_offer(&net, &with.targets(), owner)?;
        anyhow::ensure!(
            now == recorded,
            "the network's filled targets changed since the gaps were measured"
        );
        Ok(())
    }

    fn headline(&self, _: &GapsWith, outputs: &CachedOutputs<'_>) -> Result<Vec<(String, Json)>> {
        let s = read_summary(outputs.output("summary")?)?;
        Ok(vec![
            ("targets".into(), s.targets.into()),
            ("would win".into(), s.would_win.into()),
            ("mean margin".into(), s.mean_margin.into()),
        ])
    }

    fn run(&self, with: &GapsWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let net = with.network.open(ctx.store)?;
        // Without a key (testnet, read only) no model is mine: nothing is routed to me.
        let owner = match with.network.signer(&net, ctx) {
            Ok(key) => Some(key.address()),
            Err(e) if with.won_by == Some(WonBy::Me) => {
                return Err(e.context("`won_by: me` needs the signer's key"))
            }
            Err(_) => None,
        };
        let offer = network_offer(&net, &with.targets(), owner)?;
        let models = net.epoch()?.system.models;
        let mine: BTreeSet<ObjectID> = models
            .iter()
            .filter(|m| Some(m.owner) == owner)
            .map(|m| m.id)
            .collect();
        let revealed: HashMap<ObjectID, Revealed> = models
            .iter()
            .filter_map(Revealed::of)
            .map(|m| (m.id, m))
            .collect();
        let note = |text: String| ctx.note(text);
        let files = network_files(
            &net,
            &offer,
            &ctx.shared_state("data")?.join("network"),
            with.strict,
            &note,
            ctx.progress,
        )?;
        let blob_of: HashMap<&str, PathBuf> = files
            .iter()
            .map(|f| (f.name.as_str(), f.path.clone()))
            .collect();
        let given: HashMap<String, PathBuf> = match ctx.input("competitors") {
            Some(dir) => competitors::files(dir)?.into_iter().collect(),
            None => HashMap::new(),
        };

        // Scored per winner, all of its targets in one pass.
        let mut by_winner: BTreeMap<&str, Vec<&crate::data::Offered>> = BTreeMap::new();
        for t in offer
            .targets
            .iter()
            .filter(|t| blob_of.contains_key(t.target.as_str()))
        {
            by_winner.entry(t.model.as_str()).or_default().push(t);
        }
        let my_weights = ctx.input("model").expect("required input").to_path_buf();
        let backend = crate::backend::resolve(ctx.backend)?;
        let mut skipped = Vec::new();
        let mut gaps = Vec::new();
        for (winner, targets) in by_winner {
            let weights = match winner_weights(&net, winner, &given, &revealed, ctx) {
                Ok(path) => path,
                Err(e) if with.strict => return Err(e.context("`strict`")),
                Err(e) => {
                    for t in &targets {
                        skipped.push(format!("{}: {e:#}", t.target));
                    }
                    continue;
                }
            };
            let data: Vec<Vec<u8>> = targets
                .iter()
                .map(|t| std::fs::read(&blob_of[t.target.as_str()]))
                .collect::<Result<_, _>>()?;
            let blobs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            (ctx.progress)(&format!(
                "scoring my model and {winner} on {} target(s)",
                blobs.len()
            ));
            let reports = score_on_blobs(
                &[my_weights.clone(), weights],
                &blobs,
                with.seed,
                with.heads,
                backend,
            )?;
            for ((t, report), bytes) in targets.iter().zip(&reports).zip(&data) {
                let info = net
                    .block_on(net.client.target(&t.target.parse()?))
                    .with_context(|| format!("cannot read target {}", t.target))?;
                let (my_loss, winner_loss) = (report.models[0].loss, report.models[1].loss);
                let winner_is_mine = mine.contains(&t.model.parse()?);
                gaps.push(Gap {
                    target: t.target.clone(),
                    epoch: t.epoch,
                    winner: t.model.clone(),
                    my_loss,
                    winner_loss,
                    margin: my_loss - winner_loss,
                    distance: cosine_distance(&report.models[0].embedding, &info.embedding)?,
                    routed_to_me: info.model_ids.iter().any(|id| mine.contains(id)),
                    would_win: my_loss < winner_loss || (winner_is_mine && my_loss <= winner_loss),
                    preview: preview(bytes),
                });
            }
        }
        gaps.sort_by(|a, b| (a.epoch, &a.target).cmp(&(b.epoch, &b.target)));
        for s in &skipped {
            ctx.note(format!("skipped target {s}"));
        }
        let summary = Summary::of(&gaps, with.worst, skipped);
        ctx.note(summary.line());
        for g in &summary.worst {
            ctx.note(format!(
                "  loses on {} by {:+.4} (winner {}): {:?}",
                g.target, g.margin, g.winner, g.preview
            ));
        }
        write_json(&ctx.output("table"), &gaps)?;
        write_json(&ctx.output("summary"), &summary)?;
        write_lost(&ctx.output("dataset"), &gaps, &blob_of, with, &offer)?;
        Ok(Outcome::Done)
    }
}

/// The winning model's weights: from the `competitors` input, or downloaded once
/// into the stage's scratch.
fn winner_weights(
    net: &Network,
    winner: &str,
    given: &HashMap<String, PathBuf>,
    revealed: &HashMap<ObjectID, Revealed>,
    ctx: &RunContext<'_>,
) -> Result<PathBuf> {
    if let Some(path) = given.get(winner) {
        return Ok(path.clone());
    }
    let id: ObjectID = winner.parse().context("a recorded model id")?;
    let model = revealed.get(&id).with_context(|| {
        format!("the winning model {winner} is not Active with revealed weights")
    })?;
    let dest = ctx.scratch.join(format!("{winner}.safetensors"));
    (ctx.progress)(&format!("fetching the winning model {winner}"));
    lifecycle::fetch(net, model, ctx.scratch, &dest, ctx.progress)?;
    Ok(dest)
}

/// The data of the targets I would lose, in the order of the table, as a dataset.
fn write_lost(
    dir: &std::path::Path,
    gaps: &[Gap],
    blob_of: &HashMap<&str, PathBuf>,
    with: &GapsWith,
    offer: &Offer,
) -> Result<()> {
    let mut writer = DatasetWriter::create(dir)?;
    for g in gaps.iter().filter(|g| !g.would_win) {
        writer.push(&std::fs::read(&blob_of[g.target.as_str()])?)?;
    }
    writer.finish("train", &[], serde_json::to_value(with)?, Some(offer))?;
    Ok(())
}

/// The first 60 characters of `bytes`, lossily decoded, on one line.
fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(240)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(60)
        .collect()
}
