//! Weighted averages of weights files, computed tensor by tensor from memory
//! maps so that V1-size models are never held in memory whole.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, View};
use safetensors::SafeTensors;

/// Weights `[1 − β, β]`: the guide's `mine + β·(theirs − mine)` with mine first.
pub fn lerp_weights(beta: f64) -> Vec<f64> {
    vec![1.0 - beta, beta]
}

/// Checks that `weights` can weigh `count` models.
pub fn check_weights(weights: &[f64], count: usize) -> Result<()> {
    ensure!(
        weights.len() == count,
        "{} weights for {count} models",
        weights.len()
    );
    ensure!(
        weights.iter().all(|w| w.is_finite()),
        "weights must be finite numbers"
    );
    let sum: f64 = weights.iter().sum();
    ensure!(
        sum > 0.0,
        "weights must sum to a positive number, not {sum}"
    );
    Ok(())
}

fn map(path: &Path) -> Result<Mmap> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: read-only map of weights files nobody modifies while averaging.
    unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))
}

/// One output tensor, computed when the writer reaches it.
struct Averaged<'a> {
    shape: Vec<usize>,
    sources: Vec<&'a [u8]>,
    weights: &'a [f64],
}

impl View for Averaged<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let f32_at = |bytes: &[u8], i: usize| {
            f64::from(f32::from_le_bytes(
                bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"),
            ))
        };
        let sum: f64 = self.weights.iter().sum();
        // f64 accumulation: equal inputs come back bit for bit, and weights
        // [1, 0] or [0, 1] reproduce an endpoint exactly.
        let out: Vec<u8> = (0..self.data_len() / 4)
            .flat_map(|i| {
                let value: f64 = self
                    .sources
                    .iter()
                    .zip(self.weights)
                    .map(|(src, w)| w * f32_at(src, i))
                    .sum::<f64>()
                    / sum;
                (value as f32).to_le_bytes()
            })
            .collect();
        Cow::Owned(out)
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 4
    }
}

/// Writes the weighted average of `models` (same keys, shapes, all F32) to `out`.
pub fn average_files(models: &[PathBuf], weights: &[f64], out: &Path) -> Result<()> {
    ensure!(models.len() >= 2, "averaging needs two or more models");
    check_weights(weights, models.len())?;
    let maps = models.iter().map(|p| map(p)).collect::<Result<Vec<_>>>()?;
    let files = maps
        .iter()
        .zip(models)
        .map(|(m, p)| {
            SafeTensors::deserialize(m)
                .with_context(|| format!("{}: not a safetensors file", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let (first, first_path) = (&files[0], &models[0]);
    let mut keys = first.names();
    keys.sort();
    for (file, path) in files.iter().zip(models).skip(1) {
        for key in file.names() {
            if first.tensor(key).is_err() {
                bail!(
                    "{}: tensor `{key}` is not in {}",
                    path.display(),
                    first_path.display()
                );
            }
        }
    }
    let mut tensors = Vec::with_capacity(keys.len());
    for key in keys {
        let reference = first.tensor(key)?;
        let mut sources = Vec::with_capacity(files.len());
        for (file, path) in files.iter().zip(models) {
            let view = file
                .tensor(key)
                .map_err(|_| anyhow::anyhow!("{}: no tensor `{key}`", path.display()))?;
            if view.dtype() != Dtype::F32 {
                bail!(
                    "{}: tensor `{key}` is {:?}, expected F32",
                    path.display(),
                    view.dtype()
                );
            }
            if view.shape() != reference.shape() {
                bail!(
                    "tensor `{key}` has shape {:?} in {} but {:?} in {}",
                    reference.shape(),
                    first_path.display(),
                    view.shape(),
                    path.display()
                );
            }
            sources.push(view.data());
        }
        tensors.push((
            key.to_string(),
            Averaged {
                shape: reference.shape().to_vec(),
                sources,
                weights,
            },
        ));
    }
    safetensors::serialize_to_file(tensors, None, out)
        .with_context(|| format!("writing {}", out.display()))
}
