//! Model embeddings: final-layer representations mean-pooled over positions,
//! per sequence, and the registered embedding built from them.

use anyhow::{ensure, Result};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::documents::Documents;
use super::sampler::{derive_seed, SequenceIndex, Stream};
use super::settings::Positions;
use crate::contract::BATCH_SIZE;
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
