//! What the workspace's tests share, as one dev-dependency (cargo's own
//! `cargo-test-support` is the model): a local S3 server ([`moto`]) and file listing.
//! What one test binary alone needs stays in that binary's `common` module.

pub mod moto;

use std::path::{Path, PathBuf};

/// Every file under `dir`, at any depth (none when it cannot be read).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
