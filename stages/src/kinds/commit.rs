//! `commit`: encrypt the weights, upload them, and commit them to the network.

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use soma_flow_engine::{
    CachedOutputs, InputPort, Inputs, Outcome, Requirements, RunContext, StageKind, WithError,
};

use crate::formats::embedding;
use crate::model::weights::inspect;
use crate::network::lifecycle::{self, CommitRecord, ModelTerms, Publish, RecordStatus, Upload};
use crate::network::with::{NetworkSchema, NetworkWith};
use crate::network::{key_dir, Endpoint};
use crate::training::documents::open_documents;
use crate::training::embedding::{embed_file, EmbedWith};

#[serde_inline_default]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitWith {
    /// Which network, and who signs.
    #[serde(default)]
    #[schemars(with = "NetworkSchema")]
    pub network: NetworkWith,
    /// Where the ciphertext is uploaded: `s3://`, `gs://`, `az://`, `http(s)://` or
    /// `file://` (credentials from the environment). Default on the local network: a
    /// bucket in the store; other networks need a place validators can download from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// The public `http(s)://` address of `storage`, written into the manifest for
    /// validators to download from (e.g. `https://bucket.s3.amazonaws.com/prefix` for
    /// `s3://bucket/prefix`); default: `storage` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Commission in basis points (at most 10000) when the first commit creates the model.
    #[serde_inline_default(1000)]
    pub commission: u16,
    /// Stake in shannons (10^-9 SOMA) when the first commit creates the model;
    /// default: the chain's minimum model stake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake: Option<u64>,
    /// Without an `embedding` input, the genesis embedding is computed from `data`
    /// with these settings (the `embed` kind's `with`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed: Option<EmbedWith>,
}

pub struct CommitKind;

impl StageKind for CommitKind {
    type With = CommitWith;
    const NAME: &'static str = "commit";
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "Encrypts and uploads a model and commits it (and its embedding) to the network";

    fn inputs(&self, _: &CommitWith) -> Inputs {
        Inputs::Fixed(vec![
            InputPort::required("model"),
            InputPort::one_of("embedding", "the embedding, or the data to compute it from"),
            InputPort::one_of("data", "the embedding, or the data to compute it from"),
        ])
    }

    fn outputs(&self, _: &CommitWith) -> Vec<String> {
        vec!["record".into()]
    }

    /// Computing a missing embedding reads and runs the model.
    fn requirements(&self, _: &CommitWith) -> Requirements {
        Requirements::backend_in(super::MODEL_RESOURCE)
    }

    fn check(&self, with: &CommitWith) -> Result<(), WithError> {
        if let Some(embed) = &with.embed {
            embed.check().map_err(|e| e.within("embed"))?;
            if embed.network.is_some() {
                return Err(WithError::at(
                    &["embed", "network"],
                    "commit computes the genesis embedding from `data`",
                )
                .help("update an embedding from won data in an `embed` stage"));
            }
        }
        if with.commission > 10_000 {
            return Err(WithError::at(
                &["commission"],
                format!("{} basis points is over 100%", with.commission),
            )
            .help("the chain accepts at most 10000 (100%); the quickstart uses 1000"));
        }
        with.network.check()?;
        let urls = [("storage", &with.storage), ("public_url", &with.public_url)];
        for (key, url) in urls {
            if let Some(url) = url {
                crate::storage::check_setting(key, url)?;
            }
        }
        let endpoint = with.network.endpoint();
        let public = with.public_url.as_deref().or(with.storage.as_deref());
        match public {
            None if endpoint != Endpoint::Local => Err(WithError::at(
                &["storage"],
                "a network's validators download the weights from the manifest URL: give `storage`",
            )
            .help("e.g. `storage: s3://bucket/prefix` with `public_url: https://bucket.s3.amazonaws.com/prefix`")),
            // Testnet's validators fetch over HTTP; a fullnode of one's own may read more.
            Some(url) if endpoint == Endpoint::Testnet && !(url.starts_with("https://") || url.starts_with("http://")) => {
                Err(WithError::at(
                    &[if with.public_url.is_some() { "public_url" } else { "storage" }],
                    format!("validators cannot download from `{url}`"),
                )
                .help("give `public_url`, the http(s):// address the uploaded objects are readable at"))
            }
            _ => Ok(()),
        }
    }

    fn check_files(&self, with: &CommitWith, dir: &std::path::Path) -> Result<(), WithError> {
        with.network.check_files(dir)
    }

    /// It puts a model on the network under the owner's key and stake: never one built
    /// on a remote entry nobody verified, unless the user trusts `any`.
    fn needs_verified_inputs(&self, _: &CommitWith) -> bool {
        true
    }

    fn irreproducible(&self, _: &CommitWith, _: &str) -> Option<&'static str> {
        Some("each commit encrypts with a fresh random key")
    }

    fn run(&self, with: &CommitWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let net = with.network.open_for(ctx)?;
        let key = with.network.signer(&net, ctx)?;
        let weights = ctx.input("model").expect("required input");
        // The chain's architecture, checked before anything is computed or sent.
        let params = net.parameters()?;
        let arch = inspect(weights, None)
            .with_context(|| format!("{} is not a SOMA V1 model", weights.display()))?;
        anyhow::ensure!(
            arch.embedding_dim as u64 == params.target_embedding_dim,
            "the model's embedding dimension is {}, but {} demands {} (its target_embedding_dim)",
            arch.embedding_dim,
            net.endpoint,
            params.target_embedding_dim
        );
        let embedding = match (ctx.input("embedding"), ctx.input("data")) {
            (Some(file), _) => embedding::read(file)?,
            (None, Some(data)) => {
                let docs = open_documents(data)?;
                let settings = with.embed.clone().unwrap_or_default();
                let file = embed_file(weights, docs.as_ref(), &settings, crate::backend::resolve(ctx.backend)?, ctx.progress)?;
                file.embedding
            }
            (None, None) => anyhow::bail!("commit needs an `embedding` input, or `data` to compute the genesis embedding from"),
        };
        let upload = match &with.storage {
            Some(url) => url.clone(),
            None => crate::network::storage_default(&net, ctx.store)?,
        };
        // Which of the signer's models: the one the pipeline names, or a new one.
        let name = with.network.model_name();
        let models = net.epoch()?.system.models;
        let named = crate::network::models::resolve(
            &net,
            &models,
            &key.address(),
            name,
            ctx.store,
            &|text| ctx.note(text),
        )?;
        let publish = Publish {
            model: Some(named),
            terms: ModelTerms {
                stake: with.stake,
                commission_bps: with.commission.into(),
            },
            upload: Upload {
                public: with.public_url.clone().unwrap_or_else(|| upload.clone()),
                upload,
            },
            key_dir: key_dir(ctx.store),
        };
        soma_flow_engine::store::private_dir(&publish.key_dir)?;
        let record = lifecycle::commit(&net, &key, weights, &embedding, &publish, ctx.progress)?;
        crate::network::models::remember(&net, &key.address(), name, &record.model()?, ctx.store)?;
        ctx.note(format!(
            "committed model {} (`{name}`) in epoch {} ({} bytes at {}); reveal in epoch {}",
            record.model_id,
            record.commit_epoch,
            record.size,
            record.url,
            record.commit_epoch + 1
        ));
        record.write(&ctx.output("record"))?;
        Ok(Outcome::Done)
    }

    /// A commit record from the cache counts only while the network still holds it.
    fn revalidate(&self, with: &CommitWith, cached: &CachedOutputs<'_>) -> Result<()> {
        let record = CommitRecord::read(cached.output("record")?)?;
        let info = with.network.open(cached.store)?.epoch()?;
        match record.status(&info.system.models, info.epoch)? {
            RecordStatus::AwaitingReveal { .. } | RecordStatus::Revealed { .. } => Ok(()),
            RecordStatus::Missed { commit_epoch, current_epoch } => anyhow::bail!(
                "the commit from epoch {commit_epoch} missed its reveal window (now epoch {current_epoch})"
            ),
            RecordStatus::Superseded => anyhow::bail!("the network no longer holds this commit"),
        }
    }
}
