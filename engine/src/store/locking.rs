//! Locks: one per stage key, so that a key is built once at a time, and the store
//! lock (runs share it, `gc` holds it alone): `flock`, or lease files where the
//! filesystem has no working `flock`.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::files::unique;
use super::Store;
use crate::lease::{self, FileLease, Taken};

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

impl Store {
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
    pub(super) fn for_store(root: &Path) -> Result<Locking> {
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
