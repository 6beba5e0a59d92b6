//! A data submitter, played as the network's data miners play it: for each open
//! target of the current epoch, score a data blob with the target's models exactly
//! as the chain's scorer does (`score::score_models`), and when the winner's
//! embedding lies within the target's distance threshold, upload the blob and fill
//! the target with a signed SubmitData (the bond is taken from the gas coin).
//! `soma-flow localnet submit` runs it, so that tests and users see filled targets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
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

/// Fills up to `how.count` open targets; `work` holds the fetched models.
pub fn submit(
    net: &Network,
    key: &SecretKey,
    how: &Submission<'_>,
    work: &Path,
    progress: ProgressFn<'_>,
) -> Result<Vec<Filled>> {
    let info = net.epoch()?;
    let max_size = info.system.parameters.max_submission_data_size;
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
    }
    let largest = how
        .blobs
        .iter()
        .filter_map(|b| std::fs::metadata(b).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    let each = info.system.parameters.submit_data_cost(largest);
    net.ensure_balance(
        &key.address(),
        each * how.count as u64,
        "the submissions' bonds and fees",
    )?;
    if net.targets(Some("open"), Some(info.epoch))?.is_empty() {
        bail!(
            "{} has no open target in epoch {} (targets are generated at each epoch change \
             once a model is Active: `soma-flow localnet advance-epoch`)",
            net.endpoint,
            info.epoch
        );
    }
    let revealed: HashMap<ObjectID, Revealed> = info
        .system
        .models
        .iter()
        .filter_map(Revealed::of)
        .map(|m| (m.id, m))
        .collect();
    std::fs::create_dir_all(work)?;
    let mut weights: HashMap<ObjectID, PathBuf> = HashMap::new();
    let mut scores: HashMap<(usize, Vec<ObjectID>), ScoreReport> = HashMap::new();
    let mut filled = Vec::new();
    let mut sent_blobs = std::collections::HashSet::new();
    // A target accepts data only in the epoch it was generated in: when scoring took
    // the epoch past, the new epoch's targets are listed again (scores are kept).
    let mut epoch = info.epoch;
    let mut rounds = 0;
    'epochs: loop {
        rounds += 1;
        if rounds > EPOCH_ROUNDS {
            bail!(
                "the epoch changed {EPOCH_ROUNDS} times while blobs were scored: epochs on {} \
             are shorter than a submission takes",
                net.endpoint
            );
        }
        for target in net.targets(Some("open"), Some(epoch))? {
            if filled.len() >= how.count {
                break 'epochs;
            }
            let models: Vec<ObjectID> = target
                .model_ids
                .iter()
                .copied()
                .filter(|id| revealed.contains_key(id))
                .collect();
            if models.is_empty() {
                continue;
            }
            for id in &models {
                if !weights.contains_key(id) {
                    let path = work.join(format!("{}.safetensors", id.to_hex()));
                    if !path.exists() {
                        progress(&format!("fetching model {id}"));
                        fetch(net, &revealed[id], work, &path, progress)?;
                    }
                    weights.insert(*id, path);
                }
            }
            let threshold = target.distance_threshold.unwrap_or(0.0);
            // Blobs not yet sent first, so that several fills carry different data.
            let mut order: Vec<usize> = (0..how.blobs.len()).collect();
            order.sort_by_key(|i| sent_blobs.contains(i));
            for index in order {
                let blob = &how.blobs[index];
                let key_of = (index, models.clone());
                if !scores.contains_key(&key_of) {
                    let paths: Vec<PathBuf> = models.iter().map(|id| weights[id].clone()).collect();
                    let data = crate::score::map_data(blob)?;
                    let report = score_models(&paths, &data, how.seed, how.heads, how.backend)?;
                    scores.insert(key_of.clone(), report);
                }
                let report = &scores[&key_of];
                let winner = report.winner();
                let distance = cosine_distance(&winner.embedding, &target.embedding)? as f32;
                if distance > threshold {
                    continue;
                }
                let now = net.epoch()?.epoch;
                if now != epoch {
                    progress(&format!(
                        "epoch {now} began while scoring: listing its targets"
                    ));
                    epoch = now;
                    continue 'epochs;
                }
                let model = models[report.winner];
                let sent = net.block_on(storage::upload_file(
                    blob,
                    &storage::join_url(how.storage, &format!("data/{}.bin", hash_name(blob)?)),
                ))?;
                let manifest = SubmissionManifest {
                    manifest: Manifest::new(&sent.url, Digest(sent.checksum.0), sent.size)?,
                };
                net.block_on(net.client.submit_data(
                    key,
                    &target.id,
                    &manifest,
                    &model,
                    &winner.embedding,
                    distance,
                    &[winner.loss],
                ))
                .with_context(|| {
                    format!("the submission to target {} was not accepted", target.id)
                })?;
                sent_blobs.insert(index);
                filled.push(Filled {
                    target: target.id,
                    model,
                    blob: blob.clone(),
                    loss: winner.loss,
                    distance,
                    threshold,
                    data_url: sent.url,
                });
                break;
            }
        }
        break;
    }
    Ok(filled)
}

/// How many epoch changes one submission run follows before it gives up.
const EPOCH_ROUNDS: usize = 4;

/// A blob's object name: its Blake2b-256.
fn hash_name(blob: &Path) -> Result<String> {
    Ok(crate::crypto::hash_file(blob)?.input.to_hex())
}
