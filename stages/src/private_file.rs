//! Owner-only files (mode 0600) written atomically.
//!
//! Secrets are written to a temporary file that `tempfile` creates with mode 0600
//! from the start (its documented default on Unix), then moved into place: the final path never exists with a wider
//! mode or with partial contents, even if the process dies half-way.

use std::io::{self, Write};
use std::path::Path;

/// What to do when the destination already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Replace,
    Refuse,
}

/// Writes `contents` to `path` with mode 0600, creating missing parent directories
/// with mode 0700.
/// With [`Existing::Refuse`] an existing file is left untouched and the error kind
/// is [`io::ErrorKind::AlreadyExists`] (the move is a hard link, atomic on POSIX).
pub fn write(path: &Path, contents: &[u8], existing: Existing) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    match existing {
        Existing::Replace => tmp.persist(path).map(drop).map_err(|e| e.error),
        Existing::Refuse => tmp.persist_noclobber(path).map(drop).map_err(|e| e.error),
    }
}
