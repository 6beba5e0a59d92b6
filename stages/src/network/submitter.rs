//! A data submitter, played as the network's data miners play it: for each open
//! target of the current epoch, score a data blob with the target's models exactly
//! as the chain's scorer does (`score::score_models`), and when the winner's
//! embedding lies within the target's distance threshold, upload the blob and fill
//! the target with a signed SubmitData (the bond is taken from the gas coin).
//! `soma-flow localnet submit` runs it, so that tests and users see filled targets.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use soma_flow_chain::client::TargetInfo;
use soma_flow_chain::{Digest, Manifest, ObjectID, SecretKey, SubmissionManifest};

use super::lifecycle::{fetch, Revealed};
use super::Network;
use crate::data::ProgressFn;
use crate::score::{cosine_distance, score_models, ScoreReport};
use crate::{storage, BackendChoice};

/// How to submit.
pub struct Submission<'a> {
    /// Data blobs, tried in order for each target.
    pub blobs: &'a [PathBuf],
    /// Fill at most this many targets.
    pub count: usize,
    /// Where blobs are uploaded (their manifest URL).
    pub storage: &'a str,
    pub heads: Option<usize>,
    pub backend: BackendChoice,
    /// The scorer's noise seed.
    pub seed: u64,
}

/// A target this submitter filled.
#[derive(Debug, Clone)]
pub struct Filled {
    pub target: ObjectID,
    pub model: ObjectID,
    pub blob: PathBuf,
    pub loss: f32,
    pub distance: f32,
    pub threshold: f32,
    pub data_url: String,
}

/// Epochs shorter than this leave no time to score a blob with a target's models and
/// send it before the target expires (its epoch's end).
const MIN_EPOCH_MS: u64 = 5_000;

/// Refuses, before any work, a network whose epochs are too short for a submission:
/// after the main job (2 s epochs) every target would expire while blobs are scored.
fn check_epoch_length(net: &Network, epoch_duration_ms: u64) -> Result<()> {
    // The store's local network advances by the clock only when made so.
    let timed = match net.local_dir() {
        Some(dir) => super::local::Settings::read(dir)?.and_then(|s| s.epoch_duration_ms),
        None => Some(epoch_duration_ms),
    };
    let Some(ms) = timed.filter(|ms| *ms < MIN_EPOCH_MS) else {
        return Ok(());
    };
    let how = match net.is_local() {
        true => {
            "make them longer with `soma-flow localnet set-epoch 10m`, or manual with \
                 `soma-flow localnet set-epoch manual` (they then advance with `soma-flow \
                 localnet advance-epoch`)"
        }
        false => "submit to a network with longer epochs",
    };
    bail!(
        "epochs on {} last {} ms: too short to score a blob with a target's models and send \
         it before the target expires; {how}",
        net.endpoint,
        ms
    )
}

/// Fills up to `how.count` open targets; `work` holds the fetched models.
pub fn submit(
    net: &Network,
    key: &SecretKey,
    how: &Submission<'_>,
    work: &Path,
    progress: ProgressFn<'_>,
) -> Result<Vec<Filled>> {
    let info = net.epoch()?;
    check_epoch_length(net, info.system.parameters.epoch_duration_ms)?;
    let max_size = info.system.parameters.max_submission_data_size;
    let mut largest = 0;
    for blob in how.blobs {
        let size = std::fs::metadata(blob)
            .with_context(|| format!("cannot read data blob {}", blob.display()))?
            .len();
        if size == 0 || size > max_size {
            bail!(
                "{} holds {size} bytes; a submission must hold 1 to {max_size} bytes \
                 (max_submission_data_size)",
                blob.display()
            );
        }
        largest = largest.max(size);
    }
    let each = info.system.parameters.submit_data_cost(largest);
    net.ensure_balance(
        &key.address(),
        each * how.count as u64,
        "the submissions' bonds and fees",
    )?;
    let revealed: HashMap<ObjectID, Revealed> = info
        .system
        .models
        .iter()
        .filter_map(Revealed::of)
        .map(|m| (m.id, m))
        .collect();
    std::fs::create_dir_all(work)?;
    let mut run = Run {
        net,
        key,
        how,
        work,
        progress,
        revealed,
        weights: HashMap::new(),
        scores: HashMap::new(),
        sent: HashSet::new(),
        filled: Vec::new(),
    };
    // A target accepts data only in the epoch it was generated in: when scoring takes
    // the epoch past, the new epoch's targets are listed again (scores are kept).
    let mut epoch = info.epoch;
    for round in 0..EPOCH_ROUNDS {
        let open = net.targets(Some("open"), Some(epoch))?;
        if round == 0 && open.is_empty() {
            bail!(
                "{} has no open target in epoch {epoch} (targets are generated at each epoch \
                 change once a model is Active: `soma-flow localnet advance-epoch`)",
                net.endpoint
            );
        }
        match run.fill_epoch(&open, epoch)? {
            None => return Ok(run.filled),
            Some(now) => {
                progress(&format!(
                    "epoch {now} began while scoring: listing its targets"
                ));
                epoch = now;
            }
        }
    }
    bail!(
        "the epoch changed {EPOCH_ROUNDS} times while blobs were scored: epochs on {} are \
         shorter than a submission takes{}",
        net.endpoint,
        match net.is_local() {
            true => " (make them longer: `soma-flow localnet set-epoch 10m`)",
            false => "",
        }
    )
}

/// One submission run's state: the models fetched, the scores kept across epochs,
/// the blobs sent and the targets filled.
struct Run<'a> {
    net: &'a Network,
    key: &'a SecretKey,
    how: &'a Submission<'a>,
    work: &'a Path,
    progress: ProgressFn<'a>,
    revealed: HashMap<ObjectID, Revealed>,
    weights: HashMap<ObjectID, PathBuf>,
    scores: HashMap<(usize, Vec<ObjectID>), ScoreReport>,
    sent: HashSet<usize>,
    filled: Vec<Filled>,
}

impl Run<'_> {
    /// Fills `open` targets of `epoch` until `count` are filled; `Some(now)` when the
    /// epoch passed first.
    fn fill_epoch(&mut self, open: &[TargetInfo], epoch: u64) -> Result<Option<u64>> {
        for target in open {
            if self.filled.len() >= self.how.count {
                break;
            }
            if let Some(now) = self.fill(target, epoch)? {
                return Ok(Some(now));
            }
        }
        Ok(None)
    }

    /// Fills `target` with the first blob (not yet sent ones first, so that several
    /// fills carry different data) whose winning embedding lies within its threshold;
    /// `Some(now)` when the epoch passed before it could be sent.
    fn fill(&mut self, target: &TargetInfo, epoch: u64) -> Result<Option<u64>> {
        let models: Vec<ObjectID> = target
            .model_ids
            .iter()
            .copied()
            .filter(|id| self.revealed.contains_key(id))
            .collect();
        if models.is_empty() {
            return Ok(None);
        }
        let paths = self.weights_of(&models)?;
        let threshold = target.distance_threshold.unwrap_or(0.0);
        let mut order: Vec<usize> = (0..self.how.blobs.len()).collect();
        order.sort_by_key(|i| self.sent.contains(i));
        for index in order {
            let blob = &self.how.blobs[index];
            let how = self.how;
            let report = match self.scores.entry((index, models.clone())) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let data = crate::score::map_data(blob)?;
                    e.insert(score_models(
                        &paths,
                        &data,
                        how.seed,
                        how.heads,
                        how.backend,
                    )?)
                }
            };
            let winner = report.winner();
            let distance = cosine_distance(&winner.embedding, &target.embedding)? as f32;
            if distance > threshold {
                continue;
            }
            let now = self.net.epoch()?.epoch;
            if now != epoch {
                return Ok(Some(now));
            }
            let (model, loss, embedding) =
                (models[report.winner], winner.loss, winner.embedding.clone());
            let net = self.net;
            let sent = net.block_on(storage::upload_file(
                blob,
                &storage::join_url(how.storage, &format!("data/{}.bin", hash_name(blob)?)),
            ))?;
            let manifest = SubmissionManifest {
                manifest: Manifest::new(&sent.url, Digest(sent.checksum.0), sent.size)?,
            };
            net.block_on(net.client.submit_data(
                self.key,
                &target.id,
                &manifest,
                &model,
                &embedding,
                distance,
                &[loss],
            ))
            .with_context(|| format!("the submission to target {} was not accepted", target.id))?;
            self.sent.insert(index);
            self.filled.push(Filled {
                target: target.id,
                model,
                blob: blob.clone(),
                loss,
                distance,
                threshold,
                data_url: sent.url,
            });
            break;
        }
        Ok(None)
    }

    /// The weights of `models`, each fetched once into the work folder.
    fn weights_of(&mut self, models: &[ObjectID]) -> Result<Vec<PathBuf>> {
        for id in models {
            if !self.weights.contains_key(id) {
                let path = self.work.join(format!("{}.safetensors", id.to_hex()));
                if !path.exists() {
                    (self.progress)(&format!("fetching model {id}"));
                    fetch(self.net, &self.revealed[id], &path, self.progress)?;
                }
                self.weights.insert(*id, path);
            }
        }
        Ok(models.iter().map(|id| self.weights[id].clone()).collect())
    }
}

/// How many epoch changes one submission run follows before it gives up.
const EPOCH_ROUNDS: usize = 4;

/// A blob's object name: its Blake2b-256.
fn hash_name(blob: &Path) -> Result<String> {
    Ok(crate::crypto::hash_file(blob)?.input.to_hex())
}
