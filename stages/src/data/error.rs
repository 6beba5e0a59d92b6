//! Errors of the data library; each message names the thing at fault.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("fetch-dataset options: {0}")]
    InvalidOptions(String),
    #[error(
        "unknown source {0:?}: expected an s3://, gs://, az://, https://, http:// or file:// URL"
    )]
    UnknownSource(String),
    #[error("Hugging Face dataset {repo} not found{detail}")]
    RepoNotFound { repo: String, detail: String },
    #[error("Hugging Face dataset {repo}: access denied ({status}): {hint}{detail}")]
    AccessDenied {
        repo: String,
        status: u16,
        hint: &'static str,
        detail: String,
    },
    #[error("Hugging Face dataset {repo}: {source}")]
    Hub {
        repo: String,
        source: hf_hub::HFError,
    },
    #[error(transparent)]
    BadUrl(#[from] crate::storage::StorageError),
    #[error("{url}: {source}")]
    Storage {
        url: String,
        source: object_store::Error,
    },
    #[error("no files in {source_name}{} (found: {found})", matching(.patterns))]
    NoFilesMatched {
        source_name: String,
        patterns: Vec<String>,
        found: String,
    },
    #[error("{file}: no {kind} {wanted} (available: {})", .available.join(", "))]
    MissingField {
        file: String,
        kind: &'static str,
        wanted: String,
        available: Vec<String>,
    },
    #[error("{file}: unreadable or corrupt: {reason}")]
    Corrupt { file: String, reason: String },
    #[error("{file}: downloaded {what} {actual} does not match the expected {expected}")]
    Mismatch {
        file: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{file}: download failed after {attempts} attempts: {reason}")]
    Download {
        file: String,
        attempts: u32,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Wraps an I/O error with the path it concerns: `.map_err(io_at(path))`.
pub fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Wraps a parse failure as a corrupt-file error naming `file`.
pub fn corrupt(file: &str) -> impl FnOnce(String) -> DataError + '_ {
    move |reason| DataError::Corrupt {
        file: file.to_owned(),
        reason,
    }
}

/// ` matched [..]` when a filter narrowed the files, for [`DataError::NoFilesMatched`].
fn matching(patterns: &[String]) -> String {
    if patterns.is_empty() {
        String::new()
    } else {
        format!(" matched {patterns:?}")
    }
}
