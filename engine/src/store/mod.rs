//! The content-addressed store.
//!
//! ```text
//! objects/ab/<hash>     file artifacts (read-only)
//! trees/ab/<hash>/      directory artifacts
//! cache/ab/<key>.json   stage cache entries: key -> output artifacts
//! runs/<id>.json        run records
//! locks/                one lock file per stage key, plus the store lock (`flock`;
//!                       lease files `*.lease` where the filesystem has no `flock`)
//! tmp/                  working directories of running stages (never trusted)
//! work/<key>/           scratch that survives a killed stage (checkpoints)
//! state/<kind>/         private state of stage kinds (ledgers, keys)
//! ```
//! Everything is published by rename from `tmp/`, so a killed process leaves nothing
//! half-written in a place a later run reads from.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::hash;

mod entries;
mod files;
mod hash_name;
mod locking;
mod objects;
mod seal;
mod stamp;

pub use entries::CacheEntry;
use files::unique;
pub use files::{discard, private_dir, remove_any, write_atomic, write_json_atomic};
pub use hash_name::ContentHash;
pub use locking::{Lock, Locking};
use seal::SealKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    File,
    Dir,
}

/// A stored output, named by its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub kind: ArtifactKind,
    pub hash: ContentHash,
    pub size: u64,
}

pub enum Check {
    Ok,
    Missing,
    /// The object did not match its hash.
    Corrupt,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    seal: Arc<SealKey>,
    locking: Locking,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        for sub in [
            "objects", "trees", "cache", "runs", "locks", "tmp", "work", "state", "logs", "stamps",
        ] {
            fs::create_dir_all(root.join(sub)).with_context(|| {
                format!("cannot create store directory {}", root.join(sub).display())
            })?;
        }
        // Kinds keep ledgers and keys under state/: owner only.
        private_dir(&root.join("state"))?;
        let root = root.canonicalize()?;
        let seal = Arc::new(SealKey::load_or_create(&root)?);
        let locking = Locking::for_store(&root)?;
        Ok(Store {
            root,
            seal,
            locking,
        })
    }

    pub fn locking(&self) -> Locking {
        self.locking
    }

    /// The same store, locked the way `locking` says (what `SOMA_FLOW_LOCKS` chooses).
    pub fn with_locking(self, locking: Locking) -> Store {
        Store { locking, ..self }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh private directory under `tmp/`.
    pub fn tmp_dir(&self, prefix: &str) -> Result<PathBuf> {
        let dir =
            self.root
                .join("tmp")
                .join(format!("{prefix}-{}-{}", std::process::id(), unique()));
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Removes `tmp/` directories for this key left by killed processes. Call with the
    /// key's lock held, so none of them can belong to a live stage.
    pub fn clear_stale_tmp(&self, prefix: &str) {
        if let Ok(entries) = fs::read_dir(self.root.join("tmp")) {
            for e in entries.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{prefix}-"))
                {
                    let _ = remove_any(&e.path());
                }
            }
        }
    }

    pub fn scratch_dir(&self, key: &str) -> PathBuf {
        self.root.join("work").join(key)
    }

    pub fn logs_dir(&self, run_id: &str) -> PathBuf {
        self.root.join("logs").join(run_id)
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// Every stored artifact (for gc), with its path. A name that is not a content
    /// hash is listed with the reason, for gc to remove.
    pub fn all_artifacts(&self) -> Result<Vec<(Result<Artifact, String>, PathBuf)>> {
        let mut out = Vec::new();
        for (dir, kind) in [
            ("objects", ArtifactKind::File),
            ("trees", ArtifactKind::Dir),
        ] {
            for shard in shards(&self.root.join(dir))? {
                for e in fs::read_dir(shard)?.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    let artifact = ContentHash::parse(&name).map(|hash| Artifact {
                        kind,
                        hash,
                        size: disk_size(&e.path()),
                    });
                    out.push((artifact, e.path()));
                }
            }
        }
        Ok(out)
    }

    /// Every cache entry key (for gc); files whose names are not keys are left out.
    pub fn all_cache_keys(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for shard in shards(&self.root.join("cache"))? {
            for e in fs::read_dir(shard)?.flatten() {
                if let Some(k) = e.file_name().to_string_lossy().strip_suffix(".json") {
                    if ContentHash::parse(k).is_ok() {
                        out.push(k.to_string());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Removes what killed writers left behind in `cache/`, `runs/` and `stamps/`
    /// (temporary files of [`write_atomic`]). Call with the store lock held
    /// exclusively. Returns how many were removed.
    pub fn remove_stale_temp_files(&self) -> Result<usize> {
        let mut removed = 0;
        let mut sweep = |dir: &Path| -> Result<()> {
            for e in fs::read_dir(dir)?.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    fs::remove_file(e.path())?;
                    removed += 1;
                }
            }
            Ok(())
        };
        sweep(&self.runs_dir())?;
        for top in ["cache", "stamps"] {
            sweep(&self.root.join(top))?;
            for shard in shards(&self.root.join(top))? {
                sweep(&shard)?;
            }
        }
        Ok(removed)
    }
}

/// The shard directories under `dir` (anything else there is not the store's).
fn shards(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect())
}

/// Bytes a stored artifact takes: a file's length, or the sum over a tree's files
/// (sizes only; gc need not re-hash what it is about to delete).
fn disk_size(path: &Path) -> u64 {
    match fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => {
            let mut total = 0;
            let _ = hash::walk(path, path, &mut |_, meta, _| {
                total += if meta.is_file() { meta.len() } else { 0 };
                Ok(())
            });
            total
        }
        Err(_) => 0,
    }
}

/// `<store>/state/<name>/`: the documented place for state that kinds share across
/// runs (e.g. `network`: the local network, keys awaiting a reveal). Owner-only,
/// never content-addressed, never removed by `gc`.
pub fn shared_state(root: &Path, name: &str) -> PathBuf {
    root.join("state").join(name)
}
