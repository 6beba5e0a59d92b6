//! A fetch-competitors directory: the weights files and `models.json`, the list
//! of [`Competitor`]s naming them.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

/// The listing's file name inside the directory.
pub const LISTING: &str = "models.json";

/// One entry of `models.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Competitor {
    pub id: String,
    /// The weights file, relative to the directory.
    pub file: String,
    #[serde(default)]
    pub embedding: Vec<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The network manifest's Blake2b-256 of the stored (encrypted) weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// SHA-256 of a file downloaded from `urls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

pub fn write(dir: &Path, competitors: &[Competitor]) -> Result<()> {
    let path = dir.join(LISTING);
    std::fs::write(&path, serde_json::to_vec_pretty(competitors)?)
        .with_context(|| format!("writing {}", path.display()))
}

pub fn read(dir: &Path) -> Result<Vec<Competitor>> {
    let path = dir.join(LISTING);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The weights files of a directory, labelled by model id.
pub fn files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    Ok(read(dir)?
        .into_iter()
        .map(|c| (c.id, dir.join(c.file)))
        .collect())
}

/// The weights files of inputs that are each a safetensors file or a
/// fetch-competitors directory.
pub fn model_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files_out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            files_out.extend(files(input)?.into_iter().map(|(_, p)| p));
        } else {
            files_out.push(input.clone());
        }
    }
    Ok(files_out)
}

/// One model to start from: a safetensors file, or a fetch-competitors directory
/// holding one model or none (a continuous job's first epoch has no earlier model).
pub fn single_model(input: &Path) -> Result<Option<PathBuf>> {
    if !input.is_dir() {
        return Ok(Some(input.to_owned()));
    }
    let mut models = files(input)?;
    ensure!(
        models.len() <= 1,
        "`init` ({}) holds {} models; give one (e.g. fetch-competitors with `ids: [ID]` or `own: true`)",
        input.display(),
        models.len()
    );
    Ok(models.pop().map(|(_, path)| path))
}
