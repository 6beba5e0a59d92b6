//! `fetch-dataset`: documents from local files, a Hugging Face dataset repo, object
//! storage or the data that filled the network's targets, filtered and split into a
//! training dataset and a held-out one.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use soma_flow_engine::{
    CachedOutputs, Inputs, KeyContext, Outcome, RunContext, StageKind, WithError,
};

use crate::data::{
    fetch_dataset, ingest, local_files, network_files, network_offer, resolve_revision,
    still_offered, FetchOptions, FetchReport, SourceDirs, SourceKind, WonBy,
};
use crate::network::with::NetworkWith;

pub struct FetchDatasetKind;

impl StageKind for FetchDatasetKind {
    type With = FetchOptions;
    const NAME: &'static str = "fetch-dataset";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Fetches documents (local, hf, url, network), filters them and splits off a held-out set";

    fn inputs(&self, _: &FetchOptions) -> Inputs {
        Inputs::Fixed(Vec::new())
    }

    fn outputs(&self, with: &FetchOptions) -> Vec<String> {
        let mut outs = vec!["dataset".to_string()];
        if with.holdout > 0.0 {
            outs.push("holdout".into());
        }
        outs
    }

    fn check(&self, with: &FetchOptions) -> Result<(), WithError> {
        with.validate()
    }

    fn check_files(&self, with: &FetchOptions, dir: &std::path::Path) -> Result<(), WithError> {
        with.network
            .as_ref()
            .map_or(Ok(()), |n| n.check_files(dir))?;
        with.check_local_paths(dir)
    }

    /// Local files enter the key by content, so editing them refetches; a Hub
    /// revision enters it as the commit it names now, so a moved branch refetches.
    fn key_material(&self, with: &FetchOptions, ctx: &KeyContext<'_>) -> Result<serde_json::Value> {
        match with.source {
            SourceKind::Local => {
                let mut hashes = BTreeMap::new();
                for (name, path) in local_files(with, ctx.pipeline_dir)? {
                    hashes.insert(name, soma_flow_engine::hash::hash_file(&path)?.0);
                }
                Ok(serde_json::json!(hashes))
            }
            SourceKind::Hf => {
                let repo = with.repo.as_deref().unwrap_or_default();
                let revision = with.revision.as_deref();
                let commit = resolve_revision(repo, revision).with_context(|| {
                    format!(
                        "cannot resolve revision `{}` of Hugging Face dataset {repo} to a \
                         commit; without the Hub, give the 40-digit commit id as `revision`",
                        revision.unwrap_or("main")
                    )
                })?;
                Ok(serde_json::json!({ "commit": commit }))
            }
            // What the network offers is checked by `revalidate`.
            SourceKind::Url | SourceKind::Network => Ok(serde_json::Value::Null),
        }
    }

    fn irreproducible(&self, with: &FetchOptions, _: &str) -> Option<&'static str> {
        (with.source == SourceKind::Network).then_some("reads the network's state at run time")
    }

    /// A fetch from the network stands only while the network offers exactly the
    /// targets (and data) it fetched.
    fn revalidate(&self, with: &FetchOptions, cached: &CachedOutputs<'_>) -> Result<()> {
        if with.source != SourceKind::Network {
            return Ok(());
        }
        let net = network(with).open(cached.store)?;
        still_offered(&net, &with.targets(), cached.output("dataset")?)
    }

    fn run(&self, with: &FetchOptions, ctx: &RunContext<'_>) -> Result<Outcome> {
        let state = ctx.shared_state("data")?;
        let dirs = SourceDirs {
            base_dir: ctx.pipeline_dir,
            hf_cache: &state.join("hf"),
            download_dir: &state.join("downloads"),
        };
        // Without a declared holdout output the split is written and dropped.
        let holdout = if with.holdout > 0.0 {
            ctx.output("holdout")
        } else {
            ctx.scratch.join("holdout")
        };
        let report = match with.source {
            SourceKind::Network => fetch_network(with, ctx, &state, &holdout)?,
            _ => fetch_dataset(with, &dirs, &ctx.output("dataset"), &holdout, ctx.progress)?,
        };
        ctx.note(format!(
            "{} documents ({:.1} MB) for training, {} held out",
            report.train.documents,
            report.train.bytes as f64 / 1e6,
            report.holdout.documents
        ));
        Ok(Outcome::Done)
    }
}

fn network(with: &FetchOptions) -> NetworkWith {
    with.network.clone().unwrap_or_default()
}

/// `source: network`: what the network offers now, downloaded into the shared
/// `data/network/` folder (by checksum, so a stopped fetch resumes), then ingested.
fn fetch_network(
    with: &FetchOptions,
    ctx: &RunContext<'_>,
    state: &std::path::Path,
    holdout: &std::path::Path,
) -> Result<FetchReport> {
    let network = network(with);
    let net = network.open_for(ctx)?;
    let owner = match with.targets().won_by {
        WonBy::Me => Some(
            network
                .signer(&net, ctx)
                .context("`won_by: me` needs the signer's key")?
                .address(),
        ),
        _ => None,
    };
    let offer = network_offer(&net, &with.targets(), owner)?;
    if offer.targets.is_empty() {
        ctx.note(format!(
            "{} offers no filled target for these options: the dataset is empty",
            net.endpoint
        ));
    }
    let note = |text: String| ctx.note(text);
    let mut files = network_files(
        &net,
        &offer,
        &state.join("network"),
        with.strict,
        &note,
        ctx.progress,
    )?;
    // Data that filled several targets is one document.
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.record.source_hash.clone()));
    Ok(ingest(
        with,
        files,
        Some(&offer),
        &ctx.output("dataset"),
        holdout,
        ctx.progress,
    )?)
}
