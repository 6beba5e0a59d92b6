//! `source: url`: one object, or every object under a prefix ending in `/`, in S3,
//! GCS, Azure, on a web server or on the local disk, through `object_store` with
//! credentials from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`).

use std::path::Path;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt};

use super::{runtime, FileFilter, SourceFile};
use crate::data::dataset::SourceRecord;
use crate::data::download::{download, download_through, Body, Failure, Through};
use crate::data::error::DataError;
use crate::data::options::FetchOptions;
use crate::data::progress::ProgressFn;

pub fn files(
    options: &FetchOptions,
    download_dir: &Path,
    progress: ProgressFn<'_>,
) -> Result<Vec<SourceFile>, DataError> {
    let url = options.url.as_deref().unwrap_or_default();
    let (store, root) = open(url)?;
    runtime()?.block_on(fetch(options, url, &*store, &root, download_dir, progress))
}

/// Checks that `url` is a URL of a kind of store this source reads.
pub fn check_url(url: &str) -> Result<(), DataError> {
    soma_flow_engine::remote::check_url(url)
        .map(drop)
        .map_err(|_| DataError::UnknownSource(url.into()))
}

/// The store behind `url` and the object path inside it (the same credentials and
/// local-endpoint rules as commit uploads).
fn open(url: &str) -> Result<(std::sync::Arc<dyn ObjectStore>, ObjectPath), DataError> {
    check_url(url)?;
    Ok(crate::storage::open(url)?)
}

/// Downloads the one object at `url` into `dest`, resuming and retrying like the
/// dataset downloads, the bytes passing `through` a transformation when given,
/// and returns its size. `expected_size`, when given, is checked before a byte
/// is transferred.
pub fn download_object(
    url: &str,
    expected_size: Option<u64>,
    dest: &Path,
    through: Option<&mut dyn Through>,
    progress: ProgressFn<'_>,
) -> Result<u64, DataError> {
    let (store, path) = open(url)?;
    runtime()?.block_on(async {
        let meta = store
            .head(&path)
            .await
            .map_err(|source| DataError::Storage {
                url: url.into(),
                source,
            })?;
        if let Some(expected) = expected_size.filter(|s| *s != meta.size) {
            return Err(DataError::Mismatch {
                file: url.into(),
                what: "size",
                expected: expected.to_string(),
                actual: meta.size.to_string(),
            });
        }
        let range_from = |offset| fetch_range(&*store, &meta, url, offset);
        download_through(url, meta.size, dest, range_from, through, progress).await?;
        Ok(meta.size)
    })
}

async fn fetch(
    options: &FetchOptions,
    url: &str,
    store: &dyn ObjectStore,
    root: &ObjectPath,
    download_dir: &Path,
    progress: ProgressFn<'_>,
) -> Result<Vec<SourceFile>, DataError> {
    let storage = |source| DataError::Storage {
        url: url.into(),
        source,
    };
    let objects: Vec<ObjectMeta> = if url.ends_with('/') {
        store
            .list(Some(root))
            .try_collect()
            .await
            .map_err(storage)?
    } else {
        vec![store.head(root).await.map_err(storage)?]
    };
    let prefix = root.as_ref();
    let candidates = objects
        .into_iter()
        .map(|meta| {
            let location = meta.location.as_ref();
            let name = location
                .strip_prefix(prefix)
                .map(|n| n.trim_start_matches('/'))
                .filter(|n| !n.is_empty())
                .unwrap_or(location)
                .to_owned();
            (name, meta)
        })
        .collect();
    let filter = FileFilter::new(options, &[])?;
    let selected = filter.select(url, options, candidates)?;
    let mut files = Vec::with_capacity(selected.len());
    for (name, meta) in selected {
        let object_url = if url.ends_with('/') {
            format!("{url}{name}")
        } else {
            url.to_owned()
        };
        let version = meta.e_tag.clone().or_else(|| meta.version.clone());
        // Keyed by URL and version: a changed object is a new download, and an
        // interrupted one resumes only against the same version.
        let key = blake3::hash(format!("{object_url}\n{version:?}\n{}", meta.size).as_bytes());
        let file_name = name.rsplit('/').next().unwrap_or(&name);
        let dest = download_dir.join(format!("{}-{file_name}", &key.to_hex()[..16]));
        let range_from = |offset| fetch_range(store, &meta, &object_url, offset);
        download(&object_url, meta.size, &dest, range_from, progress).await?;
        files.push(SourceFile {
            raw: false,
            record: SourceRecord {
                path: object_url,
                repo: None,
                revision: version,
                source_hash: None,
                size: meta.size,
                blake3: String::new(),
            },
            name,
            path: dest,
        });
    }
    Ok(files)
}

/// Bytes in flight per piece of a download, and pieces in flight.
const PIECE: u64 = 8 << 20;
const IN_FLIGHT: usize = 4;

/// The object from `offset` on, as ranged GETs of [`PIECE`] bytes, [`IN_FLIGHT`]
/// at a time (a slow request does not hold the others back), yielded in order:
/// what arrives is appended, so a broken transfer resumes from its end. Each
/// piece arrives whole (`object_store` streams a local file in 8 KiB reads,
/// each on a blocking thread; one read of a piece is one).
async fn fetch_range<'a>(
    store: &'a dyn ObjectStore,
    meta: &'a ObjectMeta,
    url: &'a str,
    offset: u64,
) -> Result<Body<impl futures::Stream<Item = Result<bytes::Bytes, Failure>> + Unpin + 'a>, Failure>
{
    let size = meta.size;
    let pieces = (offset..size)
        .step_by(PIECE as usize)
        .map(move |start| start..(start + PIECE).min(size));
    let stream = futures::stream::iter(pieces)
        .map(move |range| fetch_piece(store, meta, url, range))
        .buffered(IN_FLIGHT);
    Ok(Body {
        length: Some(size - offset),
        stream,
    })
}

async fn fetch_piece(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
    url: &str,
    range: std::ops::Range<u64>,
) -> Result<bytes::Bytes, Failure> {
    let expected = range.end - range.start;
    let options = GetOptions {
        range: Some(GetRange::Bounded(range)),
        // Every piece must come from the same object, not a replacement.
        if_match: meta.e_tag.clone(),
        ..GetOptions::default()
    };
    let got = store
        .get_opts(&meta.location, options)
        .await
        .map_err(|e| failure(url, e))?;
    let bytes = got.bytes().await.map_err(|e| failure(url, e))?;
    if bytes.len() as u64 != expected {
        return Err(Failure {
            transient: true,
            error: DataError::Mismatch {
                file: url.into(),
                what: "piece size",
                expected: expected.to_string(),
                actual: bytes.len().to_string(),
            },
        });
    }
    Ok(bytes)
}

fn failure(url: &str, source: object_store::Error) -> Failure {
    use object_store::Error;
    let transient = !matches!(
        source,
        Error::NotFound { .. }
            | Error::Precondition { .. }
            | Error::PermissionDenied { .. }
            | Error::Unauthenticated { .. }
            | Error::InvalidPath { .. }
            | Error::NotSupported { .. }
            | Error::NotImplemented { .. }
            | Error::UnknownConfigurationKey { .. }
    );
    Failure {
        transient,
        error: DataError::Storage {
            url: url.into(),
            source,
        },
    }
}
