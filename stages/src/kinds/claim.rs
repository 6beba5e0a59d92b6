//! `claim`: collect what the signer's models won (and the data it submitted won):
//! one ClaimRewards per target claimable now. Irreproducible, like `commit`.

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use soma_flow_engine::{CachedOutputs, Curve, Inputs, Outcome, RunContext, StageKind, WithError};

use crate::network::earn;
use crate::network::with::{NetworkSchema, NetworkWith};

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimWith {
    /// Which network, and who signs (the claimer, whose models and submissions count).
    #[serde(default)]
    #[schemars(with = "NetworkSchema")]
    pub network: NetworkWith,
    /// Also claim targets whose fee exceeds what they pay the signer.
    #[serde(default)]
    pub all: bool,
}

pub struct ClaimKind;

impl StageKind for ClaimKind {
    type With = ClaimWith;
    const NAME: &'static str = "claim";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Claims the rewards of every target claimable now whose winning \
         model the signer owns or whose data the signer submitted; `claims` lists what each paid, \
         `chart` plots the signer's earnings per epoch";

    fn inputs(&self, _: &ClaimWith) -> Inputs {
        Inputs::Fixed(Vec::new())
    }

    fn outputs(&self, _: &ClaimWith) -> Vec<String> {
        vec!["claims".into(), "chart".into()]
    }

    fn check(&self, with: &ClaimWith) -> Result<(), WithError> {
        with.network.check()
    }

    fn check_files(&self, with: &ClaimWith, dir: &std::path::Path) -> Result<(), WithError> {
        with.network.check_files(dir)
    }

    /// A cached claim stands while the signer has nothing claimable; otherwise it runs.
    fn revalidate(&self, with: &ClaimWith, cached: &CachedOutputs<'_>) -> Result<()> {
        let signer = read(cached)?["claims"]["signer"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .context("the claims output names no signer")?;
        let net = with.network.open(cached.store)?;
        let claimable = earn::claimable(&net, &signer)?;
        anyhow::ensure!(
            claimable.is_empty(),
            "{} targets are claimable",
            claimable.len()
        );
        Ok(())
    }

    fn headline(&self, _: &ClaimWith, outputs: &CachedOutputs<'_>) -> Result<Vec<(String, Json)>> {
        let report = read(outputs)?;
        let claims = &report["claims"];
        Ok(["owner", "incentive", "submitter", "fees", "net"]
            .iter()
            .map(|k| (format!("claimed_{k}"), claims[*k].clone()))
            .collect())
    }

    /// Earnings per epoch (SOMA, by the targets' generation epoch), summed over the
    /// signer's models: claimed owner shares, and what is claimable.
    fn curves(&self, _: &ClaimWith, outputs: &CachedOutputs<'_>) -> Result<Vec<Curve>> {
        let earnings: earn::Earnings = serde_json::from_value(read(outputs)?["earnings"].take())
            .context("the claims output holds no earnings")?;
        Ok(vec![
            (
                "earned SOMA per epoch".into(),
                earnings.per_epoch(|f| f.earned),
            ),
            (
                "claimable SOMA per epoch".into(),
                earnings.per_epoch(|f| f.claimable),
            ),
        ])
    }

    fn irreproducible(&self, _: &ClaimWith, _: &str) -> Option<&'static str> {
        Some("what is claimable changes with every epoch")
    }

    fn run(&self, with: &ClaimWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let net = with.network.open_for(ctx)?;
        let key = with.network.signer(&net, ctx)?;
        let report = earn::claim(&net, &key, with.all, ctx.store, ctx.progress)?;
        let earnings = earn::earnings(&net, &key.address(), ctx.store)?;
        earn::plot(&earnings, &ctx.output("chart"))?;
        std::fs::write(
            ctx.output("claims"),
            serde_json::to_vec_pretty(&serde_json::json!({
                "claims": report,
                "earnings": earnings,
            }))?,
        )?;
        for line in report.render().lines() {
            ctx.note(line);
        }
        anyhow::ensure!(
            report.failed() == 0,
            "{} of {} claims failed (see the notes above)",
            report.failed(),
            report.lines.len()
        );
        Ok(Outcome::Done)
    }
}

fn read(outputs: &CachedOutputs<'_>) -> Result<Json> {
    let path = outputs.output("claims")?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))
}
