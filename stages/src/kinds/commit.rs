//! `commit`: encrypt the weights, upload them, and commit them to the network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use soma_flow_engine::{InputPort, Inputs, Outcome, RunContext, StageKind, WithError};

use super::embed::{embed_file, EmbedWith};
use super::network::{key_dir, NetworkWith};
use super::score::read_embedding;
use crate::network::lifecycle::{self, CommitRecord, ModelTerms, RecordStatus};
use crate::storage;
use crate::training::documents::open_documents;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitWith {
    /// Which network, and who signs.
    #[serde(default)]
    pub network: NetworkWith,
    /// Where the ciphertext is uploaded: `s3://`, `gs://`, `az://`, `http(s)://` or
    /// `file://` (credentials from the environment). Default: a bucket in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Commission in basis points (at most 10000) when the first commit creates the model.
    #[serde(default = "default_commission")]
    pub commission: u16,
    /// Stake when the first commit creates the model.
    #[serde(default = "default_stake")]
    pub stake: u64,
    /// Without an `embedding` input, the genesis embedding is computed from `data`
    /// with these settings (the `embed` kind's `with`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed: Option<serde_json::Value>,
}

fn default_commission() -> u16 {
    1000
}
fn default_stake() -> u64 {
    1000
}

pub struct CommitKind;

impl StageKind for CommitKind {
    type With = CommitWith;
    const NAME: &'static str = "commit";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Encrypts and uploads a model and commits it (and its embedding) to the network";

    fn inputs(&self, _: &CommitWith) -> Inputs {
        Inputs::Fixed(vec![
            InputPort::required("model"),
            InputPort::optional("embedding"),
            InputPort::optional("data"),
        ])
    }

    fn outputs(&self, _: &CommitWith) -> Vec<String> {
        vec!["record".into()]
    }

    /// Computing a missing embedding runs the model.
    fn uses_backend(&self, _: &CommitWith) -> bool {
        true
    }

    fn check(&self, with: &CommitWith) -> Result<(), WithError> {
        embed_settings(with).map_err(|e| WithError::at(&["embed"], format!("{e:#}")))?;
        if with.commission > 10_000 {
            return Err(WithError::at(
                &["commission"],
                format!("{} basis points is over 100%", with.commission),
            )
            .help("the chain accepts at most 10000 (100%); the quickstart uses 1000"));
        }
        with.network.check()
    }

    fn irreproducible(&self, _: &CommitWith, _: &str) -> Option<&'static str> {
        Some("each commit encrypts with a fresh random key")
    }

    fn run(&self, with: &CommitWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let devnet = with.network.open(ctx.store)?;
        let signer = with.network.signer(ctx)?;
        let weights = ctx.input("model").expect("required input");
        let embedding = match (ctx.input("embedding"), ctx.input("data")) {
            (Some(file), _) => read_embedding(file)?,
            (None, Some(data)) => {
                let docs = open_documents(data)?;
                let settings = embed_settings(with)?;
                let file = embed_file(weights, docs.as_ref(), &settings, super::backend(ctx.backend)?, ctx.progress)?;
                file.embedding
            }
            (None, None) => anyhow::bail!("commit needs an `embedding` input, or `data` to compute the genesis embedding from"),
        };
        let storage_url = match &with.storage {
            Some(url) => url.clone(),
            None => storage::local_url(&ctx.store.join("bucket"))?,
        };
        (ctx.progress)(&format!("encrypting and uploading to {storage_url}"));
        let terms = ModelTerms {
            stake: with.stake,
            commission_bps: with.commission,
        };
        let record = super::network::block_on(lifecycle::commit(
            &devnet,
            &signer,
            &storage_url,
            weights,
            &embedding,
            terms,
            &key_dir(ctx.store),
        ))??;
        ctx.note(format!(
            "committed model {} in epoch {} ({} bytes at {}); reveal in epoch {}",
            record.model_id,
            record.commit_epoch,
            record.manifest.size,
            record.manifest.url,
            record.commit_epoch + 1
        ));
        std::fs::write(ctx.output("record"), serde_json::to_vec_pretty(&record)?)?;
        Ok(Outcome::Done)
    }

    /// A commit record from the cache counts only while the network still holds it.
    fn revalidate(
        &self,
        with: &CommitWith,
        outputs: &BTreeMap<String, PathBuf>,
        store: &Path,
    ) -> Result<(), String> {
        let record = read_record(&outputs["record"]).map_err(|e| e.to_string())?;
        let devnet = with.network.open(store).map_err(|e| e.to_string())?;
        match record.check(&devnet).map_err(|e| e.to_string())? {
            RecordStatus::AwaitingReveal { .. } | RecordStatus::Revealed { .. } => Ok(()),
            RecordStatus::Missed { commit_epoch, current_epoch } => Err(format!(
                "the commit from epoch {commit_epoch} missed its reveal window (now epoch {current_epoch})"
            )),
            RecordStatus::Superseded => Err("the network no longer holds this commit".into()),
        }
    }
}

fn embed_settings(with: &CommitWith) -> Result<EmbedWith> {
    let value = with.embed.clone().unwrap_or_else(|| serde_json::json!({}));
    serde_json::from_value(value)
        .context("`embed` takes the `embed` kind's keys: mode, sequences, seed, seq_len, heads")
}

pub fn read_record(path: &Path) -> Result<CommitRecord> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading commit record {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a commit record", path.display()))
}
