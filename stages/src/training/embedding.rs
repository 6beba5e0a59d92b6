//! Model embeddings: final-layer representations mean-pooled over positions,
//! per sequence, and the registered embedding built from them.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use soma_flow_engine::WithError;

use super::documents::Documents;
use super::sampler::{derive_seed, SequenceIndex, Stream};
use super::settings::Positions;
use crate::backend::{run_on, BackendTask};
use crate::contract::{BATCH_SIZE, SEQ_LEN};
use crate::crypto::hash_file;
use crate::formats::embedding::EmbeddingFile;
use crate::loss::BatchTensors;
use crate::model::SomaModel;

/// `rep` `[batch, len, dim]` averaged over positions (PAD and EOS included, as
/// the chain does): `[batch, dim]`.
pub fn pool<B: Backend>(rep: Tensor<B, 3>) -> Tensor<B, 2> {
    let [batch, _, dim] = rep.dims();
    rep.mean_dim(1).reshape([batch, dim])
}

/// Which sequences an embedding is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EmbedMode {
    /// Seeded sample of full-length sequences of the training data.
    Genesis,
    /// Every sequence of the won data.
    Update,
}

/// The unit-norm embedding and how many sequences it averages.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub vector: Vec<f32>,
    pub sequences: usize,
}

/// Which sequences to embed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub mode: EmbedMode,
    /// How many sequences genesis samples.
    pub sequences: usize,
    pub seed: u64,
    pub seq_len: usize,
}

/// Mean of the per-sequence pooled representations, L2-normalised.
pub fn embed<B: Backend>(
    model: &SomaModel<B>,
    docs: &dyn Documents,
    sample: Sample,
    device: &B::Device,
    progress: &dyn Fn(&str),
) -> Result<Embedding> {
    let genesis = sample.mode == EmbedMode::Genesis;
    let index = SequenceIndex::new(docs, sample.seq_len, genesis)?;
    let picks = match sample.mode {
        EmbedMode::Genesis => index.sample_distinct(
            derive_seed(sample.seed, Stream::Embedding, 0, 0),
            sample.sequences,
        ),
        EmbedMode::Update => (0..index.len()).collect(),
    };
    let dim = model.config().embedding_dim;
    let mut sum = vec![0f64; dim];
    for (n, chunk) in picks.chunks(BATCH_SIZE).enumerate() {
        let batch = BatchTensors::new(&index.batch(chunk, Positions::Chain), device);
        let pooled = pool(model.encode(batch.token_ids, batch.positions));
        let values = pooled
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for row in values.chunks_exact(dim) {
            for (s, v) in sum.iter_mut().zip(row) {
                *s += f64::from(*v);
            }
        }
        progress(&format!(
            "embedded {}/{} sequences",
            (n * BATCH_SIZE + chunk.len()),
            picks.len()
        ));
    }
    let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
    ensure!(
        norm > 0.0,
        "the mean representation is zero: no direction to register"
    );
    Ok(Embedding {
        vector: sum.iter().map(|x| (x / norm) as f32).collect(),
        sequences: picks.len(),
    })
}

/// How an embedding is computed: the `embed` kind's `with`, and commit's `embed`.
#[serde_inline_default]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedWith {
    #[serde_inline_default(EmbedMode::Genesis)]
    pub mode: EmbedMode,
    /// Sequences sampled in genesis mode (update mode uses them all).
    #[serde_inline_default(256)]
    pub sequences: usize,
    /// Seeds the genesis sample.
    #[serde(default)]
    pub seed: u64,
    #[serde_inline_default(SEQ_LEN)]
    pub seq_len: usize,
    /// Attention heads of the model (default: V1's 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// `update` only: take the won data from this network (filled targets won by the
    /// signer's model since its last update) and update only when due; otherwise
    /// keep the registered embedding. Without it, `update` embeds the `data` input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<crate::network::with::NetworkSchema>")]
    pub network: Option<crate::network::with::NetworkWith>,
    /// With `network`: due after this many wins since the last update (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_wins: Option<u64>,
    /// With `network`: due this long after the last update, given a win (default `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<soma_flow_engine::duration::HumanDuration>,
}

impl Default for EmbedWith {
    /// The defaults above, as an empty `with` gives them.
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every field has a default")
    }
}

impl EmbedWith {
    /// Checks what deserialisation cannot.
    pub fn check(&self) -> Result<(), WithError> {
        for (key, value) in [
            ("sequences", Some(self.sequences)),
            ("seq_len", Some(self.seq_len)),
            ("heads", self.heads),
        ] {
            if value == Some(0) {
                return Err(WithError::at(&[key], format!("`{key}` must be at least 1")));
            }
        }
        let given = [
            ("network", self.network.is_some()),
            ("every_wins", self.every_wins.is_some()),
            ("every", self.every.is_some()),
        ];
        for (key, present) in given {
            if present && self.network.is_none() {
                return Err(WithError::at(&[key], format!("`{key}` needs `network`"))
                    .help("`network` makes `update` take the won data from the network"));
            }
            if present && self.mode != EmbedMode::Update {
                return Err(WithError::at(
                    &[key],
                    format!("`{key}` belongs to `mode: update`"),
                ));
            }
        }
        if self.every_wins == Some(0) {
            return Err(WithError::at(
                &["every_wins"],
                "`every_wins` must be at least 1",
            ));
        }
        if let Some(network) = &self.network {
            network.check()?;
        }
        Ok(())
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
        update: None,
    })
}
