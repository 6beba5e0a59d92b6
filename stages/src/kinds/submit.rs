//! `submit`: play a data submitter, as the network's data miners do: score data
//! blobs with open targets' models exactly as the chain's scorer does and fill the
//! targets they fit (SubmitData, the bond from the gas coin). On the local network it
//! gives a pipeline filled targets to learn from; `soma-flow localnet submit` is the
//! same from the command line.

use std::path::PathBuf;

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use soma_flow_chain::ObjectID;
use soma_flow_engine::{
    CachedOutputs, InputPort, Inputs, Outcome, Requirements, RunContext, StageKind, WithError,
};

use crate::network::with::{NetworkSchema, NetworkWith};
use crate::network::{storage_default, submitter};
use crate::training::documents::open_documents;

#[serde_inline_default]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitWith {
    /// Which network, and who submits (the signer pays the bonds).
    #[serde(default)]
    #[schemars(with = "NetworkSchema")]
    pub network: NetworkWith,
    /// Fill at most this many targets.
    #[serde_inline_default(1)]
    pub count: usize,
    /// Try at most this many documents of `data` as blobs, in order.
    #[serde_inline_default(16)]
    pub max_blobs: usize,
    /// Where the blobs are uploaded (default on the local network: the store's bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Attention heads of the models (default: the preset whose shapes match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// Local network only: when no target is open, advance the epoch once so that
    /// targets are generated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub advance: bool,
}

/// One filled target, as `filled` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FilledRow {
    target: String,
    model: String,
    loss: f32,
    distance: f32,
    threshold: f32,
    data_url: String,
}

pub struct SubmitKind;

impl StageKind for SubmitKind {
    type With = SubmitWith;
    const NAME: &'static str = "submit";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Fills open targets with data blobs their models score within the threshold (a data submitter)";

    /// `data`: a dataset (each document one blob) or one blob file.
    fn inputs(&self, _: &SubmitWith) -> Inputs {
        Inputs::Fixed(vec![InputPort::required("data")])
    }

    fn outputs(&self, _: &SubmitWith) -> Vec<String> {
        vec!["filled".into()]
    }

    fn check(&self, with: &SubmitWith) -> Result<(), WithError> {
        with.network.check()?;
        if let Some(url) = &with.storage {
            crate::storage::check_setting("storage", url)?;
        }
        if with.count == 0 {
            return Err(WithError::at(&["count"], "`count: 0` fills nothing"));
        }
        if with.max_blobs == 0 {
            return Err(WithError::at(
                &["max_blobs"],
                "`max_blobs: 0` tries no blob",
            ));
        }
        Ok(())
    }

    fn check_files(&self, with: &SubmitWith, dir: &std::path::Path) -> Result<(), WithError> {
        with.network.check_files(dir)
    }

    fn requirements(&self, _: &SubmitWith) -> Requirements {
        Requirements::backend_in(super::MODEL_RESOURCE)
    }

    fn irreproducible(&self, _: &SubmitWith, _: &str) -> Option<&'static str> {
        Some("fills the network's targets open at run time")
    }

    /// Submissions stand while the targets they filled are still there, filled.
    fn revalidate(&self, with: &SubmitWith, cached: &CachedOutputs<'_>) -> Result<()> {
        let path = cached.output("filled")?;
        let rows: Vec<FilledRow> = serde_json::from_slice(&std::fs::read(path)?)
            .with_context(|| format!("{} is not a list of filled targets", path.display()))?;
        let net = with.network.open(cached.store)?;
        for row in rows {
            let id: ObjectID = row.target.parse().context("a recorded target id")?;
            let target = net
                .block_on(net.client.target(&id))
                .with_context(|| format!("target {id} is gone"))?;
            anyhow::ensure!(
                target.winning_model_id.map(|m| m.to_hex()) == Some(row.model.clone()),
                "target {id} no longer holds this submission"
            );
        }
        Ok(())
    }

    fn run(&self, with: &SubmitWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let net = with.network.open_for(ctx)?;
        let key = with.network.signer(&net, ctx)?;
        let max_size = net.parameters()?.max_submission_data_size;
        let docs = open_documents(ctx.input("data").expect("required input"))?;
        let dir = ctx.scratch.join("blobs");
        std::fs::create_dir_all(&dir)?;
        let mut blobs: Vec<PathBuf> = Vec::new();
        for i in 0..docs.len() {
            if blobs.len() >= with.max_blobs {
                break;
            }
            let doc = docs.get(i);
            if doc.is_empty() || doc.len() as u64 > max_size {
                continue;
            }
            let path = dir.join(format!("{i}.bin"));
            std::fs::write(&path, doc)?;
            blobs.push(path);
        }
        anyhow::ensure!(
            !blobs.is_empty(),
            "no document of `data` fits a submission (1 to {max_size} bytes)"
        );
        let info = net.epoch()?;
        if with.advance && net.targets(Some("open"), Some(info.epoch))?.is_empty() {
            anyhow::ensure!(
                net.is_local(),
                "`advance` works only on a local network: {} advances on its own",
                net.endpoint
            );
            let epoch = net.block_on(net.client.advance_epoch())?;
            (ctx.progress)(&format!("no open target: advanced to epoch {epoch}"));
        }
        let storage = match &with.storage {
            Some(url) => url.clone(),
            None => storage_default(&net, ctx.store)?,
        };
        let how = submitter::Submission {
            blobs: &blobs,
            count: with.count,
            storage: &storage,
            heads: with.heads,
            backend: crate::backend::resolve(ctx.backend)?,
            seed: 0,
        };
        let filled =
            submitter::submit(&net, &key, &how, &ctx.scratch.join("models"), ctx.progress)?;
        let rows: Vec<FilledRow> = filled
            .iter()
            .map(|f| FilledRow {
                target: f.target.to_hex(),
                model: f.model.to_hex(),
                loss: f.loss,
                distance: f.distance,
                threshold: f.threshold,
                data_url: f.data_url.clone(),
            })
            .collect();
        for r in &rows {
            ctx.note(format!(
                "filled target {} through model {} (loss {:.4}, distance {:.4} <= {:.4})",
                r.target, r.model, r.loss, r.distance, r.threshold
            ));
        }
        if rows.is_empty() {
            ctx.note("no target filled: no blob's winning embedding lay within a target's distance threshold");
        }
        std::fs::write(ctx.output("filled"), serde_json::to_vec_pretty(&rows)?)?;
        Ok(Outcome::Done)
    }
}
