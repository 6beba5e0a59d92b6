//! Leases: locks that expire unless their holder renews them, for where a lock cannot
//! be tied to a live process. The remote store's key leases ([`crate::remote`]) and the
//! store's lease files (on filesystems without working `flock`, [`crate::store`]) share
//! the renewal and the holder's name.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Calls `renew` every `every` in a thread of its own, until dropped.
pub struct Heartbeat {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn start(every: Duration, renew: impl Fn() + Send + 'static) -> Heartbeat {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (flag, wake) = &*stop2;
            let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let (guard, _) = wake
                    .wait_timeout(stopped, every)
                    .unwrap_or_else(|e| e.into_inner());
                stopped = guard;
                if *stopped {
                    return;
                }
                renew();
            }
        });
        Heartbeat {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Who holds a lease, as others see it: host, process and a random tag.
pub fn owner_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown-host".into()
    };
    let mut tag = [0u8; 4];
    let _ = getrandom::fill(&mut tag);
    format!(
        "{host} (pid {}, {:08x})",
        std::process::id(),
        u32::from_ne_bytes(tag)
    )
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a lease file says: who holds it, until when by its holder's clock (ms since the
/// epoch), for how long each renewal holds, and how many times it was renewed (so that
/// a renewal changes it whatever the holder's clock says).
#[derive(Debug, Serialize, Deserialize)]
pub struct LeaseBody {
    pub owner: String,
    pub expires: u64,
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    #[serde(default)]
    pub renewal: u64,
}

impl LeaseBody {
    pub fn is_live(&self) -> bool {
        self.expires > now_ms()
    }
}

/// A held lease file, renewed every third of its time to live until dropped, then
/// removed. Only its holder's process writes it; another takes it over only once it
/// has expired (its holder died, or stalled for a whole time to live).
pub struct FileLease {
    path: PathBuf,
    owner: String,
    _heartbeat: Heartbeat,
}

/// Whether another holds `path`, and who.
pub enum Taken {
    Mine(FileLease),
    Theirs(String),
}

impl FileLease {
    /// Takes the lease at `path` (created only if absent), unless a live holder has it.
    /// An expired one is moved aside first, by one taker only (a rename).
    pub fn try_take(path: &Path, ttl: Duration) -> io::Result<Taken> {
        let owner = owner_name();
        for _ in 0..5 {
            match fs::File::create_new(path) {
                Ok(mut f) => {
                    f.write_all(&body(&owner, ttl, 0))?;
                    f.sync_all()?;
                    let (p, o) = (path.to_path_buf(), owner.clone());
                    let heartbeat = Heartbeat::start(ttl / 3, move || renew(&p, &o, ttl));
                    return Ok(Taken::Mine(FileLease {
                        path: path.to_path_buf(),
                        owner,
                        _heartbeat: heartbeat,
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if let Some(holder) = live_holder(path, ttl) {
                        return Ok(Taken::Theirs(holder));
                    }
                    let aside = path.with_extension(format!("expired-{}", owner_tag(&owner)));
                    if fs::rename(path, &aside).is_ok() {
                        let _ = fs::remove_file(&aside);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "{} changed hands five times in a row",
            path.display()
        )))
    }

    /// Waits for the lease at `path`, checking every `poll`.
    pub fn take(path: &Path, ttl: Duration, poll: Duration) -> io::Result<FileLease> {
        loop {
            match FileLease::try_take(path, ttl)? {
                Taken::Mine(lease) => return Ok(lease),
                Taken::Theirs(_) => std::thread::sleep(poll),
            }
        }
    }
}

impl Drop for FileLease {
    fn drop(&mut self) {
        if holder(&self.path).as_deref() == Some(self.owner.as_str()) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The lease `owner` holds for `ttl` from now, renewed `renewal` times, as written.
pub fn body(owner: &str, ttl: Duration, renewal: u64) -> Vec<u8> {
    serde_json::to_vec(&LeaseBody {
        owner: owner.to_string(),
        expires: now_ms() + ttl.as_millis() as u64,
        ttl_ms: Some(ttl.as_millis() as u64),
        renewal,
    })
    .expect("a lease serialises")
}

/// Renews a lease this process still holds; one taken over meanwhile stays theirs.
fn renew(path: &Path, owner: &str, ttl: Duration) {
    if holder(path).as_deref() == Some(owner) {
        let _ = crate::store::write_atomic(path, &body(owner, ttl, 0));
    }
}

fn holder(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    Some(serde_json::from_slice::<LeaseBody>(&bytes).ok()?.owner)
}

/// The holder of the lease at `path`, if it has not expired. A file being written (not
/// yet readable) counts as live until it is a time to live old.
pub fn live_holder(path: &Path, ttl: Duration) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    match serde_json::from_slice::<LeaseBody>(&bytes) {
        Ok(b) => b.is_live().then_some(b.owner),
        Err(_) => {
            let age = fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())?;
            (age < ttl).then(|| "a holder still writing it".to_string())
        }
    }
}

fn owner_tag(owner: &str) -> String {
    owner.chars().filter(char::is_ascii_alphanumeric).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_excludes_others_until_released_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.lease");
        let ttl = Duration::from_millis(600);
        let Taken::Mine(held) = FileLease::try_take(&path, ttl).unwrap() else {
            panic!("free")
        };
        // Renewed: still held after several times its time to live.
        std::thread::sleep(ttl * 3);
        assert!(matches!(
            FileLease::try_take(&path, ttl).unwrap(),
            Taken::Theirs(_)
        ));
        drop(held);
        assert!(!path.exists(), "released");
        // A holder that died stopped renewing: its lease expires and is taken over.
        fs::write(&path, body("a dead host (pid 1, 0)", ttl, 0)).unwrap();
        assert!(matches!(
            FileLease::try_take(&path, ttl).unwrap(),
            Taken::Theirs(who) if who.starts_with("a dead host")
        ));
        std::thread::sleep(ttl);
        let Taken::Mine(mine) = FileLease::try_take(&path, ttl).unwrap() else {
            panic!("expired")
        };
        assert_eq!(holder(&path), Some(mine.owner.clone()));
    }
}
