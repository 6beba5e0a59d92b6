//! `embed`: the embedding a model registers, from a sample of its training
//! data (genesis) or from the data it won (update).

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use soma_flow_engine::{InputPort, Inputs, Outcome, RunContext, StageKind, WithError};

use crate::backend::{run_on, BackendTask};
use crate::contract::SEQ_LEN;
use crate::crypto::hash_file;
use crate::model::SomaModel;
use crate::training::documents::{open_documents, Documents};
use crate::training::embedding::{embed, EmbedMode, Embedding, Sample};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedWith {
    #[serde(default = "default_mode")]
    pub mode: EmbedMode,
    /// Sequences sampled in genesis mode (update mode uses them all).
    #[serde(default = "default_sequences")]
    pub sequences: usize,
    /// Seeds the genesis sample.
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Attention heads of the model (default: V1's 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
}

fn default_mode() -> EmbedMode {
    EmbedMode::Genesis
}
fn default_sequences() -> usize {
    256
}
fn default_seq_len() -> usize {
    SEQ_LEN
}

/// What `embedding/embedding.json` holds besides the vector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingFile {
    pub embedding: Vec<f32>,
    pub dim: usize,
    pub mode: EmbedMode,
    pub seed: u64,
    pub seq_len: usize,
    pub sequences: usize,
    /// Blake2b-256 of the model weights.
    pub model_hash: String,
}

pub struct EmbedKind;

impl StageKind for EmbedKind {
    type With = EmbedWith;
    const NAME: &'static str = "embed";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Unit-norm model embedding: mean-pooled final representations over sampled or won data";

    fn inputs(&self, _: &EmbedWith) -> Inputs {
        Inputs::Fixed(vec![
            InputPort::required("model"),
            InputPort::required("data"),
        ])
    }

    fn outputs(&self, _: &EmbedWith) -> Vec<String> {
        vec!["embedding".into()]
    }

    fn check(&self, with: &EmbedWith) -> Result<(), WithError> {
        if with.sequences == 0 {
            return Err(WithError::at(
                &["sequences"],
                "`sequences` must be at least 1",
            ));
        }
        if with.seq_len == 0 {
            return Err(WithError::at(&["seq_len"], "`seq_len` must be at least 1"));
        }
        if with.heads == Some(0) {
            return Err(WithError::at(&["heads"], "`heads` must be at least 1"));
        }
        Ok(())
    }

    fn uses_backend(&self, _: &EmbedWith) -> bool {
        true
    }

    fn resource(&self, _: &EmbedWith) -> Option<String> {
        Some(super::MODEL_RESOURCE.into())
    }

    fn run(&self, with: &EmbedWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let model = ctx.input("model").expect("required input");
        let docs = open_documents(ctx.input("data").expect("required input"))?;
        let file = embed_file(
            model,
            docs.as_ref(),
            with,
            super::backend(ctx.backend)?,
            ctx.progress,
        )?;
        write_embedding(&ctx.output("embedding"), &file)?;
        ctx.note(format!(
            "{:?} embedding over {} sequences (dim {})",
            file.mode, file.sequences, file.dim
        ));
        Ok(Outcome::Done)
    }
}

/// Computes the embedding of the weights at `model` with its provenance.
pub fn embed_file(
    model: &Path,
    docs: &dyn Documents,
    with: &EmbedWith,
    backend: crate::BackendChoice,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<EmbeddingFile> {
    struct Task<'a> {
        model: &'a Path,
        docs: &'a dyn Documents,
        with: &'a EmbedWith,
        progress: &'a (dyn Fn(&str) + Sync),
    }
    impl BackendTask for Task<'_> {
        type Output = Result<Embedding>;
        fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
            let model = SomaModel::<B::InnerBackend>::load_inferred(
                self.model,
                self.with.heads,
                0.0,
                &device,
            )?;
            let sample = Sample {
                mode: self.with.mode,
                sequences: self.with.sequences,
                seed: self.with.seed,
                seq_len: self.with.seq_len,
            };
            embed(&model, self.docs, sample, &device, self.progress)
        }
    }
    let embedding = run_on(
        backend,
        Task {
            model,
            docs,
            with,
            progress,
        },
    )??;
    let model_hash = hash_file(model)
        .with_context(|| format!("hashing {}", model.display()))?
        .input
        .to_hex();
    Ok(EmbeddingFile {
        dim: embedding.vector.len(),
        embedding: embedding.vector,
        mode: with.mode,
        seed: with.seed,
        seq_len: with.seq_len,
        sequences: embedding.sequences,
        model_hash,
    })
}

/// Writes `embedding.json` and the raw little-endian `embedding.f32` into `dir`.
pub fn write_embedding(dir: &Path, file: &EmbeddingFile) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("embedding.json"), serde_json::to_vec_pretty(file)?)?;
    let raw: Vec<u8> = file
        .embedding
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("embedding.f32"), raw)?;
    Ok(())
}
