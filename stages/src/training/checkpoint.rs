//! Resumable checkpoints in a stage's scratch directory: model and optimizer
//! records (parameter ids included, so the optimizer state finds its
//! parameters again), the step and the metrics so far. Each is written to a
//! temporary directory, synced to disk (files, then the directory), and renamed
//! into place, so neither a kill nor a power loss leaves a torn checkpoint that a
//! later run would trust.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::model::SomaModel;

const PREFIX: &str = "checkpoint-";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Optimizer steps done.
    pub step: usize,
    pub seed: u64,
    pub metrics: Vec<serde_json::Value>,
}

fn recorder() -> BinFileRecorder<FullPrecisionSettings> {
    BinFileRecorder::new()
}

/// The most advanced complete checkpoint in `scratch`.
pub fn latest(scratch: &Path) -> Result<Option<PathBuf>> {
    if !scratch.is_dir() {
        return Ok(None);
    }
    let mut best: Option<(usize, PathBuf)> = None;
    for entry in std::fs::read_dir(scratch)? {
        let path = entry?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|s| s.parse::<usize>().ok());
        if let Some(step) = step {
            if best.as_ref().is_none_or(|(b, _)| step > *b) {
                best = Some((step, path));
            }
        }
    }
    Ok(best.map(|(_, p)| p))
}

pub fn save<B, O>(scratch: &Path, model: &SomaModel<B>, optim: &O, state: &State) -> Result<()>
where
    B: AutodiffBackend,
    O: Optimizer<SomaModel<B>, B>,
{
    let done = scratch.join(format!("{PREFIX}{}", state.step));
    let tmp = scratch.join(format!("tmp-{PREFIX}{}", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    model
        .clone()
        .save_file(tmp.join("model"), &recorder())
        .context("saving the model checkpoint")?;
    Recorder::<B>::record(&recorder(), optim.to_record(), tmp.join("optimizer"))
        .context("saving the optimizer checkpoint")?;
    std::fs::write(tmp.join("state.json"), serde_json::to_vec(state)?)?;
    for entry in std::fs::read_dir(&tmp)? {
        std::fs::File::open(entry?.path())?.sync_all()?;
    }
    sync_dir(&tmp)?;
    std::fs::rename(&tmp, &done)
        .with_context(|| format!("publishing checkpoint {}", done.display()))?;
    sync_dir(scratch)?;
    // Older checkpoints are superseded once the new one is in place.
    for entry in std::fs::read_dir(scratch)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path != done && (name.starts_with(PREFIX) || name.starts_with("tmp-")) {
            std::fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Restores model, optimizer and state from checkpoint directory `dir`.
pub fn load<B, O>(
    dir: &Path,
    model: SomaModel<B>,
    optim: O,
    device: &B::Device,
) -> Result<(SomaModel<B>, O, State)>
where
    B: AutodiffBackend,
    O: Optimizer<SomaModel<B>, B>,
{
    let model = model
        .load_file(dir.join("model"), &recorder(), device)
        .with_context(|| format!("loading {}", dir.display()))?;
    let record: O::Record = Recorder::<B>::load(&recorder(), dir.join("optimizer"), device)
        .with_context(|| format!("loading the optimizer state in {}", dir.display()))?;
    let state: State = serde_json::from_slice(&std::fs::read(dir.join("state.json"))?)?;
    Ok((model, optim.load_record(record), state))
}
