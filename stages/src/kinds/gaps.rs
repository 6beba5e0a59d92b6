//! `gaps`: where my model loses to the network's winners. For each filled target,
//! the on-chain loss of my model and of the target's winning model on the target's
//! data (the chain's scoring, the same seed), and for targets routed to my models,
//! whether I would have won. Writes the table, a summary, and the data I lose on as
//! a dataset, ready for `train` or `distill`.

use std::collections::HashMap;

use anyhow::Result;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use serde_json::Value as Json;
use soma_flow_engine::{
    CachedOutputs, InputPort, Inputs, Outcome, Requirements, RunContext, StageKind, WithError,
};

use crate::data::{still_offered, DatasetWriter, TargetFilter, WonBy};
use crate::formats::competitors;
use crate::formats::gaps::{read_summary, write_json, Summary};
use crate::gaps::{measure, Measure, Measured};
use crate::network::with::{NetworkSchema, NetworkWith};

#[serde_inline_default]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GapsWith {
    /// Which network, and whose models are mine (the signer's).
    #[serde(default)]
    #[schemars(with = "NetworkSchema")]
    pub network: NetworkWith,
    /// Which filled targets (default: every one), as `fetch-dataset`'s `targets`.
    #[serde(default)]
    pub targets: TargetFilter,
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
        with.targets.check().map_err(|e| e.within("targets"))
    }

    fn check_files(&self, with: &GapsWith, dir: &std::path::Path) -> Result<(), WithError> {
        with.network.check_files(dir)
    }

    fn requirements(&self, _: &GapsWith) -> Requirements {
        Requirements::backend_in(super::MODEL_RESOURCE)
    }

    fn irreproducible(&self, _: &GapsWith, _: &str) -> Option<&'static str> {
        Some("reads the network's state at run time")
    }

    /// The gaps stand only while the network offers the same filled targets.
    fn revalidate(&self, with: &GapsWith, cached: &CachedOutputs<'_>) -> Result<()> {
        let net = with.network.open(cached.store)?;
        still_offered(&net, &with.targets, cached.output("dataset")?)
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
        let net = with.network.open_for(ctx)?;
        // Without a key (testnet, read only) no model is mine: nothing is routed to me.
        let owner = match with.network.signer(&net, ctx) {
            Ok(key) => Some(key.address()),
            Err(e) if with.targets.won_by == WonBy::Me => {
                return Err(e.context("`won_by: me` needs the signer's key"))
            }
            Err(_) => None,
        };
        let given = match ctx.input("competitors") {
            Some(dir) => competitors::files(dir)?.into_iter().collect(),
            None => HashMap::new(),
        };
        let note = |text: String| ctx.note(text);
        let how = Measure {
            filter: with.targets.clone(),
            owner,
            model: ctx.input("model").expect("required input"),
            given,
            seed: with.seed,
            heads: with.heads,
            backend: crate::backend::resolve(ctx.backend)?,
            strict: with.strict,
            data_cache: &ctx.shared_state("data")?.join("network"),
            scratch: ctx.scratch,
            note: &note,
            progress: ctx.progress,
        };
        let measured = measure(&net, &how)?;
        for s in &measured.skipped {
            ctx.note(format!("skipped target {s}"));
        }
        let summary = Summary::of(&measured.gaps, with.worst, measured.skipped.clone());
        for line in summary.lines() {
            ctx.note(line);
        }
        write_json(&ctx.output("table"), &measured.gaps)?;
        write_json(&ctx.output("summary"), &summary)?;
        write_lost(&ctx.output("dataset"), &measured, with)?;
        Ok(Outcome::Done)
    }
}

/// The data of the targets I would lose, in the order of the table, as a dataset.
fn write_lost(dir: &std::path::Path, measured: &Measured, with: &GapsWith) -> Result<()> {
    let mut writer = DatasetWriter::create(dir)?;
    for g in measured.gaps.iter().filter(|g| !g.would_win) {
        writer.push(&std::fs::read(&measured.data[&g.target])?)?;
    }
    writer.finish(
        "train",
        &[],
        serde_json::to_value(with)?,
        Some(&measured.offer),
    )?;
    Ok(())
}
