//! The on-chain score: each model's loss and embedding on one data blob, the
//! winner (lowest loss, first on ties) and cosine distance to a target.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ElementConversion;
use serde::{Deserialize, Serialize};

use crate::backend::Pass;
use crate::backend::{run_on, BackendChoice, BackendTask};
use crate::contract::chain_batches;
use crate::loss::{objective, BatchTensors};
use crate::model::SomaModel;
use crate::sigreg::chain_noise;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelScore {
    pub path: PathBuf,
    pub loss: f32,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreReport {
    pub models: Vec<ModelScore>,
    /// Index into `models` of the lowest loss (the first among equals).
    pub winner: usize,
}

impl ScoreReport {
    pub fn winner(&self) -> &ModelScore {
        &self.models[self.winner]
    }

    /// Cosine distance from the winner's embedding to `target`.
    pub fn winner_distance(&self, target: &[f32]) -> Result<f64> {
        cosine_distance(&self.winner().embedding, target)
    }
}

/// Loss and embedding of one model, kept as the chain keeps them: running
/// means over batches, each batch weighing the same whatever its size.
#[derive(Debug, Clone, Default)]
struct RunningScore {
    batches: usize,
    loss: f32,
    embedding: Vec<f32>,
}

impl RunningScore {
    fn add(&mut self, loss: f32, embedding: &[f32]) {
        self.batches += 1;
        let n = self.batches as f32;
        if self.embedding.is_empty() {
            self.embedding = vec![0.0; embedding.len()];
        }
        self.loss += (loss - self.loss) / n;
        for (mean, x) in self.embedding.iter_mut().zip(embedding) {
            *mean += (x - *mean) / n;
        }
    }
}

/// Scores one loaded model on `data` with the chain's batches and noise.
pub fn score_model<B: Backend>(
    model: &SomaModel<B>,
    data: &[u8],
    seed: u64,
    device: &B::Device,
) -> Result<(f32, Vec<f32>)> {
    if data.is_empty() {
        bail!("the data blob is empty: the chain has nothing to score");
    }
    let dim = model.config().embedding_dim;
    let mut running = RunningScore::default();
    for (index, batch) in chain_batches(data).enumerate() {
        let tensors = BatchTensors::new(&batch, device);
        let noise = chain_noise::<B>(seed, index as u64, dim, device);
        let terms = objective(model, &tensors, noise, Pass::Device);
        let embedding = terms.rep.mean_dim(1).mean_dim(0).reshape([dim]);
        let loss = terms.total.into_scalar().elem::<f32>();
        let embedding = embedding
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        running.add(loss, &embedding);
    }
    Ok((running.loss, running.embedding))
}

/// Index of the lowest loss, the first among equals; NaN never wins.
pub fn winner_index(losses: &[f32]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, loss) in losses.iter().enumerate() {
        if loss.is_nan() {
            continue;
        }
        if best.is_none_or(|b| *loss < losses[b]) {
            best = Some(i);
        }
    }
    best
}

/// `1 - cos(a, b)`.
pub fn cosine_distance(a: &[f32], b: &[f32]) -> Result<f64> {
    if a.len() != b.len() {
        bail!("embeddings differ in length: {} vs {}", a.len(), b.len());
    }
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        bail!("cosine distance of a zero embedding is undefined");
    }
    Ok(1.0 - dot / (na * nb))
}

struct ScoreTask<'a> {
    models: &'a [PathBuf],
    blobs: &'a [&'a [u8]],
    seed: u64,
    heads: Option<usize>,
}

impl BackendTask for ScoreTask<'_> {
    /// Per model, its score on each blob.
    type Output = Result<Vec<Vec<ModelScore>>>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        self.models
            .iter()
            .map(|path| {
                // One model at a time (a V1 model is 4.8 GB), loaded once for every blob.
                let model =
                    SomaModel::<B::InnerBackend>::load_inferred(path, self.heads, 0.0, &device)?;
                self.blobs
                    .iter()
                    .map(|blob| {
                        let (loss, embedding) = score_model(&model, blob, self.seed, &device)
                            .with_context(|| format!("scoring {}", path.display()))?;
                        Ok(ModelScore {
                            path: path.clone(),
                            loss,
                            embedding,
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

/// Scores competing weights files on each blob as the chain does: one report per blob.
pub fn score_on_blobs(
    models: &[PathBuf],
    blobs: &[&[u8]],
    seed: u64,
    heads: Option<usize>,
    backend: BackendChoice,
) -> Result<Vec<ScoreReport>> {
    if models.is_empty() {
        bail!("no models to score");
    }
    let per_model = run_on(
        backend,
        ScoreTask {
            models,
            blobs,
            seed,
            heads,
        },
    )??;
    let mut columns: Vec<_> = per_model.into_iter().map(Vec::into_iter).collect();
    (0..blobs.len())
        .map(|_| {
            let scores: Vec<ModelScore> = columns
                .iter_mut()
                .map(|c| c.next().expect("a score per blob"))
                .collect();
            let losses: Vec<f32> = scores.iter().map(|s| s.loss).collect();
            let winner = winner_index(&losses).context("every model's loss is NaN")?;
            Ok(ScoreReport {
                models: scores,
                winner,
            })
        })
        .collect()
}

/// Scores competing weights files on one blob as the chain does.
pub fn score_models(
    models: &[PathBuf],
    data: &[u8],
    seed: u64,
    heads: Option<usize>,
    backend: BackendChoice,
) -> Result<ScoreReport> {
    let mut reports = score_on_blobs(models, &[data], seed, heads, backend)?;
    Ok(reports.pop().expect("one report per blob"))
}

/// Reads a blob to score; large files are mapped rather than read.
pub fn map_data(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: read-only map of a data file that nobody modifies while scoring.
    unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))
}

/// The blobs to score: each document is one blob (a file is one document); empty
/// documents have nothing to score and are left out.
pub fn blobs(docs: &dyn crate::training::documents::Documents, max: usize) -> Vec<&[u8]> {
    (0..docs.len())
        .map(|i| docs.get(i))
        .filter(|d| !d.is_empty())
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_loss_wins_and_ties_go_to_the_first() {
        assert_eq!(winner_index(&[2.0, 1.0, 1.0, 3.0]), Some(1));
        assert_eq!(winner_index(&[f32::NAN, 5.0]), Some(1));
        assert_eq!(winner_index(&[]), None);
    }

    #[test]
    fn running_means_weigh_batches_equally() {
        let mut r = RunningScore::default();
        r.add(1.0, &[0.0, 2.0]);
        r.add(3.0, &[2.0, 2.0]);
        r.add(5.0, &[4.0, 2.0]);
        assert_eq!(r.loss, 3.0);
        assert_eq!(r.embedding, vec![2.0, 2.0]);
    }

    #[test]
    fn cosine_distance_of_parallel_and_orthogonal_vectors() {
        assert!(cosine_distance(&[1.0, 0.0], &[2.0, 0.0]).unwrap().abs() < 1e-12);
        assert!((cosine_distance(&[1.0, 0.0], &[0.0, 3.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!(cosine_distance(&[1.0], &[1.0, 2.0]).is_err());
    }
}
