//! File operations the store is built on: atomic replacement, removal of read-only
//! trees, owner-only directories.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` so that readers see either the old or the whole new
/// content, durably (file and directory entry synced).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_file(path, true, |f| f.write_all(bytes))
}

/// [`write_atomic`] of `value` as JSON, streamed to the file (a large run record is
/// never held as text too).
pub fn write_json_atomic(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    replace_file(path, true, |f| {
        let mut out = io::BufWriter::new(f);
        serde_json::to_writer(&mut out, value)?;
        out.flush()
    })
}

/// Replaces `path` with what `write` writes, with `durable` choosing whether to wait
/// for the disk: stamps need not survive a power loss (a lost or torn stamp only costs
/// a re-hash).
pub(super) fn replace_file(
    path: &Path,
    durable: bool,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .expect("atomic writes target files in directories");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(temp_name(&path.file_name().unwrap().to_string_lossy()));
    let mut f = File::create(&tmp)?;
    write(&mut f)?;
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
pub(super) fn temp_name(name: &str) -> String {
    format!(".{name}.{}.{}.tmp", std::process::id(), unique())
}

pub(super) fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:x}{:x}", nanos, N.fetch_add(1, Ordering::Relaxed))
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(())
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
pub(super) fn make_writable(path: &Path) {
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
