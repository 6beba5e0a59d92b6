//! Embeddings as stages pass them: an embed stage's directory (`embedding.json`
//! with its provenance, and the raw little-endian `embedding.f32`), or, given by
//! hand, a JSON array of numbers or a file of little-endian f32 values.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::training::embedding::EmbedMode;

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
    /// An update from the network's wins: the period it looked at and whether it
    /// updated (or kept the registered embedding, not being due).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Period>,
}

/// The wins an update looked at: filled targets won by `model` since `since_epoch`,
/// besides those an earlier update used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub model: String,
    pub since_epoch: u64,
    /// The won targets.
    pub wins: Vec<String>,
    /// Whether the update was due and made; otherwise the embedding is the one
    /// registered.
    pub updated: bool,
}

/// Writes `embedding.json` and the raw little-endian `embedding.f32` into `dir`.
pub fn write(dir: &Path, file: &EmbeddingFile) -> Result<()> {
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

/// An embed stage's output directory, with its provenance.
pub fn read_file(dir: &Path) -> Result<EmbeddingFile> {
    let path = dir.join("embedding.json");
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is not an embedding", path.display()))
}

/// An embedding: a JSON array of numbers, little-endian f32, or an embed stage's
/// output directory (its `embedding.json`).
pub fn read(path: &Path) -> Result<Vec<f32>> {
    if path.is_dir() {
        return read(&path.join("embedding.json"));
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("reading embedding {}", path.display()))?;
    let trimmed = bytes.trim_ascii_start();
    if trimmed.first() == Some(&b'[') || trimmed.first() == Some(&b'{') {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Json {
            Plain(Vec<f32>),
            Wrapped { embedding: Vec<f32> },
        }
        return match serde_json::from_slice::<Json>(&bytes).with_context(|| {
            format!(
                "{}: expected a JSON array of numbers or {{\"embedding\": [...]}}",
                path.display()
            )
        })? {
            Json::Plain(v) | Json::Wrapped { embedding: v } => Ok(v),
        };
    }
    anyhow::ensure!(
        bytes.len() % 4 == 0 && !bytes.is_empty(),
        "{}: expected JSON or little-endian f32 values ({} bytes is not a multiple of 4)",
        path.display(),
        bytes.len()
    );
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_read_as_json_or_f32() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("e.json");
        std::fs::write(&j, "[1.0, -2.5]").unwrap();
        assert_eq!(read(&j).unwrap(), vec![1.0, -2.5]);
        std::fs::write(&j, r#"{"embedding": [0.5]}"#).unwrap();
        assert_eq!(read(&j).unwrap(), vec![0.5]);
        let b = dir.path().join("e.f32");
        std::fs::write(&b, [1.0f32.to_le_bytes(), 3.0f32.to_le_bytes()].concat()).unwrap();
        assert_eq!(read(&b).unwrap(), vec![1.0, 3.0]);
        std::fs::write(&b, [0u8; 5]).unwrap();
        assert!(read(&b).unwrap_err().to_string().contains("multiple of 4"));
    }
}
