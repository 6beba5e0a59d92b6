//! `placement`: where an embedding lands in the network's routing. Simulates the
//! chain's weighted-KNN routing over sampled targets for my model's embedding, the
//! `embedding` input and each of the `candidates` (each in my model's place, or as a
//! new model when I have none), and reports the share of targets routed to each and
//! whom it would compete with; `map` draws the registry and the candidates.

use std::path::PathBuf;

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use serde_json::Value as Json;
use soma_flow_engine::{
    CachedOutputs, InputPort, Inputs, Outcome, RunContext, StageKind, WithError,
};

use crate::formats::embedding;
use crate::network::with::{NetworkSchema, NetworkWith};
use crate::placement::{plot, registry, scenarios, simulate, Placement};

#[serde_inline_default]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementWith {
    /// Which network, and whose model is mine (the signer's).
    #[serde(default)]
    #[schemars(with = "NetworkSchema")]
    pub network: NetworkWith,
    /// Target embeddings to draw, as the chain draws them (seeds `seed`, `seed + 1`, …).
    #[serde_inline_default(2000)]
    pub samples: usize,
    #[serde(default)]
    pub seed: u64,
    /// Models per target (default: the chain's `target_models_per_target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Stake, in shannons, of an embedding placed as a new model (when I have no
    /// Active model); default: the registry's median stake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake: Option<u64>,
}

pub struct PlacementKind;

impl StageKind for PlacementKind {
    type With = PlacementWith;
    const NAME: &'static str = "placement";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Share of the network's targets routed to my embedding and to candidates, and a map";

    fn inputs(&self, _: &PlacementWith) -> Inputs {
        Inputs::Fixed(vec![
            InputPort::optional("embedding"),
            InputPort {
                required: false,
                ..InputPort::many("candidates")
            },
        ])
    }

    fn outputs(&self, _: &PlacementWith) -> Vec<String> {
        vec!["placement".into(), "map".into()]
    }

    fn check(&self, with: &PlacementWith) -> Result<(), WithError> {
        with.network.check()?;
        if with.samples == 0 {
            return Err(
                WithError::at(&["samples"], "`samples: 0` draws no target").help("e.g. 2000")
            );
        }
        if with.k == Some(0) {
            return Err(WithError::at(&["k"], "`k: 0` routes no model")
                .help("leave it out for the chain's value"));
        }
        Ok(())
    }

    fn check_files(&self, with: &PlacementWith, dir: &std::path::Path) -> Result<(), WithError> {
        with.network.check_files(dir)
    }

    fn irreproducible(&self, _: &PlacementWith, _: &str) -> Option<&'static str> {
        Some("reads the network's registry at run time")
    }

    /// A placement stands only while the registry it simulated is the network's.
    fn revalidate(&self, with: &PlacementWith, cached: &CachedOutputs<'_>) -> Result<()> {
        let recorded = read(cached.output("placement")?)?;
        let net = with.network.open(cached.store)?;
        let (now, _) = registry(&net, None)?;
        let same = now.len() == recorded.registry.len()
            && now
                .iter()
                .zip(&recorded.registry)
                .all(|(a, b)| a.id == b.id && a.stake == b.stake && a.embedding == b.embedding);
        anyhow::ensure!(
            same,
            "the network's registry changed since the placement was simulated"
        );
        Ok(())
    }

    fn headline(
        &self,
        _: &PlacementWith,
        outputs: &CachedOutputs<'_>,
    ) -> Result<Vec<(String, Json)>> {
        let p = read(outputs.output("placement")?)?;
        Ok(p.landings
            .iter()
            .map(|l| (format!("share: {}", l.name), l.share.into()))
            .collect())
    }

    fn run(&self, with: &PlacementWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let net = with.network.open_for(ctx)?;
        // Without a key (testnet, read only) no model is mine: candidates are new models.
        let owner = with.network.signer(&net, ctx).ok().map(|k| k.address());
        let (registry, k_chain) = registry(&net, owner)?;
        let k = with.k.unwrap_or(k_chain);
        let inputs: Vec<(String, PathBuf)> = ["embedding", "candidates"]
            .iter()
            .flat_map(|port| {
                ctx.input_labels(port)
                    .iter()
                    .cloned()
                    .zip(ctx.input_list(port).iter().cloned())
            })
            .collect();
        let mut candidates = Vec::new();
        for (label, path) in inputs {
            let e = embedding::read(&path).with_context(|| format!("`{label}`"))?;
            candidates.push((label, e));
        }
        let scenarios = scenarios(&registry, candidates, with.stake);
        anyhow::ensure!(
            !scenarios.is_empty(),
            "nothing to place: the signer has no Active model on {}, and no `embedding` or \
             `candidates` input is given",
            net.endpoint
        );
        if registry.len() <= k {
            ctx.note(format!(
                "the registry holds {} model(s), no more than the {k} each target is routed \
                 to: every target reaches every model",
                registry.len()
            ));
        }
        (ctx.progress)(&format!(
            "routing {} sampled targets for {} embedding(s) among {} models",
            with.samples,
            scenarios.len(),
            registry.len()
        ));
        let placement = simulate(registry, scenarios, with.samples, with.seed, k)?;
        for line in placement.lines() {
            ctx.note(line);
        }
        std::fs::write(
            ctx.output("placement"),
            serde_json::to_vec_pretty(&placement)?,
        )?;
        plot(&placement, &ctx.output("map"))?;
        Ok(Outcome::Done)
    }
}

fn read(path: &std::path::Path) -> Result<Placement> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is not a placement", path.display()))
}
