//! `fetch-dataset`: documents from local files, a Hugging Face dataset repo or object
//! storage, filtered and split into a training dataset and a held-out one.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use soma_flow_engine::{Inputs, KeyContext, Outcome, RunContext, StageKind, WithError};

use crate::data::{
    fetch_dataset, local_files, resolve_revision, FetchOptions, SourceDirs, SourceKind,
};

pub struct FetchDatasetKind;

impl StageKind for FetchDatasetKind {
    type With = FetchOptions;
    const NAME: &'static str = "fetch-dataset";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Fetches documents (local, hf, url), filters them and splits off a held-out set";

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
            SourceKind::Url => Ok(serde_json::Value::Null),
        }
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
        let report = fetch_dataset(with, &dirs, &ctx.output("dataset"), &holdout, ctx.progress)?;
        ctx.note(format!(
            "{} documents ({:.1} MB) for training, {} held out",
            report.train.documents,
            report.train.bytes as f64 / 1e6,
            report.holdout.documents
        ));
        Ok(Outcome::Done)
    }
}
