//! Moving weights files to and from object storage through `object_store`:
//! `file://`, `s3://`, `gs://`, `az://` and `http(s)://` URLs, with credentials from
//! the environment as each cloud's own tools read them (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
//!
//! Transfers stream in [`CHUNK_SIZE`] pieces through a [`CtrStream`], so the same
//! code uploads plain or encrypted files and downloads with or without decryption,
//! in constant memory. Large uploads become multipart uploads automatically.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use url::Url;

use soma_flow_engine::hash::read_full;
use soma_flow_engine::WithError;

use crate::crypto::{CtrStream, Hash256, StreamDigests, CHUNK_SIZE};

/// Where an object is and what it must contain: the chain's weights manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub url: String,
    /// Blake2b-256 of the stored bytes (the ciphertext, for committed weights).
    pub checksum: Hash256,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{url} is not a usable storage URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{url} holds {actual} bytes but the manifest says {expected}")]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("{url} holds {actual} bytes, more than the {limit} expected there")]
    TooLarge {
        url: String,
        limit: u64,
        actual: u64,
    },
    #[error("{url} has checksum {actual} but the manifest says {expected}")]
    ChecksumMismatch {
        url: String,
        expected: Hash256,
        actual: Hash256,
    },
    #[error("{url}: the decoded contents hash to {actual}, not to the committed {expected}")]
    OutputMismatch {
        url: String,
        expected: Hash256,
        actual: Hash256,
    },
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Opens the store behind `url` and the object path inside it (credentials from the
/// environment, as for the remote store).
pub fn open(url: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath), StorageError> {
    soma_flow_engine::remote::open_url(url).map_err(|reason| StorageError::InvalidUrl {
        url: url.to_owned(),
        reason,
    })
}

/// Checks a URL a stage's `with` gives for storage (`key`) when the pipeline loads, so
/// that a bad one stops the run before the training that precedes the upload.
pub fn check_setting(key: &str, url: &str) -> Result<(), WithError> {
    soma_flow_engine::remote::check_url(url)
        .map(drop)
        .map_err(|why| {
            WithError::at(
                &[key],
                format!("`{url}` is not a usable storage URL: {why}"),
            )
            .help(
                "e.g. s3://bucket/prefix, gs://bucket/prefix, az://container/prefix, \
                 https://host/prefix or file:///path",
            )
        })
}

/// Writes a small object (`bytes`, whole) at `url`.
pub async fn put_small(url: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
    let (store, path) = open(url)?;
    store.put(&path, bytes.into()).await?;
    Ok(())
}

/// Reads a small object at `url` whole, refusing one over `limit` bytes.
pub async fn get_small(url: &str, limit: u64) -> Result<Vec<u8>, StorageError> {
    let (store, path) = open(url)?;
    let got = store.get(&path).await?;
    if got.meta.size > limit {
        return Err(StorageError::TooLarge {
            url: url.to_owned(),
            limit,
            actual: got.meta.size,
        });
    }
    Ok(got.bytes().await?.to_vec())
}

/// The `file://` URL of a local directory (created if missing), e.g. the default
/// bucket `<store>/bucket`; handles relative paths and characters URLs must escape.
pub fn local_url(dir: &Path) -> Result<String, StorageError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let absolute = dir.canonicalize().map_err(io_error(dir))?;
    Url::from_directory_path(&absolute)
        .map(String::from)
        .map_err(|()| StorageError::InvalidUrl {
            url: absolute.display().to_string(),
            reason: "not an absolute path".into(),
        })
}

/// Joins an object name onto a base storage URL (`s3://bucket/prefix` + `a/b.bin`).
pub fn join_url(base: &str, name: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        name.trim_start_matches('/')
    )
}

/// Uploads the file at `src` to `url`, passing every chunk through `stream` first.
/// Returns the digests of what was read (`input`) and what was stored (`output`).
pub async fn upload(
    src: &Path,
    url: &str,
    mut stream: CtrStream,
) -> Result<StreamDigests, StorageError> {
    let (store, path) = open(url)?;
    let mut file = File::open(src).map_err(io_error(src))?;
    // One chunk more than the capacity keeps a file of exactly one chunk a single PUT;
    // anything larger goes multipart, two parts in flight.
    let mut writer = BufWriter::with_capacity(store, path, CHUNK_SIZE + 1).with_max_concurrency(2);
    let sent = async {
        loop {
            // Reading and encrypting are blocking CPU/disk work: keep them off the
            // async executor, moving the file and stream in and out of the task.
            let (f, s, chunk) = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; CHUNK_SIZE];
                let n = read_full(&mut file, &mut buf)?;
                buf.truncate(n);
                stream.process(&mut buf);
                Ok::<_, std::io::Error>((file, stream, buf))
            })
            .await?
            .map_err(io_error(src))?;
            (file, stream) = (f, s);
            if chunk.is_empty() {
                return Ok(stream);
            }
            writer.put(Bytes::from(chunk)).await?;
        }
    }
    .await;
    let stream = match sent {
        Ok(stream) => stream,
        Err(e) => {
            // Best effort: do not leave a half-finished multipart upload behind.
            let _ = writer.abort().await;
            return Err(e);
        }
    };
    // Completes the single PUT or the multipart upload.
    writer.shutdown().await.map_err(|source| StorageError::Io {
        path: url.to_owned(),
        source,
    })?;
    Ok(stream.finish())
}

/// Downloads `manifest.url` into `dest` through `stream`, checking the stored bytes
/// against the manifest's size and checksum and, when given, the transformed bytes
/// (e.g. the decrypted weights) against `expected_output`. `dest` only appears once
/// everything matches.
pub async fn download(
    manifest: &Manifest,
    dest: &Path,
    mut stream: CtrStream,
    expected_output: Option<Hash256>,
) -> Result<StreamDigests, StorageError> {
    let url = &manifest.url;
    let (store, path) = open(url)?;
    let got = store.get(&path).await?;
    if got.meta.size != manifest.size {
        return Err(StorageError::SizeMismatch {
            url: url.clone(),
            expected: manifest.size,
            actual: got.meta.size,
        });
    }
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(dir)
        .map_err(io_error(dir))?;
    let mut body = got.into_stream();
    let mut pending = Vec::with_capacity(CHUNK_SIZE);
    loop {
        let next = body.next().await.transpose()?;
        if let Some(bytes) = &next {
            pending.extend_from_slice(bytes);
        }
        if pending.len() >= CHUNK_SIZE || (next.is_none() && !pending.is_empty()) {
            let mut chunk = std::mem::replace(&mut pending, Vec::with_capacity(CHUNK_SIZE));
            let (t, s) = tokio::task::spawn_blocking(move || {
                stream.process(&mut chunk);
                tmp.write_all(&chunk)?;
                Ok::<_, std::io::Error>((tmp, stream))
            })
            .await?
            .map_err(io_error(dest))?;
            (tmp, stream) = (t, s);
        }
        if next.is_none() {
            break;
        }
    }
    let digests = stream.finish();
    if digests.size != manifest.size {
        return Err(StorageError::SizeMismatch {
            url: url.clone(),
            expected: manifest.size,
            actual: digests.size,
        });
    }
    if digests.input != manifest.checksum {
        return Err(StorageError::ChecksumMismatch {
            url: url.clone(),
            expected: manifest.checksum,
            actual: digests.input,
        });
    }
    if let Some(expected) = expected_output.filter(|e| *e != digests.output) {
        return Err(StorageError::OutputMismatch {
            url: url.clone(),
            expected,
            actual: digests.output,
        });
    }
    tmp.as_file().sync_all().map_err(io_error(dest))?;
    tmp.persist(dest).map_err(|e| io_error(dest)(e.error))?;
    Ok(digests)
}

/// Uploads `src` unchanged and returns the manifest that describes it.
pub async fn upload_file(src: &Path, url: &str) -> Result<Manifest, StorageError> {
    let digests = upload(src, url, CtrStream::passthrough()).await?;
    Ok(Manifest {
        url: url.to_owned(),
        checksum: digests.output,
        size: digests.size,
    })
}
