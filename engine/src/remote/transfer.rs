//! What uploads and downloads share: part sizes, progress, and the errors that condemn
//! a remote object.

use std::fs::{self};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::HumanBytes;

use crate::hash::TreeEntry;
use crate::store::Store;

/// Bytes per part of a transfer.
pub const PART_SIZE: usize = 8 << 20;
/// Parts moving at once, per file.
pub const PARTS_IN_FLIGHT: usize = 8;

/// A directory artifact as the remote keeps it (`trees/<hash>.json`): its entries,
/// each file by its content hash, so that the local store can rebuild it.
pub(super) type Listing = Vec<TreeEntry>;

/// Refuses entries whose paths would leave the tree.
pub(super) fn check_paths(listing: &Listing) -> Result<(), String> {
    for entry in listing {
        let name = entry.path();
        let inside = !name.is_empty()
            && Path::new(name)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return Err(format!(
                "it names the path {name:?}, which is not inside the tree"
            ));
        }
    }
    Ok(())
}

/// Whether an error comes from a remote object that is gone or was condemned: the
/// entry that led to it should go too.
pub fn condemned(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Condemned>() || c.is::<Gone>())
}

/// An object the remote no longer holds.
#[derive(Debug, thiserror::Error)]
#[error("the remote holds no object {0}")]
pub struct Gone(pub String);

/// A remote object that failed a check on download, and was deleted from the remote
/// (for a file in a tree, the tree's listing too): entries that name it are then found
/// dangling and rebuilt.
#[derive(Debug, thiserror::Error)]
#[error("the remote object {object} failed a check: {check}; it was deleted from the remote, and the next run rebuilds the stage that made it")]
pub struct Condemned {
    pub object: String,
    pub check: String,
}

/// The multipart upload a log names is gone from the remote.
#[derive(Debug, thiserror::Error)]
#[error("the logged multipart upload is gone from the remote")]
pub(super) struct UploadGone;

/// Counts the bytes of a transfer and says how far it is, every few seconds.
pub struct Meter<'a> {
    label: String,
    total: u64,
    done: AtomicU64,
    last: Mutex<Instant>,
    report: &'a (dyn Fn(&str) + Sync),
}

impl<'a> Meter<'a> {
    pub fn new(label: String, total: u64, report: &'a (dyn Fn(&str) + Sync)) -> Meter<'a> {
        Meter {
            label,
            total,
            done: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
            report,
        }
    }

    /// Says something about the transfer now.
    pub(super) fn say(&self, what: &str) {
        (self.report)(&format!("{}: {what}", self.label));
    }

    pub(super) fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let mut last = self.last.lock().expect("meter lock");
        if last.elapsed() >= Duration::from_secs(2) && done < self.total {
            *last = Instant::now();
            (self.report)(&format!(
                "{}: {} of {}",
                self.label,
                HumanBytes(done),
                HumanBytes(self.total)
            ));
        }
    }
}

/// Where transfers keep their partial files and logs in the local store (never trusted:
/// under `tmp/`).
pub(super) fn staging(local: &Store) -> io::Result<std::path::PathBuf> {
    let dir = local.root().join("tmp").join("remote");
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(super) fn set_executable(path: &Path, executable: bool) -> io::Result<()> {
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode();
        fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o111))?;
    }
    let _ = (path, executable);
    Ok(())
}
