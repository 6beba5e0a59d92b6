//! `reveal`: publish the decryption key and embedding of a commit in its reveal epoch.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use serde_json::json;
use soma_flow_engine::duration::HumanDuration;
use soma_flow_engine::{
    CachedOutputs, InputPort, Inputs, Outcome, RunContext, StageKind, WithError,
};

use crate::network::key_dir;
use crate::network::lifecycle::{self, CommitRecord, RevealOutcome};
use crate::network::with::{NetworkSchema, NetworkWith};

#[serde_inline_default]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevealWith {
    /// Which network, and who signs.
    #[serde(default)]
    #[schemars(with = "NetworkSchema")]
    pub network: NetworkWith,
    /// Keep polling this long for the reveal epoch (e.g. `30s`); default: defer at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<HumanDuration>,
    /// Time between polls while waiting.
    #[serde_inline_default("1s".parse().expect("a valid duration"))]
    pub poll: HumanDuration,
}

pub struct RevealKind;

impl StageKind for RevealKind {
    type With = RevealWith;
    const NAME: &'static str = "reveal";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "Reveals a commit's key and embedding in the epoch after the \
         commit (deferred before it); without a `commit` input, the signer's pending one";

    fn inputs(&self, _: &RevealWith) -> Inputs {
        Inputs::Fixed(vec![InputPort::optional("commit")])
    }

    fn outputs(&self, _: &RevealWith) -> Vec<String> {
        vec!["revealed".into()]
    }

    fn check(&self, with: &RevealWith) -> Result<(), WithError> {
        with.network.check()
    }

    fn check_files(&self, with: &RevealWith, dir: &std::path::Path) -> Result<(), WithError> {
        with.network.check_files(dir)
    }

    /// A reveal of "whatever is pending" holds only while nothing new is pending.
    fn revalidate(&self, with: &RevealWith, cached: &CachedOutputs<'_>) -> Result<()> {
        let path = cached.output("revealed")?;
        let bytes = std::fs::read(path).context("the reveal record is unreadable")?;
        let recorded: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let Some(owner) = recorded["pending_of"].as_str() else {
            return Ok(());
        };
        let owner = owner
            .parse()
            .map_err(|_| anyhow::anyhow!("the reveal record names no valid owner"))?;
        let net = with.network.open(cached.store)?;
        let which = selection(&net, with, &owner, cached.store)?;
        match lifecycle::pending_record(&net, &owner, &which, None, &key_dir(cached.store))? {
            Some(record) => anyhow::bail!("model {} has a commit awaiting reveal", record.model_id),
            None => Ok(()),
        }
    }

    fn irreproducible(&self, _: &RevealWith, _: &str) -> Option<&'static str> {
        Some("its record holds the network's epochs")
    }

    fn run(&self, with: &RevealWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let net = with.network.open_for(ctx)?;
        let key = with.network.signer(&net, ctx)?;
        let owner = key.address();
        let record = match ctx.input("commit") {
            Some(path) => CommitRecord::read(path)?,
            None => match lifecycle::pending_record(
                &net,
                &owner,
                &selection(&net, with, &owner, ctx.store)?,
                Some(&key),
                &key_dir(ctx.store),
            )? {
                Some(record) => record,
                None => {
                    ctx.note(format!("nothing to reveal: no pending commit of {owner}"));
                    let nothing = json!({ "pending_of": owner.to_string(), "model_id": null });
                    std::fs::write(ctx.output("revealed"), serde_json::to_vec_pretty(&nothing)?)?;
                    return Ok(Outcome::Done);
                }
            },
        };
        let wait = with
            .wait
            .as_ref()
            .map(HumanDuration::get)
            .unwrap_or_default();
        let poll = with.poll.get().max(Duration::from_millis(50));
        let started = Instant::now();
        let outcome = loop {
            let outcome = lifecycle::reveal(&net, &key, &record, &key_dir(ctx.store))?;
            match outcome {
                RevealOutcome::NotYet { from_epoch } if started.elapsed() + poll <= wait => {
                    (ctx.progress)(&format!(
                        "waiting for epoch {from_epoch} to reveal model {}",
                        record.model_id
                    ));
                    std::thread::sleep(poll);
                }
                _ => break outcome,
            }
        };
        match outcome {
            RevealOutcome::NotYet { from_epoch } => Ok(Outcome::Deferred(format!(
                "model {} cannot be revealed before epoch {from_epoch} (committed in epoch {}); run again then",
                record.model_id, record.commit_epoch
            ))),
            RevealOutcome::Missed { .. } => anyhow::bail!("model {}: {outcome}", record.model_id),
            RevealOutcome::Revealed { epoch } | RevealOutcome::AlreadyRevealed { epoch } => {
                ctx.note(format!("model {}: {outcome}; it is Active", record.model_id));
                let mut revealed = json!({
                    "model_id": record.model_id,
                    "commit_epoch": record.commit_epoch,
                    "reveal_epoch": epoch,
                    "checksum": record.checksum,
                    "url": record.url,
                });
                if ctx.input("commit").is_none() {
                    revealed["pending_of"] = json!(owner.to_string());
                }
                std::fs::write(ctx.output("revealed"), serde_json::to_vec_pretty(&revealed)?)?;
                Ok(Outcome::Done)
            }
        }
    }
}

/// Which of `owner`'s models to reveal: the one the pipeline names, or any.
fn selection(
    net: &crate::network::Network,
    with: &RevealWith,
    owner: &soma_flow_chain::SomaAddress,
    store: &std::path::Path,
) -> Result<crate::network::models::Selection> {
    let models = net.epoch()?.system.models;
    crate::network::models::selection(net, &models, owner, with.network.model.as_deref(), store)
}
