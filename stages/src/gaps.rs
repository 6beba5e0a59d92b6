//! Domain gaps: for each filled target the network offers, the on-chain loss of my
//! model and of the target's winning model on the target's data (the chain's
//! scoring, the same seed), the distance of my embedding of the data to the target,
//! and whether I would have won. The `gaps` stage and `soma-flow gaps` measure
//! through [`measure`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use soma_flow_chain::{ObjectID, SomaAddress};

use crate::data::{network_files, offer_listed, Offer, Offered, ProgressFn, TargetFilter};
use crate::formats::gaps::Gap;
use crate::network::lifecycle::{self, Revealed};
use crate::network::Network;
use crate::score::{cosine_distance, score_on_blobs};
use crate::BackendChoice;

/// What to measure, and where.
pub struct Measure<'a> {
    pub filter: TargetFilter,
    /// The signer, whose models count as mine (routing) and whose wins `won_by: me`
    /// selects.
    pub owner: Option<SomaAddress>,
    /// My weights.
    pub model: &'a Path,
    /// Winners' weights at hand, by model id; the others are downloaded.
    pub given: HashMap<String, PathBuf>,
    pub seed: u64,
    pub heads: Option<usize>,
    pub backend: BackendChoice,
    /// Fail when a target's data or its winner's weights cannot be had, rather than
    /// skip it.
    pub strict: bool,
    /// Where the targets' data is kept, by checksum.
    pub data_cache: &'a Path,
    /// Where downloaded winners go.
    pub scratch: &'a Path,
    pub note: &'a dyn Fn(String),
    pub progress: ProgressFn<'a>,
}

/// What [`measure`] found.
pub struct Measured {
    /// What the network offered for the filter.
    pub offer: Offer,
    /// One row per target measured, in (epoch, target) order.
    pub gaps: Vec<Gap>,
    /// Targets not measured, with why.
    pub skipped: Vec<String>,
    /// The data of each measured target, by target id.
    pub data: HashMap<String, PathBuf>,
}

pub fn measure(net: &Network, how: &Measure<'_>) -> Result<Measured> {
    let (offer, listed) = offer_listed(net, &how.filter, how.owner)?;
    let models = net.epoch()?.system.models;
    let mine: BTreeSet<ObjectID> = models
        .iter()
        .filter(|m| Some(m.owner) == how.owner)
        .map(|m| m.id)
        .collect();
    let revealed: HashMap<ObjectID, Revealed> = models
        .iter()
        .filter_map(Revealed::of)
        .map(|m| (m.id, m))
        .collect();
    let files = network_files(
        net,
        &offer,
        how.data_cache,
        how.strict,
        how.note,
        how.progress,
    )?;
    let data: HashMap<String, PathBuf> = files.into_iter().map(|f| (f.name, f.path)).collect();

    // Scored per winner, all of its targets in one pass.
    let mut by_winner: BTreeMap<&str, Vec<&Offered>> = BTreeMap::new();
    for t in offer
        .targets
        .iter()
        .filter(|t| data.contains_key(&t.target))
    {
        by_winner.entry(t.model.as_str()).or_default().push(t);
    }
    let mut skipped = Vec::new();
    let mut gaps = Vec::new();
    for (winner, targets) in by_winner {
        let weights = match winner_weights(net, winner, how, &revealed) {
            Ok(path) => path,
            Err(e) if how.strict => return Err(e.context("`strict`")),
            Err(e) => {
                for t in &targets {
                    skipped.push(format!("{}: {e:#}", t.target));
                }
                continue;
            }
        };
        let bytes: Vec<Vec<u8>> = targets
            .iter()
            .map(|t| std::fs::read(&data[&t.target]))
            .collect::<Result<_, _>>()?;
        let blobs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
        (how.progress)(&format!(
            "scoring my model and {winner} on {} target(s)",
            blobs.len()
        ));
        let reports = score_on_blobs(
            &[how.model.to_path_buf(), weights],
            &blobs,
            how.seed,
            how.heads,
            how.backend,
        )?;
        for ((t, report), bytes) in targets.iter().zip(&reports).zip(&bytes) {
            let info = &listed[&t.target];
            let (my_loss, winner_loss) = (report.models[0].loss, report.models[1].loss);
            let winner_is_mine = mine.contains(&t.model.parse()?);
            gaps.push(Gap {
                target: t.target.clone(),
                epoch: t.epoch,
                winner: t.model.clone(),
                my_loss,
                winner_loss,
                margin: my_loss - winner_loss,
                distance: cosine_distance(&report.models[0].embedding, &info.embedding)?,
                routed_to_me: info.model_ids.iter().any(|id| mine.contains(id)),
                would_win: my_loss < winner_loss || (winner_is_mine && my_loss <= winner_loss),
                preview: preview(bytes),
            });
        }
    }
    gaps.sort_by(|a, b| (a.epoch, &a.target).cmp(&(b.epoch, &b.target)));
    Ok(Measured {
        offer,
        gaps,
        skipped,
        data,
    })
}

/// The winning model's weights: given, or downloaded once into the scratch folder.
fn winner_weights(
    net: &Network,
    winner: &str,
    how: &Measure<'_>,
    revealed: &HashMap<ObjectID, Revealed>,
) -> Result<PathBuf> {
    if let Some(path) = how.given.get(winner) {
        return Ok(path.clone());
    }
    let id: ObjectID = winner.parse().context("a recorded model id")?;
    let model = revealed.get(&id).with_context(|| {
        format!("the winning model {winner} is not Active with revealed weights")
    })?;
    let dest = how.scratch.join(format!("{winner}.safetensors"));
    if !dest.exists() {
        (how.progress)(&format!("fetching the winning model {winner}"));
        std::fs::create_dir_all(how.scratch)?;
        lifecycle::fetch(net, model, &dest, how.progress)?;
    }
    Ok(dest)
}

/// The first 60 characters of `bytes`, lossily decoded, on one line.
fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(240)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(60)
        .collect()
}
