//! Verification stamps: a cheap fingerprint of a stored object's on-disk state, so that
//! an object verified once by a full re-hash is trusted again without reading it while
//! nothing about it has changed.
//!
//! The fingerprint lists, for the object and every file and directory inside it, the
//! relative path, device, inode, size, mode, mtime and ctime. Writing to a file,
//! changing its mode, renaming, adding or removing entries, or replacing the object
//! all change a ctime (which no unprivileged process can set back) or an inode, so a
//! changed object never matches its stamp and is re-hashed in full.

use std::fs;
use std::io;
use std::path::Path;

/// The fingerprint of the file or directory at `path`; symbolic links and special
/// files inside make it fail (such an object is never intact).
pub fn fingerprint(path: &Path) -> io::Result<String> {
    let mut out = String::new();
    visit(path, "", &mut out)?;
    Ok(out)
}

fn visit(path: &Path, rel: &str, out: &mut String) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    out.push_str(rel);
    out.push('\0');
    out.push_str(&describe(&meta));
    out.push('\n');
    if meta.is_dir() {
        let mut entries: Vec<_> = fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let name = name.to_str().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "a name that is not UTF-8")
            })?;
            visit(&e.path(), &format!("{rel}/{name}"), out)?;
        }
    } else if !meta.is_file() {
        return Err(crate::hash::special_file(path, &meta));
    }
    Ok(())
}

#[cfg(unix)]
fn describe(m: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{} {} {} {:o} {}.{} {}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mode(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

#[cfg(not(unix))]
fn describe(m: &fs::Metadata) -> String {
    format!(
        "{} {:?} {}",
        m.len(),
        m.modified().ok(),
        m.permissions().readonly()
    )
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn changes_with_content_mode_and_entries_not_with_reads() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("a"), "one").unwrap();
        let before = fingerprint(&tree).unwrap();
        std::fs::read(tree.join("a")).unwrap();
        assert_eq!(
            fingerprint(&tree).unwrap(),
            before,
            "reading changes nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(tree.join("a"), "two").unwrap();
        let written = fingerprint(&tree).unwrap();
        assert_ne!(written, before);
        std::fs::write(tree.join("b"), "").unwrap();
        assert_ne!(fingerprint(&tree).unwrap(), written);
    }
}
