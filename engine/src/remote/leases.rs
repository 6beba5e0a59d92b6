//! Key leases: a machine about to build a key takes `leases/<key>.json` (create-only)
//! and renews it every third of its time to live; others wait for its result.
//!
//! A lease is alive only while it changes: a waiting machine judges it by what it
//! observes, the lease's bytes (a renewal counter is in them) changing within the
//! lease's time to live measured on its own monotonic clock, never by the holder's
//! clock alone (a holder whose clock runs years ahead would block everyone for ever).
//! One shortcut, for a lease left long ago: it is dead at once when both its holder's
//! clock and the store's own modification time say it was last renewed more than two
//! times to live ago.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Result};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};

use crate::lease::{self, now_ms, Heartbeat, LeaseBody};

use super::stores::{concise, is_not_found, is_taken};
use super::Remote;

/// What a waiting machine has seen of another's lease on one key: its bytes, and when
/// (on this machine's monotonic clock) they last changed.
#[derive(Default)]
pub struct LeaseWatch {
    seen: Option<(Bytes, Instant)>,
}

impl LeaseWatch {
    /// Whether a lease that reads `bytes` now has changed within `ttl` of this
    /// machine's observation (a lease seen for the first time has).
    fn renewed_within(&mut self, bytes: &Bytes, ttl: Duration) -> bool {
        match &self.seen {
            Some((before, since)) if before == bytes => since.elapsed() < ttl,
            _ => {
                self.seen = Some((bytes.clone(), Instant::now()));
                true
            }
        }
    }
}

/// Whether a lease was last renewed more than two times to live ago by both its
/// holder's clock and the store's.
fn long_dead(held: &LeaseBody, modified: SystemTime, ttl: Duration) -> bool {
    let by_store = SystemTime::now()
        .duration_since(modified)
        .is_ok_and(|age| age > 2 * ttl);
    held.expires < now_ms() && by_store
}

impl Remote {
    /// Claims the right to build `key` for a while, so that machines running the same
    /// pipeline at once build it once. `watch` is what this machine saw of the lease
    /// on earlier calls for the same key.
    pub fn claim(self: &Arc<Self>, key: &str, watch: &mut LeaseWatch) -> Result<Claim> {
        let path = self.path(&format!("leases/{key}.json"));
        for _ in 0..5 {
            if self.put_new(&path, self.lease_body(0))? {
                return Ok(Claim::Mine(Lease::start(Arc::clone(self), path)));
            }
            let got = match self.block_on(self.store.get(&path)) {
                Ok(got) => got,
                Err(e) if is_not_found(&e) => continue, // released meanwhile
                Err(e) => return Err(concise(e)),
            };
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            let modified = got.meta.last_modified.into();
            let bytes = self.block_on(got.bytes()).map_err(concise)?;
            // A lease that does not parse counts as expired.
            if let Ok(held) = serde_json::from_slice::<LeaseBody>(&bytes) {
                let ttl = held.ttl_ms.map_or(self.lease_ttl, Duration::from_millis);
                if watch.renewed_within(&bytes, ttl) && !long_dead(&held, modified, ttl) {
                    return Ok(Claim::Theirs {
                        owner: held.owner,
                        ttl,
                    });
                }
            }
            // Expired: take it over, only if nobody else did since it was read.
            let update = self.block_on(self.store.put_opts(
                &path,
                PutPayload::from(self.lease_body(0)),
                PutMode::Update(version).into(),
            ));
            match update {
                Ok(_) => return Ok(Claim::Mine(Lease::start(Arc::clone(self), path))),
                Err(e) if is_taken(&e) || is_not_found(&e) => continue,
                // Stores without conditional updates (a local directory): remove the
                // expired lease and race for a new one.
                Err(object_store::Error::NotImplemented { .. }) => {
                    let _ = self.block_on(self.store.delete(&path));
                }
                Err(e) => return Err(concise(e)),
            }
        }
        bail!("could not claim {path}: it changed hands five times in a row")
    }

    fn lease_body(&self, renewal: u64) -> Vec<u8> {
        lease::body(&self.owner, self.lease_ttl, renewal)
    }
}

/// The outcome of [`Remote::claim`].
pub enum Claim {
    /// This process builds the key; dropping the lease releases it.
    Mine(Lease),
    /// Another machine builds it, and holds it while it renews its lease at least
    /// every `ttl`.
    Theirs { owner: String, ttl: Duration },
}

/// A held lease, renewed in the background until dropped, then removed.
pub struct Lease {
    heartbeat: Option<Heartbeat>,
    remote: Arc<Remote>,
    path: ObjectPath,
}

impl Lease {
    fn start(remote: Arc<Remote>, path: ObjectPath) -> Lease {
        let (remote2, path2) = (Arc::clone(&remote), path.clone());
        let renewals = AtomicU64::new(0);
        let heartbeat = Heartbeat::start(remote.lease_ttl / 3, move || {
            let n = renewals.fetch_add(1, Ordering::Relaxed) + 1;
            let body = PutPayload::from(remote2.lease_body(n));
            let _ = remote2.block_on(remote2.store.put(&path2, body));
        });
        Lease {
            heartbeat: Some(heartbeat),
            remote,
            path,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Renewal stops before the lease is removed.
        drop(self.heartbeat.take());
        let _ = self.remote.block_on(self.remote.store.delete(&self.path));
    }
}
