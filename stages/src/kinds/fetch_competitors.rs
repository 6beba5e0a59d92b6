//! `fetch-competitors`: revealed models from the network (or plain files and URLs),
//! downloaded, decrypted, checked and validated, as a directory of safetensors with
//! `models.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use soma_flow_engine::yaml::PathSeg;
use soma_flow_engine::{
    CachedOutputs, InputPort, Inputs, KeyContext, Outcome, Parsed, RunContext, StageKind, WithError,
};

use soma_flow_chain::{ObjectID, SomaAddress};

use crate::data::{
    check_sha256, check_url, download_object, io_at, DataError, ProgressFn, Sha256Hex,
};
use crate::formats::competitors::{self, Competitor};
use crate::formats::embedding;
use crate::model::weights::inspect;
use crate::network::lifecycle::{self, Revealed};
use crate::network::with::{NetworkSchema, NetworkWith};
use crate::score::cosine_distance;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchCompetitorsWith {
    /// Which network, and whose models count as one's own (excluded).
    #[serde(default)]
    #[schemars(with = "NetworkSchema")]
    pub network: NetworkWith,
    /// Only these model ids (`0x` + 64 hex digits); default: every Active model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<Parsed<ModelId>>>,
    /// Keep the K models whose embeddings are nearest (cosine) to the `embedding` input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<usize>,
    /// Plain safetensors files (paths relative to the pipeline file), for models from
    /// outside the network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathBuf>,
    /// Instead of the competitors, the signer's own revealed model (none before its
    /// first reveal): what a continuous job trains on from.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own: bool,
    /// Safetensors files to download, for models from outside the network: `s3://`,
    /// `gs://`, `az://`, `https://`, `http://` or `file://` URLs, each alone or as
    /// `{url, sha256, size}` to check the download against. Without `sha256` the
    /// bytes are unverified; their hash is recorded in `models.json` either way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<UrlEntry>,
    /// Fail the stage when a competitor fails a check (default: skip it with a warning).
    #[serde(default)]
    pub strict: bool,
    /// Attention heads used to validate weights whose shapes match no preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
}

/// `network.json`: what the network offered when the models were fetched, so that a
/// cached result is trusted only while it still does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Snapshot {
    /// The signer whose own models were excluded (or selected, with `own`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<Vec<f32>>,
    /// (model id, Blake2b-256 of the revealed ciphertext) of each selected model.
    chosen: Vec<(String, String)>,
}

impl Snapshot {
    fn take(
        net: &crate::network::Network,
        with: &FetchCompetitorsWith,
        owner: Option<SomaAddress>,
        target: Option<Vec<f32>>,
        store: &std::path::Path,
    ) -> Result<(Self, Vec<Revealed>)> {
        let info = net.epoch()?;
        // With `own`, the model the pipeline names (if it names one).
        let which = match (&owner, with.own) {
            (Some(owner), true) => crate::network::models::selection(
                net,
                &info.system.models,
                owner,
                with.network.model.as_deref(),
                store,
            )?,
            _ => crate::network::models::Selection::Any,
        };
        let mut models = select(&info.system.models, with, owner.as_ref(), target.as_deref())?;
        models.retain(|m| which.admits(&m.id));
        let chosen = models
            .iter()
            .map(|m| (m.id.to_hex(), hex::encode(m.manifest.checksum().0)))
            .collect();
        Ok((
            Snapshot {
                owner: owner.map(|o| o.to_string()),
                target,
                chosen,
            },
            models,
        ))
    }
}

/// A model id in `ids`: 0x and 64 hex digits.
#[derive(Debug, Clone, Copy)]
pub struct ModelId(pub ObjectID);

impl std::str::FromStr for ModelId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        text.parse().map(ModelId).map_err(|_| {
            format!(
                "`{text}` is not a model id: a model id is 0x and 64 hex digits, as \
                 `soma-flow localnet models` shows it"
            )
        })
    }
}

/// A remote weights file and what it must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightsUrl {
    /// Where the safetensors file is.
    pub url: String,
    /// Hex SHA-256 of the file, as `sha256sum` prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Parsed<Sha256Hex>>,
    /// Size in bytes, checked before downloading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// One `urls` entry as written: a bare URL, or the map with checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum UrlEntry {
    Bare(String),
    Checked(WeightsUrl),
}

/// A bad map reports its own error (an unknown key, a size that is not a number)
/// instead of "matched no variant".
impl<'de> Deserialize<'de> for UrlEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::string_or_map::string_or_map(
            deserializer,
            "a URL, or a map {url, sha256, size}",
            |url| Ok(UrlEntry::Bare(url.to_owned())),
            UrlEntry::Checked,
        )
    }
}

impl UrlEntry {
    pub fn weights(&self) -> WeightsUrl {
        match self {
            UrlEntry::Bare(url) => WeightsUrl {
                url: url.clone(),
                sha256: None,
                size: None,
            },
            UrlEntry::Checked(w) => w.clone(),
        }
    }
}

pub struct FetchCompetitorsKind;

impl StageKind for FetchCompetitorsKind {
    type With = FetchCompetitorsWith;
    const NAME: &'static str = "fetch-competitors";
    const VERSION: u32 = 3;
    const ABOUT: &'static str =
        "Downloads, decrypts and validates revealed competitor models, or given files and URLs";

    fn inputs(&self, _: &FetchCompetitorsWith) -> Inputs {
        Inputs::Fixed(vec![InputPort::optional("embedding")])
    }

    fn outputs(&self, _: &FetchCompetitorsWith) -> Vec<String> {
        vec!["models".into()]
    }

    fn check(&self, with: &FetchCompetitorsWith) -> Result<(), WithError> {
        with.network.check()?;
        if with.top == Some(0) {
            return Err(WithError::at(&["top"], "`top: 0` selects nothing")
                .help("give K ≥ 1, or leave it out for all"));
        }
        // Each file is saved under its name: two alike would overwrite each other.
        let mut ids = BTreeSet::new();
        let mut claim = |key: &str, i: usize, id: String, source: String| {
            if ids.insert(id.clone()) {
                return Ok(());
            }
            Err(list_error(
                key,
                i,
                None,
                format!("{source} would be saved as {id}.safetensors, like an earlier entry"),
            )
            .help("each path and URL must end in a different file name"))
        };
        for (i, path) in with.paths.iter().enumerate() {
            claim("paths", i, path_id(path), path.display().to_string())?;
        }
        for (i, entry) in with.urls.iter().enumerate() {
            let w = entry.weights();
            let at = |field, message| list_error("urls", i, field, message);
            check_url(&w.url).map_err(|e| at(None, e.to_string()))?;
            let id = url_id(&w.url).ok_or_else(|| at(None, format!("{} names no file", w.url)))?;
            claim("urls", i, id, w.url.clone())?;
        }
        Ok(())
    }

    fn check_files(
        &self,
        with: &FetchCompetitorsWith,
        dir: &std::path::Path,
    ) -> Result<(), WithError> {
        with.network.check_files(dir)
    }

    /// Local `paths` enter the key by content: an edited file is fetched again.
    fn key_material(
        &self,
        with: &FetchCompetitorsWith,
        ctx: &KeyContext<'_>,
    ) -> Result<serde_json::Value> {
        let mut hashes = BTreeMap::new();
        for path in &with.paths {
            let full = ctx.pipeline_dir.join(path);
            let (hash, _) = soma_flow_engine::hash::hash_file(&full)
                .with_context(|| format!("paths: cannot read {}", full.display()))?;
            hashes.insert(path.display().to_string(), hash);
        }
        Ok(serde_json::json!(hashes))
    }

    /// Fetched models stand only while the network still offers exactly them.
    fn revalidate(&self, with: &FetchCompetitorsWith, cached: &CachedOutputs<'_>) -> Result<()> {
        if !uses_network(with) {
            return Ok(());
        }
        let recorded: Snapshot = std::fs::read(cached.output("models")?.join(SNAPSHOT_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .context("no record of what the network offered")?;
        let owner = recorded
            .owner
            .as_deref()
            .map(str::parse::<SomaAddress>)
            .transpose()
            .map_err(|_| anyhow::anyhow!("the record names no valid owner"))?;
        let net = with.network.open(cached.store)?;
        let (now, _) = Snapshot::take(&net, with, owner, recorded.target.clone(), cached.store)?;
        anyhow::ensure!(
            now == recorded,
            "the network's revealed models changed since they were fetched"
        );
        Ok(())
    }

    fn irreproducible(&self, with: &FetchCompetitorsWith, _: &str) -> Option<&'static str> {
        uses_network(with).then_some("reads the network's state at run time")
    }

    fn run(&self, with: &FetchCompetitorsWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let out = ctx.output("models");
        std::fs::create_dir_all(&out)?;
        let mut listed = Vec::new();
        let mut rejected = Vec::new();
        let mut accept = |c: Competitor, problem: Option<String>| match problem {
            None => listed.push(c),
            Some(p) => {
                let _ = std::fs::remove_file(out.join(&c.file));
                rejected.push(format!("{}: {p}", c.id));
            }
        };

        for path in &with.paths {
            let src = ctx.pipeline_dir.join(path);
            let id = path_id(path);
            let file = format!("{id}.safetensors");
            let copied = std::fs::copy(&src, out.join(&file))
                .map(drop)
                .with_context(|| format!("paths: {}", src.display()));
            let problem = copied.err().map(|e| format!("{e:#}")).or_else(|| {
                validate(&out.join(&file), &src.display().to_string(), with.heads).err()
            });
            accept(
                Competitor {
                    id,
                    file,
                    embedding: Vec::new(),
                    url: None,
                    checksum: None,
                    sha256: None,
                },
                problem,
            );
        }

        for entry in &with.urls {
            let w = entry.weights();
            let id = url_id(&w.url).context("checked: every URL names a file")?;
            let file = format!("{id}.safetensors");
            let fetched = download(&w, &ctx.scratch.join(&file), &out.join(&file), ctx.progress);
            let (sha256, problem) = match fetched {
                Ok(sha256) => (
                    Some(sha256),
                    validate(&out.join(&file), &w.url, with.heads).err(),
                ),
                Err(e) => (None, Some(e.to_string())),
            };
            if let (Some(sha256), None, None) = (&sha256, &w.sha256, &problem) {
                ctx.note(format!(
                    "{}: unverified (no sha256 given); downloaded bytes have sha256 {sha256}",
                    w.url
                ));
            }
            accept(
                Competitor {
                    id,
                    file,
                    embedding: Vec::new(),
                    url: Some(w.url),
                    checksum: None,
                    sha256,
                },
                problem,
            );
        }

        if uses_network(with) {
            let net = with.network.open_for(ctx)?;
            with.network.check_arch(&net)?;
            // Without a key (testnet, read only) nothing counts as one's own.
            let owner = match with.network.signer(&net, ctx) {
                Ok(key) => Some(key.address()),
                Err(e) if with.own => return Err(e.context("`own` needs the signer's key")),
                Err(_) => None,
            };
            let target = ctx.input("embedding").map(embedding::read).transpose()?;
            let (snapshot, chosen) = Snapshot::take(&net, with, owner, target, ctx.store)?;
            std::fs::write(
                out.join(SNAPSHOT_FILE),
                serde_json::to_vec_pretty(&snapshot)?,
            )?;
            for (i, model) in chosen.iter().enumerate() {
                (ctx.progress)(&format!(
                    "fetching model {} ({}/{})",
                    model.id,
                    i + 1,
                    chosen.len()
                ));
                let id = model.id.to_hex();
                let file = format!("{id}.safetensors");
                let dest = out.join(&file);
                let url = model.manifest.url().to_string();
                let problem = match lifecycle::fetch(&net, model, &dest, ctx.progress) {
                    Ok(()) => validate(&dest, &url, with.heads).err(),
                    Err(e) => Some(format!("{e:#}")),
                };
                accept(
                    Competitor {
                        id,
                        file,
                        embedding: model.embedding.clone(),
                        url: Some(url),
                        checksum: Some(hex::encode(model.manifest.checksum().0)),
                        sha256: None,
                    },
                    problem,
                );
            }
        }

        if !rejected.is_empty() {
            anyhow::ensure!(
                !with.strict,
                "competitors failed their checks (strict):\n  {}",
                rejected.join("\n  ")
            );
            for r in &rejected {
                ctx.note(format!("skipped competitor {r}"));
            }
        }
        ctx.note(format!(
            "fetched {} competitor(s): {}",
            listed.len(),
            listed
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        competitors::write(&out, &listed)?;
        Ok(Outcome::Done)
    }
}

const SNAPSHOT_FILE: &str = "network.json";

/// The network is asked when it is named (ids, top, own) or nothing else is given.
fn uses_network(with: &FetchCompetitorsWith) -> bool {
    let files_given = !with.paths.is_empty() || !with.urls.is_empty();
    with.ids.is_some() || with.top.is_some() || with.own || !files_given
}

/// Active models other than one's own (or only one's own, with `own`): by id, or
/// the `top` nearest to `target`.
fn select(
    models: &[soma_flow_chain::client::ModelInfo],
    with: &FetchCompetitorsWith,
    own: Option<&SomaAddress>,
    target: Option<&[f32]>,
) -> Result<Vec<Revealed>> {
    let ids: Option<Vec<ObjectID>> = with
        .ids
        .as_ref()
        .map(|ids| ids.iter().map(|id| id.0).collect());
    let mut chosen: Vec<Revealed> = models
        .iter()
        .filter_map(Revealed::of)
        .filter(|m| (Some(&m.owner) == own) == with.own)
        .filter(|m| ids.as_ref().is_none_or(|ids| ids.contains(&m.id)))
        .collect();
    if let Some(ids) = &ids {
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !chosen.iter().any(|m| m.id == **id))
            .map(ObjectID::to_hex)
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "ids: no Active, revealed competitor with id {}",
            missing.join(", ")
        );
    }
    if let Some(k) = with.top {
        let target = target.context("`top` needs an `embedding` input to measure nearness to")?;
        let distance =
            |m: &Revealed| cosine_distance(&m.embedding, target).unwrap_or(f64::INFINITY);
        chosen.sort_by(|a, b| distance(a).total_cmp(&distance(b)));
        chosen.truncate(k);
    }
    Ok(chosen)
}

/// Weights must have the canonical V1 layout of some architecture.
fn validate(path: &Path, source: &str, heads: Option<usize>) -> Result<(), String> {
    // The checks name the file they read, the stage's working copy: name the source
    // the user knows instead.
    inspect(path, heads)
        .map(drop)
        .map_err(|e| format!("{e:#}").replace(&path.display().to_string(), source))
}

/// A problem with element `index` of list `key`, or with `field` inside it.
fn list_error(key: &str, index: usize, field: Option<&str>, message: String) -> WithError {
    let mut path = vec![PathSeg::Key(key.into()), PathSeg::Index(index)];
    path.extend(field.map(|f| PathSeg::Key(f.into())));
    WithError {
        path,
        message,
        help: None,
    }
}

/// A `paths` entry's id: its file name without the extension.
fn path_id(path: &Path) -> String {
    path.file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().to_string())
}

/// A `urls` entry's id, like a path's: the last segment without its extension.
fn url_id(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let name = parsed.path_segments()?.next_back()?;
    let stem = Path::new(name).file_stem()?.to_string_lossy().to_string();
    Some(stem)
}

/// Downloads one `urls` entry through `staged` (in the scratch directory, so that a
/// killed run resumes the transfer) to `dest`, checking its size and SHA-256 when
/// given, and returns the SHA-256 of the bytes.
fn download(
    w: &WeightsUrl,
    staged: &Path,
    dest: &Path,
    progress: ProgressFn<'_>,
) -> Result<String, DataError> {
    download_object(&w.url, w.size, staged, None, progress)?;
    let sha256 = check_sha256(staged, &w.url, w.sha256.as_ref().map(Parsed::text))?;
    std::fs::rename(staged, dest).map_err(io_at(dest))?;
    Ok(sha256)
}
