//! `source: network`: the data that filled the SOMA network's targets. Each winning
//! submission is one document, byte for byte the blob the chain scored. Blobs are
//! downloaded from their manifest URL, or from the fullnode's `/data/{target}`,
//! checked against the manifest's size and Blake2b-256, and kept by checksum, so a
//! fetch that was stopped resumes and a later fetch downloads only new targets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use soma_flow_chain::client::TargetInfo;
use soma_flow_chain::{Checksum, Digest, ObjectID, SomaAddress, TargetV1};

use super::SourceFile;
use crate::data::dataset::SourceRecord;
use crate::data::options::{TargetFilter, WonBy};
use crate::data::progress::ProgressFn;
use crate::network::lifecycle::{download_blob, Blob};
use crate::network::Network;

/// What the network offered for the options: recorded in the dataset's manifest, so
/// that a cached fetch stands only while the network offers exactly the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// The signer whose wins `won_by: me` selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub targets: Vec<Offered>,
}

impl Offer {
    /// The recorded owner, as an address.
    pub fn owner(&self) -> Result<Option<SomaAddress>> {
        self.owner
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_| anyhow::anyhow!("the record names no valid owner"))
    }
}

/// One filled target and the manifest of its winning data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offered {
    pub target: String,
    /// The epoch it was generated and filled in.
    pub epoch: u64,
    /// The model whose score won it.
    pub model: String,
    pub url: String,
    /// Blake2b-256 of the data, hex.
    pub checksum: String,
    pub size: u64,
}

/// The filled targets `filter` selects, the most recent `limit` of them, in the
/// order (epoch, id). `owner` is required for `won_by: me`.
pub fn offer(net: &Network, filter: &TargetFilter, owner: Option<SomaAddress>) -> Result<Offer> {
    Ok(offer_listed(net, filter, owner)?.0)
}

/// [`offer`], with the targets as the network listed them (their embeddings and
/// routed models), by id.
pub fn offer_listed(
    net: &Network,
    filter: &TargetFilter,
    owner: Option<SomaAddress>,
) -> Result<(Offer, HashMap<String, TargetInfo>)> {
    let mut listed = Vec::new();
    for state in filter.states() {
        listed.extend(
            net.targets(Some(state.name()), None)?
                .into_iter()
                .filter(|t| filter.in_epochs(t.generation_epoch))
                .filter(|t| match filter.won_by {
                    WonBy::Any => true,
                    WonBy::Me => owner.is_some() && t.winning_model_owner == owner,
                    WonBy::Model(id) => t.winning_model_id == Some(id),
                }),
        );
    }
    // Most recent first for the limit; then in the order they were filled.
    listed.sort_by_key(|t| std::cmp::Reverse((t.generation_epoch, t.id.0)));
    listed.dedup_by_key(|t| t.id);
    if let Some(limit) = filter.limit {
        listed.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    listed.reverse();
    let mut targets = Vec::with_capacity(listed.len());
    let mut infos = HashMap::with_capacity(listed.len());
    for t in listed {
        let object = net
            .block_on(net.client.object(&t.id))
            .with_context(|| format!("cannot read target {}", t.id))?;
        let full: TargetV1 = object
            .data
            .decode()
            .with_context(|| format!("target {} does not decode as a TargetV1", t.id))?;
        let (Some(data), Some(model)) = (full.winning_data_manifest, full.winning_model_id) else {
            // Listed as filled, yet without winning data: nothing to read.
            continue;
        };
        targets.push(Offered {
            target: t.id.to_hex(),
            epoch: full.generation_epoch,
            model: model.to_hex(),
            url: data.manifest.url().to_string(),
            checksum: hex::encode(data.manifest.checksum().0),
            size: data.manifest.size(),
        });
        infos.insert(t.id.to_hex(), t);
    }
    let offer = Offer {
        owner: owner.map(|o| o.to_string()),
        targets,
    };
    Ok((offer, infos))
}

/// Whether the network still offers exactly what the dataset at `dir` (whose
/// manifest records an offer) was made from: a cached result made from the network's
/// filled targets stands only while it does.
pub fn still_offered(net: &Network, filter: &TargetFilter, dir: &Path) -> Result<()> {
    let recorded = crate::data::Dataset::open(dir)?
        .manifest()
        .network
        .clone()
        .with_context(|| {
            format!(
                "{} holds no record of what the network offered",
                dir.display()
            )
        })?;
    let now = offer(net, filter, recorded.owner()?)?;
    anyhow::ensure!(
        now == recorded,
        "the network's filled targets changed since their data was read"
    );
    Ok(())
}

/// Downloads each offered target's data into `cache` (named by checksum; what is
/// there already and matches is not downloaded again). A target whose data cannot
/// be had or does not match its manifest is an error when `strict`, otherwise
/// skipped with a note.
pub fn files(
    net: &Network,
    offer: &Offer,
    cache: &Path,
    strict: bool,
    note: &dyn Fn(String),
    progress: ProgressFn<'_>,
) -> Result<Vec<SourceFile>> {
    std::fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let mut files = Vec::new();
    for (i, t) in offer.targets.iter().enumerate() {
        progress(&format!(
            "target {} ({}/{}): {} bytes",
            t.target,
            i + 1,
            offer.targets.len(),
            t.size
        ));
        match fetch(net, t, cache, progress) {
            Ok(path) => files.push(SourceFile {
                name: t.target.clone(),
                path,
                raw: true,
                record: SourceRecord {
                    path: t.target.clone(),
                    repo: None,
                    revision: Some(format!("epoch {}", t.epoch)),
                    source_hash: Some(t.checksum.clone()),
                    size: t.size,
                    blake3: String::new(),
                },
            }),
            Err(e) if strict => return Err(e.context("`strict`: every target's data must come")),
            Err(e) => note(format!("skipped target {}: {e:#}", t.target)),
        }
    }
    Ok(files)
}

/// The verified blob of one target, from the cache or downloaded.
fn fetch(net: &Network, t: &Offered, cache: &Path, progress: ProgressFn<'_>) -> Result<PathBuf> {
    let kept = cache.join(format!("{}.bin", t.checksum));
    if verify(&kept, t).is_ok() {
        return Ok(kept);
    }
    let target: ObjectID = t.target.parse().context("a recorded target id")?;
    let manifest = soma_flow_chain::Manifest::new(
        &t.url,
        Digest(
            hex::decode(&t.checksum)
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("a recorded checksum")?,
        ),
        t.size,
    )?;
    let staged = cache.join(format!(".{}.download", t.checksum));
    let check = |path: &Path| verify(path, t);
    download_blob(
        net,
        &manifest,
        Blob::Data(target),
        &staged,
        None,
        Some(&check),
        progress,
    )?;
    std::fs::rename(&staged, &kept).with_context(|| format!("cannot write {}", kept.display()))?;
    Ok(kept)
}

/// Whether `path` holds exactly the data `t`'s manifest names.
fn verify(path: &Path, t: &Offered) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 == t.size,
        "{} bytes, but the manifest says {}",
        bytes.len(),
        t.size
    );
    let sum = hex::encode(Checksum::of(&bytes).0);
    anyhow::ensure!(
        sum == t.checksum,
        "its Blake2b-256 is {sum}, but the manifest says {}",
        t.checksum
    );
    Ok(())
}
