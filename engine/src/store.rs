//! The content-addressed store.
//!
//! ```text
//! objects/ab/<hash>     file artifacts (read-only)
//! trees/ab/<hash>/      directory artifacts
//! cache/ab/<key>.json   stage cache entries: key -> output artifacts
//! runs/<id>.json        run records
//! locks/                one lock file per stage key, plus the store lock
//! tmp/                  working directories of running stages (never trusted)
//! work/<key>/           scratch that survives a killed stage (checkpoints)
//! state/<kind>/         private state of stage kinds (ledgers, keys)
//! ```
//! Everything is published by rename from `tmp/`, so a killed process leaves nothing
//! half-written in a place a later run reads from.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::hash;

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
    pub hash: String,
    pub size: u64,
}

/// What a finished stage produced for a given cache key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    pub key: String,
    pub kind: String,
    pub outputs: std::collections::BTreeMap<String, Artifact>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

pub enum Check {
    Ok,
    Missing,
    /// The object did not match its hash and has been removed.
    Corrupt,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A held file lock; released on drop or when the process dies.
pub struct Lock(#[allow(dead_code)] File);

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        for sub in [
            "objects", "trees", "cache", "runs", "locks", "tmp", "work", "state", "logs",
        ] {
            fs::create_dir_all(root.join(sub)).with_context(|| {
                format!("cannot create store directory {}", root.join(sub).display())
            })?;
        }
        let root = root.canonicalize()?;
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path_of(&self, a: &Artifact) -> PathBuf {
        let dir = match a.kind {
            ArtifactKind::File => "objects",
            ArtifactKind::Dir => "trees",
        };
        self.root.join(dir).join(&a.hash[..2]).join(&a.hash)
    }

    /// Moves a finished output into the store; identical content is stored once.
    pub fn publish(&self, path: &Path) -> Result<Artifact> {
        let meta = fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            anyhow::bail!(
                "{} is a symbolic link; write the output itself",
                path.display()
            );
        }
        let (kind, (hash, size)) = if meta.is_dir() {
            (ArtifactKind::Dir, hash::hash_tree(path)?)
        } else {
            sync_file(path)?;
            (ArtifactKind::File, hash::hash_file(path)?)
        };
        let artifact = Artifact { kind, hash, size };
        let dest = self.path_of(&artifact);
        if dest.exists() {
            remove_any(path)?;
            return Ok(artifact);
        }
        fs::create_dir_all(dest.parent().expect("store paths have parents"))?;
        if kind == ArtifactKind::Dir {
            hash::walk(path, path, &mut |_, meta, p| {
                if meta.is_file() {
                    sync_file(p)?;
                    set_readonly(p)?;
                }
                Ok(())
            })?;
        } else {
            set_readonly(path)?;
        }
        match fs::rename(path, &dest) {
            Ok(()) => Ok(artifact),
            // Another process published the same content first.
            Err(_) if dest.exists() => {
                remove_any(path)?;
                Ok(artifact)
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot move {} into the store", path.display()))
            }
        }
    }

    /// Re-hashes a stored artifact; a corrupt one is removed so it gets rebuilt.
    pub fn check(&self, a: &Artifact) -> Result<Check> {
        let path = self.path_of(a);
        if !path.exists() {
            return Ok(Check::Missing);
        }
        let actual = match a.kind {
            ArtifactKind::File if path.is_file() => hash::hash_file(&path).map(|(h, _)| h).ok(),
            ArtifactKind::Dir if path.is_dir() => hash::hash_tree(&path).map(|(h, _)| h).ok(),
            _ => None,
        };
        if actual.as_deref() == Some(a.hash.as_str()) {
            return Ok(Check::Ok);
        }
        remove_any(&path)?;
        Ok(Check::Corrupt)
    }

    fn cache_path(&self, key: &str) -> PathBuf {
        self.root
            .join("cache")
            .join(&key[..2])
            .join(format!("{key}.json"))
    }

    pub fn cache_get(&self, key: &str) -> Option<CacheEntry> {
        let text = fs::read(self.cache_path(key)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn cache_put(&self, entry: &CacheEntry) -> Result<()> {
        write_atomic(
            &self.cache_path(&entry.key),
            &serde_json::to_vec_pretty(entry)?,
        )
    }

    pub fn cache_remove(&self, key: &str) {
        let _ = fs::remove_file(self.cache_path(key));
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        let path = self.root.join("locks").join(format!("{name}.lock"));
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock {}", path.display()))
    }

    /// Waits until no other process runs the stage with this key.
    pub fn lock_key(&self, key: &str) -> Result<Lock> {
        let f = self.lock_file(key)?;
        f.lock()?;
        Ok(Lock(f))
    }

    pub fn try_lock_key(&self, key: &str) -> Result<Option<Lock>> {
        let f = self.lock_file(key)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(Lock(f))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }

    /// Runs hold the store lock shared; `gc` holds it exclusively.
    pub fn lock_store(&self, exclusive: bool) -> Result<Lock> {
        let f = self.lock_file("store")?;
        if exclusive {
            f.lock()?;
        } else {
            f.lock_shared()?;
        }
        Ok(Lock(f))
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

    pub fn state_dir(&self, kind: &str) -> PathBuf {
        self.root.join("state").join(kind)
    }

    pub fn logs_dir(&self, run_id: &str) -> PathBuf {
        self.root.join("logs").join(run_id)
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// Every stored artifact (for gc), with its path.
    pub fn all_artifacts(&self) -> Result<Vec<(Artifact, PathBuf)>> {
        let mut out = Vec::new();
        for (dir, kind) in [
            ("objects", ArtifactKind::File),
            ("trees", ArtifactKind::Dir),
        ] {
            for shard in fs::read_dir(self.root.join(dir))?.flatten() {
                for e in fs::read_dir(shard.path())?.flatten() {
                    let hash = e.file_name().to_string_lossy().to_string();
                    let size = disk_size(&e.path());
                    out.push((Artifact { kind, hash, size }, e.path()));
                }
            }
        }
        Ok(out)
    }

    /// Every cache entry key (for gc).
    pub fn all_cache_keys(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for shard in fs::read_dir(self.root.join("cache"))?.flatten() {
            for e in fs::read_dir(shard.path())?.flatten() {
                if let Some(k) = e.file_name().to_string_lossy().strip_suffix(".json") {
                    out.push(k.to_string());
                }
            }
        }
        Ok(out)
    }
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

/// Writes `bytes` to `path` so that readers see either the old or the whole new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .expect("atomic writes target files in directories");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id(),
        unique()
    ));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:x}{:x}", nanos, N.fetch_add(1, Ordering::Relaxed))
}

fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

fn set_readonly(path: &Path) -> io::Result<()> {
    let mut perm = fs::metadata(path)?.permissions();
    perm.set_readonly(true);
    fs::set_permissions(path, perm)
}

pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
