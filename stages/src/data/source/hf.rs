//! `source: hf`: a dataset repository on the Hugging Face Hub, through `hf-hub`
//! (which reads `HF_TOKEN` and `HF_ENDPOINT`). The revision is resolved to a commit
//! first, so every file comes from the same snapshot and the manifest pins it.
//!
//! hf-hub's own `download_file` restarts an interrupted file from zero, so files are
//! fetched through its ranged stream API into [`download`], which resumes; they are
//! stored under the Hub's content hash in `<hf_cache>/datasets--owner--name/blobs`.

use std::path::Path;

use futures::{StreamExt, TryStreamExt};
use hf_hub::repository::{RepoTreeEntry, RepoTypeDataset};
use hf_hub::{HFClient, HFError, HFRepository};

use super::{runtime, FileFilter, SourceFile};
use crate::data::dataset::SourceRecord;
use crate::data::download::{check_sha256, download, Body, Failure};
use crate::data::error::DataError;
use crate::data::options::FetchOptions;
use crate::data::progress::ProgressFn;

/// Without `files` patterns, the files a dataset repo holds its data in.
const DATA_EXTENSIONS: &[&str] = &["parquet", "jsonl", "ndjson", "json"];

pub fn files(
    options: &FetchOptions,
    hf_cache: &Path,
    progress: ProgressFn<'_>,
) -> Result<Vec<SourceFile>, DataError> {
    let repo_id = options.repo.as_deref().unwrap_or_default();
    runtime()?.block_on(fetch(options, repo_id, hf_cache, progress))
}

/// A repo file as the tree listing gives it.
struct RemoteFile {
    size: u64,
    /// The LFS sha256 when hf-hub reports one (checked after download).
    sha256: Option<String>,
    /// The git blob id (for an LFS file, of its pointer, which names the content).
    oid: String,
}

async fn fetch(
    options: &FetchOptions,
    repo_id: &str,
    hf_cache: &Path,
    progress: ProgressFn<'_>,
) -> Result<Vec<SourceFile>, DataError> {
    let hub = |e| hub_error(repo_id, e);
    let client = HFClient::builder()
        .cache_dir(hf_cache)
        .build()
        .map_err(hub)?;
    let (owner, name) = hf_hub::split_id(repo_id);
    let repo = client.dataset(owner, name);
    let revision = options.revision.as_deref().unwrap_or("main");
    let commit = resolve(&repo, repo_id, options.revision.as_deref()).await?;
    progress(&format!(
        "{repo_id}: revision {revision} is commit {commit}"
    ));
    let entries: Vec<RepoTreeEntry> = repo
        .list_tree()
        .revision(&commit)
        .recursive(true)
        .send()
        .map_err(hub)?
        .try_collect()
        .await
        .map_err(hub)?;
    let candidates = entries
        .into_iter()
        .filter_map(|entry| match entry {
            RepoTreeEntry::File {
                path,
                size,
                oid,
                lfs,
                ..
            } => {
                let sha256 = lfs.and_then(|l| l.sha256);
                Some((path, RemoteFile { size, sha256, oid }))
            }
            RepoTreeEntry::Directory { .. } => None,
        })
        .collect();
    let filter = FileFilter::new(options, DATA_EXTENSIONS)?;
    let selected = filter.select(
        &format!("Hugging Face dataset {repo_id}@{revision}"),
        options,
        candidates,
    )?;
    let blobs = hf_cache
        .join(format!("datasets--{}", repo_id.replace('/', "--")))
        .join("blobs");
    let mut files = Vec::with_capacity(selected.len());
    for (path, remote) in selected {
        let hash = remote.sha256.clone().unwrap_or_else(|| remote.oid.clone());
        let dest = blobs.join(&hash);
        let range_from = |offset| fetch_range(&repo, &commit, &path, offset, remote.size);
        download(&path, remote.size, &dest, range_from, progress).await?;
        if let Some(sha256) = &remote.sha256 {
            check_sha256(&dest, &path, Some(sha256))?;
        }
        files.push(SourceFile {
            raw: false,
            record: SourceRecord {
                path: path.clone(),
                repo: Some(repo_id.into()),
                revision: Some(commit.clone()),
                source_hash: Some(hash),
                size: remote.size,
                blake3: String::new(),
            },
            name: path,
            path: dest,
        });
    }
    Ok(files)
}

/// The commit that `revision` (default `main`) of dataset `repo_id` names now, for
/// cache keys: a moved branch is new data. A full commit id is taken as it is,
/// without asking the Hub.
pub fn resolve_revision(repo_id: &str, revision: Option<&str>) -> Result<String, DataError> {
    let client = HFClient::builder()
        .cache_enabled(false)
        .build()
        .map_err(|e| hub_error(repo_id, e))?;
    let (owner, name) = hf_hub::split_id(repo_id);
    runtime()?.block_on(resolve(&client.dataset(owner, name), repo_id, revision))
}

/// A 40-digit lowercase hex git commit id, which needs no resolving.
fn is_commit_id(revision: &str) -> bool {
    revision.len() == 40
        && revision
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

async fn resolve(
    repo: &HFRepository<RepoTypeDataset>,
    repo_id: &str,
    revision: Option<&str>,
) -> Result<String, DataError> {
    if let Some(commit) = revision.filter(|r| is_commit_id(r)) {
        return Ok(commit.to_owned());
    }
    // Without a revision the Hub's answer tells a missing repo from a missing revision.
    let info = match revision {
        Some(revision) => repo.info().revision(revision).send().await,
        None => repo.info().send().await,
    }
    .map_err(|e| hub_error(repo_id, e))?;
    info.sha.ok_or_else(|| DataError::Hub {
        repo: repo_id.into(),
        source: HFError::Other(format!(
            "revision {} resolved to no commit",
            revision.unwrap_or("main")
        )),
    })
}

async fn fetch_range(
    repo: &HFRepository<RepoTypeDataset>,
    commit: &str,
    path: &str,
    offset: u64,
    size: u64,
) -> Result<Body<impl futures::Stream<Item = Result<bytes::Bytes, Failure>> + Unpin>, Failure> {
    let repo_id = format!("{}/{}", repo.owner(), repo.name());
    let request = repo.download_file_stream().filename(path).revision(commit);
    let sent = if offset > 0 {
        request.range(offset..size).send().await
    } else {
        request.send().await
    };
    // hf-hub reports the whole file's size (X-Linked-Size) for a ranged body too, so
    // its length says nothing about whether the range was honoured.
    let (_, stream) = sent.map_err(|e| failure(&repo_id, e))?;
    Ok(Body {
        length: None,
        stream: stream.map(move |chunk| chunk.map_err(|e| failure(&repo_id, e))),
    })
}

fn failure(repo_id: &str, error: HFError) -> Failure {
    let transient = match &error {
        HFError::Request { .. } | HFError::RateLimited { .. } | HFError::Io(_) => true,
        HFError::Http { context } => {
            let status = context.status.as_u16();
            status >= 500 || status == 408
        }
        _ => false,
    };
    Failure {
        transient,
        error: hub_error(repo_id, error),
    }
}

/// Turns hf-hub's errors into ones that say what to do about them.
fn hub_error(repo_id: &str, error: HFError) -> DataError {
    let detail = |e: &HFError| format!(" [{e}]");
    match error {
        HFError::RepoNotFound { .. } => DataError::RepoNotFound {
            repo: repo_id.into(),
            detail: String::new(),
        },
        HFError::RevisionNotFound {
            ref revision,
            ref context,
            ..
        } if context.as_ref().and_then(|c| c.error_code.as_deref()) != Some("RepoNotFound") => {
            DataError::RepoNotFound {
                repo: repo_id.into(),
                detail: format!(" at revision `{revision}`"),
            }
        }
        HFError::RevisionNotFound { .. } => DataError::RepoNotFound {
            repo: repo_id.into(),
            detail: String::new(),
        },
        HFError::AuthRequired { .. } => DataError::AccessDenied {
            repo: repo_id.into(),
            status: 401,
            hint: "it does not exist, or it is gated or private and HF_TOKEN is missing or \
                   not a valid token",
            detail: detail(&error),
        },
        HFError::Forbidden { .. } => DataError::AccessDenied {
            repo: repo_id.into(),
            status: 403,
            hint: "the token in HF_TOKEN may not read it; for a gated dataset, accept its \
                   terms on the Hub with the token's account",
            detail: detail(&error),
        },
        source => DataError::Hub {
            repo: repo_id.into(),
            source,
        },
    }
}
