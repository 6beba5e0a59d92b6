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

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::hash;
use crate::lease::{self, FileLease, Taken};

mod hash_name;
mod seal;
mod stamp;

pub use hash_name::ContentHash;
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

/// What a finished stage produced for a given cache key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    pub key: String,
    pub kind: String,
    pub outputs: BTreeMap<String, Artifact>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Brought from a remote store whose entries nobody verified (`pull` without
    /// trusted keys): stages that act for the user refuse what derives from it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
    /// The store's seal over everything above ([`seal`]); written by
    /// [`Store::cache_put`], checked by [`Store::cache_get`].
    #[serde(default)]
    pub seal: String,
}

impl CacheEntry {
    fn sealed_bytes(&self) -> Vec<u8> {
        let unsealed = CacheEntry {
            seal: String::new(),
            ..self.clone()
        };
        serde_json::to_vec(&unsealed).expect("cache entries serialise")
    }
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

/// How the store's locks are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locking {
    /// `flock`: released when the process dies, however it dies.
    Flock,
    /// Lease files, renewed while held: for filesystems without `flock` (Lustre
    /// mounted without `-o flock`, some NFS), or whose `flock` is not shared between
    /// the machines using the store (NFS with `local_lock`), which `SOMA_FLOW_LOCKS=lease`
    /// declares. A holder that dies blocks others until its lease expires.
    Lease { ttl: Duration },
}

/// A held lock; released on drop, or (a `flock`) when the process dies, or (a lease)
/// when it expires.
pub struct Lock(#[allow(dead_code)] Held);

#[allow(dead_code)] // held for what dropping it releases
enum Held {
    Flock(File),
    Lease(FileLease),
}

/// How often a waiter looks at a lease again.
const LEASE_POLL: Duration = Duration::from_millis(200);

const SEAL_ENTRY: &str = "cache-entry";
const SEAL_STAMP: &str = "stamp";

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

    pub fn path_of(&self, a: &Artifact) -> PathBuf {
        let dir = match a.kind {
            ArtifactKind::File => "objects",
            ArtifactKind::Dir => "trees",
        };
        self.root
            .join(dir)
            .join(a.hash.shard())
            .join(a.hash.as_str())
    }

    fn stamp_path(&self, a: &Artifact) -> PathBuf {
        self.root
            .join("stamps")
            .join(a.hash.shard())
            .join(a.hash.as_str())
    }

    /// Moves a finished output into the store; identical content is stored once.
    ///
    /// Only regular files and directories are accepted (a FIFO or device is refused,
    /// a symbolic link too). A file with other hard links is copied first, so the store
    /// never changes the mode of, or shares an inode with, a file outside it. Stored
    /// files and directories are read-only. An object already present is verified
    /// before it is reused, and replaced when it is corrupt.
    pub fn publish(&self, path: &Path) -> Result<Artifact> {
        let kind = own_output(path)?;
        let (hash, size) = match kind {
            ArtifactKind::Dir => hash::hash_tree(path)?,
            ArtifactKind::File => hash::hash_file(path)?,
        };
        let artifact = Artifact {
            kind,
            hash: ContentHash::parse(&hash).map_err(anyhow::Error::msg)?,
            size,
        };
        self.place(path, artifact)
    }

    /// [`Store::publish`] of an output whose writer computed its hash `a` while
    /// writing it (a verified download): moved in without reading it again.
    pub fn publish_hashed(&self, path: &Path, a: &Artifact) -> Result<()> {
        anyhow::ensure!(
            own_output(path)? == a.kind,
            "{} is not the kind of object its hash names",
            path.display()
        );
        self.place(path, a.clone()).map(drop)
    }

    /// Moves an owned output, whose artifact is `artifact`, to its place in the store.
    fn place(&self, path: &Path, artifact: Artifact) -> Result<Artifact> {
        let kind = artifact.kind;
        let dest = self.path_of(&artifact);
        if fs::symlink_metadata(&dest).is_ok() {
            match self.verify(&artifact)? {
                Check::Ok => {
                    discard(path)?;
                    return Ok(artifact);
                }
                Check::Missing | Check::Corrupt => {
                    tracing::warn!(
                        "stored object {} did not match its hash; replacing it",
                        dest.display()
                    );
                    discard(&dest)?;
                }
            }
        }
        let shard = dest.parent().expect("store paths have parents");
        fs::create_dir_all(shard)?;
        match fs::rename(path, &dest) {
            Ok(()) => {}
            // Another process published the same content first.
            Err(_) if dest.exists() => {
                discard(path)?;
                return Ok(artifact);
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot move {} into the store", path.display()))
            }
        }
        sync_dir(shard)?;
        if kind == ArtifactKind::Dir {
            // After the rename: moving a directory needs it writable.
            seal_dirs(&dest)?;
        }
        self.write_stamp(&artifact, &dest);
        Ok(artifact)
    }

    /// Whether a stored artifact is present and intact, without changing anything.
    /// An unchanged stamp vouches for it at the cost of a few `stat`s; otherwise it
    /// is re-hashed in full and, when intact, stamped again.
    pub fn verify(&self, a: &Artifact) -> io::Result<Check> {
        let path = self.path_of(a);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Check::Missing),
            Err(e) => return Err(e),
        };
        let right_type = match a.kind {
            ArtifactKind::File => meta.is_file(),
            ArtifactKind::Dir => meta.is_dir(),
        };
        if !right_type {
            return Ok(Check::Corrupt);
        }
        if let Ok(print) = stamp::fingerprint(&path) {
            let stamp = fs::read_to_string(self.stamp_path(a)).unwrap_or_default();
            if self
                .seal
                .verify(SEAL_STAMP, &stamp_bytes(a, &print), stamp.trim())
            {
                return Ok(Check::Ok);
            }
        }
        let actual = match a.kind {
            ArtifactKind::File => hash::hash_file(&path),
            ArtifactKind::Dir => hash::hash_tree(&path),
        };
        match actual {
            Ok((h, size)) if h == a.hash.as_str() && size == a.size => {
                self.write_stamp(a, &path);
                Ok(Check::Ok)
            }
            _ => Ok(Check::Corrupt),
        }
    }

    /// [`Store::verify`], removing a corrupt object so that it gets rebuilt.
    pub fn check(&self, a: &Artifact) -> Result<Check> {
        let check = self.verify(a)?;
        if let Check::Corrupt = check {
            self.remove_object(a)?;
        }
        Ok(check)
    }

    /// Removes a stored object and its stamp.
    pub fn remove_object(&self, a: &Artifact) -> io::Result<()> {
        let _ = fs::remove_file(self.stamp_path(a));
        discard(&self.path_of(a))
    }

    /// Stamps an object just verified or published. Best effort: without a stamp the
    /// next verification re-hashes.
    fn write_stamp(&self, a: &Artifact, path: &Path) {
        if let Ok(print) = stamp::fingerprint(path) {
            let mac = self.seal.seal(SEAL_STAMP, &stamp_bytes(a, &print));
            let _ = replace_file(&self.stamp_path(a), mac.as_bytes(), false);
        }
    }

    fn cache_path(&self, key: &str) -> PathBuf {
        self.root
            .join("cache")
            .join(&key[..2])
            .join(format!("{key}.json"))
    }

    /// The cache entry for `key`: `Ok(None)` when there is none, `Err` (why) when there
    /// is one this store cannot trust: unreadable, malformed, filed under another key,
    /// or not sealed by this store.
    pub fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>, String> {
        let bytes = match fs::read(self.cache_path(key)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read its cache entry: {e}")),
        };
        let entry: CacheEntry = serde_json::from_slice(&bytes)
            .map_err(|e| format!("its cache entry is malformed ({e})"))?;
        if entry.key != key {
            return Err("its cache entry belongs to another key".into());
        }
        if !self
            .seal
            .verify(SEAL_ENTRY, &entry.sealed_bytes(), &entry.seal)
        {
            return Err(
                "its cache entry is not sealed by this store (edited, or copied from elsewhere)"
                    .into(),
            );
        }
        Ok(Some(entry))
    }

    pub fn cache_put(&self, entry: &CacheEntry) -> Result<()> {
        let mut sealed = entry.clone();
        sealed.seal = self.seal.seal(SEAL_ENTRY, &entry.sealed_bytes());
        write_atomic(
            &self.cache_path(&entry.key),
            &serde_json::to_vec_pretty(&sealed)?,
        )
    }

    pub fn cache_remove(&self, key: &str) {
        let _ = fs::remove_file(self.cache_path(key));
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        lock_file(&self.root, name)
    }

    fn lease_path(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(format!("{name}.lease"))
    }

    /// Waits until no other process runs the stage with this key.
    pub fn lock_key(&self, key: &str) -> Result<Lock> {
        Ok(Lock(match self.locking {
            Locking::Flock => {
                let f = self.lock_file(key)?;
                f.lock()?;
                Held::Flock(f)
            }
            Locking::Lease { ttl } => {
                Held::Lease(FileLease::take(&self.lease_path(key), ttl, LEASE_POLL)?)
            }
        }))
    }

    pub fn try_lock_key(&self, key: &str) -> Result<Option<Lock>> {
        match self.locking {
            Locking::Flock => {
                let f = self.lock_file(key)?;
                match f.try_lock() {
                    Ok(()) => Ok(Some(Lock(Held::Flock(f)))),
                    Err(fs::TryLockError::WouldBlock) => Ok(None),
                    Err(fs::TryLockError::Error(e)) => Err(e.into()),
                }
            }
            Locking::Lease { ttl } => match FileLease::try_take(&self.lease_path(key), ttl)? {
                Taken::Mine(lease) => Ok(Some(Lock(Held::Lease(lease)))),
                Taken::Theirs(_) => Ok(None),
            },
        }
    }

    /// Runs hold the store lock shared; `gc` holds it exclusively. With leases, each
    /// sharer holds a lease of its own under `locks/store.sharers/`, and the exclusive
    /// holder `locks/store.lease`: each announces itself, then waits for the other kind
    /// to be gone, a sharer stepping back while an exclusive holder waits.
    pub fn lock_store(&self, exclusive: bool) -> Result<Lock> {
        let ttl = match self.locking {
            Locking::Flock => {
                let f = self.lock_file("store")?;
                if exclusive {
                    f.lock()?;
                } else {
                    f.lock_shared()?;
                }
                return Ok(Lock(Held::Flock(f)));
            }
            Locking::Lease { ttl } => ttl,
        };
        let sharers = self.root.join("locks").join("store.sharers");
        fs::create_dir_all(&sharers)?;
        let exclusive_path = self.lease_path("store");
        if exclusive {
            let lease = FileLease::take(&exclusive_path, ttl, LEASE_POLL)?;
            // Expired sharers' leases are removed on the way.
            let sharing = || -> io::Result<bool> {
                let mut live = false;
                for e in fs::read_dir(&sharers)?.flatten() {
                    match lease::live_holder(&e.path(), ttl) {
                        Some(_) => live = true,
                        None => {
                            let _ = fs::remove_file(e.path());
                        }
                    }
                }
                Ok(live)
            };
            while sharing()? {
                std::thread::sleep(LEASE_POLL);
            }
            return Ok(Lock(Held::Lease(lease)));
        }
        loop {
            let mine = sharers.join(format!("{}.lease", unique()));
            let Taken::Mine(lease) = FileLease::try_take(&mine, ttl)? else {
                continue;
            };
            if lease::live_holder(&exclusive_path, ttl).is_none() {
                return Ok(Lock(Held::Lease(lease)));
            }
            drop(lease);
            std::thread::sleep(LEASE_POLL);
        }
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

/// What a stamp seals: the artifact and its fingerprint.
fn stamp_bytes(a: &Artifact, fingerprint: &str) -> Vec<u8> {
    format!("{:?} {} {}\n{fingerprint}", a.kind, a.hash, a.size).into_bytes()
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

/// The lock file `locks/<name>.lock` of the store at `root`, opened for `flock`.
fn lock_file(root: &Path, name: &str) -> Result<File> {
    let path = root.join("locks").join(format!("{name}.lock"));
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open lock {}", path.display()))
}

impl Locking {
    /// `SOMA_FLOW_LOCKS` (`flock` or `lease`), else `flock` if the store's filesystem
    /// supports it (tried on `locks/probe.lock`), else lease files, with a warning.
    /// Leases live `SOMA_FLOW_LOCK_LEASE` (default 60s) without renewal.
    fn for_store(root: &Path) -> Result<Locking> {
        let ttl = crate::duration::from_env("SOMA_FLOW_LOCK_LEASE", Duration::from_secs(60))
            .map_err(anyhow::Error::msg)?;
        match std::env::var("SOMA_FLOW_LOCKS").as_deref() {
            Ok("lease") => return Ok(Locking::Lease { ttl }),
            Ok("flock") => return Ok(Locking::Flock),
            Ok("") | Err(_) => {}
            Ok(other) => anyhow::bail!("SOMA_FLOW_LOCKS={other:?}: expected `flock` or `lease`"),
        }
        match lock_file(root, "probe")?.try_lock() {
            Ok(()) | Err(fs::TryLockError::WouldBlock) => Ok(Locking::Flock),
            Err(fs::TryLockError::Error(e)) => {
                static TOLD: std::sync::Once = std::sync::Once::new();
                TOLD.call_once(|| {
                    eprintln!(
                        "warning: the store's filesystem ({}) has no working flock ({e}); \
                         using lease files instead (locks/*.lease, renewed while held; one \
                         left by a process that died blocks others for up to {}). Set \
                         SOMA_FLOW_LOCKS=lease to choose them without this warning",
                        root.display(),
                        humantime::format_duration(ttl)
                    )
                });
                Ok(Locking::Lease { ttl })
            }
        }
    }
}

/// Writes `bytes` to `path` so that readers see either the old or the whole new
/// content, durably (file and directory entry synced).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_file(path, bytes, true)
}

/// [`write_atomic`], with `durable` choosing whether to wait for the disk: stamps
/// need not survive a power loss (a lost or torn stamp only costs a re-hash).
fn replace_file(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let dir = path
        .parent()
        .expect("atomic writes target files in directories");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(temp_name(&path.file_name().unwrap().to_string_lossy()));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    drop(f);
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// A hidden temporary name beside `name`, unique across processes and threads
/// (`gc` sweeps the stale ones: dot-prefixed, `.tmp`).
fn temp_name(name: &str) -> String {
    format!(".{name}.{}.{}.tmp", std::process::id(), unique())
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:x}{:x}", nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// Makes the output at `path` one the store can own (every file of a directory too,
/// see [`own_file`]) and says which kind it is. Only regular files and directories
/// are accepted.
fn own_output(path: &Path) -> Result<ArtifactKind> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        hash::walk(path, path, &mut |_, meta, p| match meta.is_file() {
            true => own_file(p, meta),
            false => Ok(()),
        })?;
        Ok(ArtifactKind::Dir)
    } else if meta.is_file() {
        own_file(path, &meta)?;
        Ok(ArtifactKind::File)
    } else if meta.file_type().is_symlink() {
        anyhow::bail!(
            "{} is a symbolic link; write the output itself",
            path.display()
        );
    } else {
        Err(hash::special_file(path, &meta).into())
    }
}

/// Makes a file an output the store can own: synced, read-only, and its own inode (a
/// file with other hard links is replaced by a private copy first, so that making
/// it read-only cannot change a file elsewhere).
fn own_file(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if link_count(meta) > 1 {
        let copy = path.with_file_name(format!(
            ".{}.{}.copy",
            path.file_name().unwrap_or_default().to_string_lossy(),
            unique()
        ));
        fs::copy(path, &copy)?;
        fs::rename(&copy, path)?;
    }
    File::open(path)?.sync_all()?;
    let mut perm = fs::metadata(path)?.permissions();
    perm.set_readonly(true);
    fs::set_permissions(path, perm)
}

#[cfg(unix)]
fn link_count(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.nlink()
}

#[cfg(not(unix))]
fn link_count(_: &fs::Metadata) -> u64 {
    1
}

/// Makes every directory of a stored tree read-only, deepest first.
fn seal_dirs(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            seal_dirs(&e.path())?;
        }
    }
    let mut perm = fs::metadata(dir)?.permissions();
    perm.set_readonly(true);
    fs::set_permissions(dir, perm)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// `<store>/state/<name>/`: the documented place for state that kinds share across
/// runs (e.g. `network`: the local network, keys awaiting a reveal). Owner-only,
/// never content-addressed, never removed by `gc`.
pub fn shared_state(root: &Path, name: &str) -> PathBuf {
    root.join("state").join(name)
}

/// Creates `dir` if needed and makes it owner-only (0700).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Removes a file or a whole tree, read-only parts included; a missing path is fine.
pub fn discard(path: &Path) -> io::Result<()> {
    make_writable(path);
    remove_any(path)
}

/// Read-only directories must be writable before their entries can be removed.
fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        #[allow(clippy::permissions_set_readonly_false)]
        {
            let mut perm = meta.permissions();
            perm.set_readonly(false);
            let _ = fs::set_permissions(path, perm);
        }
        if let Ok(entries) = fs::read_dir(path) {
            for e in entries.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path, leaf: &str) -> PathBuf {
        let t = dir.join(format!("tree-{}", unique()));
        fs::create_dir_all(t.join("empty")).unwrap();
        fs::create_dir_all(t.join("sub")).unwrap();
        fs::write(t.join("sub/leaf"), leaf).unwrap();
        t
    }

    #[test]
    fn published_trees_are_read_only_verified_and_replaced_when_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, "shared").unwrap();
        let t = tree(dir.path(), "leaf");
        fs::hard_link(&outside, t.join("sub/linked")).unwrap();
        let a = store.publish(&t).unwrap();
        let stored = store.path_of(&a);
        assert!(fs::metadata(stored.join("sub"))
            .unwrap()
            .permissions()
            .readonly());
        assert!(!fs::metadata(&outside).unwrap().permissions().readonly());
        assert!(matches!(store.verify(&a).unwrap(), Check::Ok));

        // Tamper (as root could, or after a chmod): the stamp no longer matches.
        make_writable(&stored);
        let mut perm = fs::metadata(stored.join("sub/leaf")).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        fs::set_permissions(stored.join("sub/leaf"), perm).unwrap();
        fs::write(stored.join("sub/leaf"), "evil").unwrap();
        assert!(matches!(store.verify(&a).unwrap(), Check::Corrupt));

        // Publishing the same content again replaces the corrupt object.
        let again = tree(dir.path(), "leaf");
        fs::write(again.join("sub/linked"), "shared").unwrap();
        assert_eq!(store.publish(&again).unwrap(), a);
        assert!(matches!(store.verify(&a).unwrap(), Check::Ok));
        assert_eq!(fs::read_to_string(stored.join("sub/leaf")).unwrap(), "leaf");
    }

    #[test]
    fn entries_are_bound_to_their_key_and_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a")).unwrap();
        let other = Store::open(&dir.path().join("b")).unwrap();
        let key = "1".repeat(64);
        let entry = CacheEntry {
            key: key.clone(),
            kind: "command".into(),
            outputs: BTreeMap::new(),
            duration_ms: 1,
            notes: vec![],
            seal: String::new(),
            unverified: false,
        };
        store.cache_put(&entry).unwrap();
        assert!(store.cache_get(&key).unwrap().is_some());
        assert!(store.cache_get(&"2".repeat(64)).unwrap().is_none());
        // The same file in another store, or under another key, is not trusted.
        let text = fs::read(store.cache_path(&key)).unwrap();
        fs::create_dir_all(other.cache_path(&key).parent().unwrap()).unwrap();
        fs::write(other.cache_path(&key), &text).unwrap();
        assert!(other.cache_get(&key).is_err());
        let moved = "2".repeat(64);
        fs::create_dir_all(store.cache_path(&moved).parent().unwrap()).unwrap();
        fs::write(store.cache_path(&moved), &text).unwrap();
        assert!(store.cache_get(&moved).is_err());
    }
}
