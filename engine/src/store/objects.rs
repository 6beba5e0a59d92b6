//! Objects: outputs published into `objects/` and `trees/` by rename, read-only, and
//! verified before they are trusted (an unchanged stamp vouches for one; otherwise it
//! is re-hashed), corrupt ones removed.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::files::{discard, replace_file, sync_dir, unique};
use super::{stamp, Artifact, ArtifactKind, Check, ContentHash, Store};
use crate::hash;

const SEAL_STAMP: &str = "stamp";

impl Store {
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
            let _ = replace_file(&self.stamp_path(a), false, |f| f.write_all(mac.as_bytes()));
        }
    }
}

/// What a stamp seals: the artifact and its fingerprint.
fn stamp_bytes(a: &Artifact, fingerprint: &str) -> Vec<u8> {
    format!("{:?} {} {}\n{fingerprint}", a.kind, a.hash, a.size).into_bytes()
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

#[cfg(test)]
mod tests {
    use super::super::files::make_writable;
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
}
