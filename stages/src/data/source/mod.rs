//! Where documents come from: each source turns the options into a list of local
//! files (downloading them first when remote), with a record of their provenance.

mod hf;
mod local;
mod network;
mod url;

pub use hf::resolve_revision;
pub use network::{
    files as network_files, offer as network_offer, offer_listed, still_offered, Offer, Offered,
};
pub use url::{check_url, download_object};

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::dataset::SourceRecord;
use super::error::DataError;
use super::format::content_extension;
use super::options::{FetchOptions, SourceKind};
use super::progress::ProgressFn;

/// Where the sources may read and write.
pub struct SourceDirs<'a> {
    /// Base of relative `local` paths (the pipeline directory).
    pub base_dir: &'a Path,
    /// Hugging Face cache, e.g. `<store>/state/hf`.
    pub hf_cache: &'a Path,
    /// Downloads from `url` sources, e.g. `<store>/state/downloads`.
    pub download_dir: &'a Path,
}

/// One file ready to read.
pub struct SourceFile {
    /// How errors, progress and file filters refer to it (path relative to the
    /// source root).
    pub name: String,
    pub path: PathBuf,
    /// One document as it is, whatever its name or first bytes say (a network
    /// submission is scored as raw bytes).
    pub raw: bool,
    /// Provenance for the manifest; `blake3` is filled in by the caller.
    pub record: SourceRecord,
}

/// Lists (and for remote sources, downloads) the files the options select, in a
/// deterministic order.
pub fn fetch_files(
    options: &FetchOptions,
    dirs: &SourceDirs<'_>,
    progress: ProgressFn<'_>,
) -> Result<Vec<SourceFile>, DataError> {
    match options.source {
        SourceKind::Local => local::files(options, dirs.base_dir),
        SourceKind::Hf => hf::files(options, dirs.hf_cache, progress),
        SourceKind::Url => url::files(options, dirs.download_dir, progress),
        SourceKind::Network => Err(DataError::InvalidOptions(
            "`source: network` is fetched by the stage, which holds the network".into(),
        )),
    }
}

/// The file-level selection every source applies: `files` patterns (with a
/// source-specific default), `extensions` and `pattern`. Dotfiles (`.gitattributes`)
/// never hold data.
pub struct FileFilter {
    files: Option<GlobSet>,
    default_extensions: &'static [&'static str],
    extensions: Vec<String>,
    pattern: Option<GlobSet>,
}

fn glob_set(patterns: &[String]) -> Result<GlobSet, DataError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern)
            .map_err(|e| DataError::InvalidOptions(format!("bad glob {pattern:?}: {e}")))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| DataError::InvalidOptions(e.to_string()))
}

impl FileFilter {
    /// `default_extensions` applies when `files` is empty (none: every file).
    pub fn new(
        options: &FetchOptions,
        default_extensions: &'static [&'static str],
    ) -> Result<Self, DataError> {
        let files = (!options.files.is_empty())
            .then(|| glob_set(&options.files))
            .transpose()?;
        let pattern = options
            .pattern
            .as_ref()
            .map(|p| glob_set(std::slice::from_ref(p)))
            .transpose()?;
        let extensions = options
            .extensions
            .iter()
            .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
            .collect();
        Ok(FileFilter {
            files,
            default_extensions,
            extensions,
            pattern,
        })
    }

    pub fn accepts(&self, name: &str) -> bool {
        let hidden = name
            .split('/')
            .any(|part| part.starts_with('.') && part != "." && part != "..");
        let extension = content_extension(name);
        let listed = match &self.files {
            Some(files) => files.is_match(name),
            None => {
                self.default_extensions.is_empty()
                    || self.default_extensions.contains(&extension.as_str())
            }
        };
        !hidden
            && listed
            && (self.extensions.is_empty() || self.extensions.contains(&extension))
            && self.pattern.as_ref().is_none_or(|p| p.is_match(name))
    }

    /// Keeps the accepted names, sorted; an empty result is an error naming what was
    /// searched and what was there.
    pub fn select<T>(
        &self,
        source_name: &str,
        options: &FetchOptions,
        mut candidates: Vec<(String, T)>,
    ) -> Result<Vec<(String, T)>, DataError> {
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        let found = summarize(candidates.iter().map(|c| c.0.as_str()));
        candidates.retain(|(name, _)| self.accepts(name));
        if candidates.is_empty() {
            let mut patterns = options.files.clone();
            patterns.extend(options.pattern.clone());
            patterns.extend(options.extensions.iter().map(|e| format!("*.{e}")));
            if patterns.is_empty() {
                patterns.extend(self.default_extensions.iter().map(|e| format!("*.{e}")));
            }
            return Err(DataError::NoFilesMatched {
                source_name: source_name.into(),
                patterns,
                found,
            });
        }
        Ok(candidates)
    }
}

/// The first few names, for error messages.
fn summarize<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    const SHOWN: usize = 8;
    let total = names.len();
    let text: Vec<&str> = names.take(SHOWN).collect();
    if text.is_empty() {
        return "nothing".into();
    }
    let more = total.saturating_sub(SHOWN);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("{}{more}", text.join(", "))
}

/// The runtime the async clients (hf-hub, object_store) run on, owned by one fetch.
fn runtime() -> Result<tokio::runtime::Runtime, DataError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| DataError::Io {
            path: "tokio runtime".into(),
            source: e,
        })
}

/// The local files `options` select (`source: local`), by name, for cache keys: their
/// content decides the dataset.
pub fn local_files(
    options: &FetchOptions,
    base_dir: &Path,
) -> Result<Vec<(String, std::path::PathBuf)>, DataError> {
    Ok(local::files(options, base_dir)?
        .into_iter()
        .map(|f| (f.name, f.path))
        .collect())
}
