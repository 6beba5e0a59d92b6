//! BLAKE3 content hashes of files and directory trees, streamed.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::store::ContentHash;

/// Files at least this big are hashed on all cores, a piece of this size at a time:
/// memory stays constant (a mapping of the whole file would count toward the
/// process's resident memory, 4.8 GB for a weights file).
const PARALLEL_FROM: u64 = 4 << 20;
const PIECE: usize = 16 << 20;

pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = open_regular(path)?;
    let size = file.metadata()?.len();
    let mut h = blake3::Hasher::new();
    if size >= PARALLEL_FROM {
        let mut piece = vec![0u8; PIECE];
        loop {
            let n = read_full(&mut file, &mut piece)?;
            if n == 0 {
                break;
            }
            h.update_rayon(&piece[..n]);
        }
    } else {
        h.update_reader(file)?;
    }
    Ok((h.finalize().to_hex().to_string(), size))
}

/// Reads until `buf` is full or the file ends; the number of bytes read.
pub fn read_full(file: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Opens a regular file for reading. Anything else (a FIFO, a device such as
/// `/dev/zero`, a socket) is refused before a byte is read: reading it could block
/// forever or never end. The open does not block, so a FIFO without a writer cannot
/// hang it either.
pub fn open_regular(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(special_file(path, &meta));
    }
    Ok(file)
}

/// The error for a path that is neither a regular file nor a directory.
pub fn special_file(path: &Path, meta: &fs::Metadata) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a {}, not a regular file or directory; only files and directories can be hashed or stored",
            path.display(),
            file_type_name(meta)
        ),
    )
}

fn file_type_name(meta: &fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "FIFO (named pipe)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "device";
        }
        if t.is_socket() {
            return "socket";
        }
    }
    if meta.file_type().is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// One entry of a directory tree as its hash covers it, in walk order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TreeEntry {
    /// An empty directory.
    Dir { path: String },
    File {
        path: String,
        hash: ContentHash,
        size: u64,
        executable: bool,
    },
}

impl TreeEntry {
    pub fn path(&self) -> &str {
        match self {
            TreeEntry::Dir { path } | TreeEntry::File { path, .. } => path,
        }
    }
}

/// The entries of the tree at `root`, each file hashed: what [`tree_hash`] covers.
pub fn tree_entries(root: &Path) -> io::Result<Vec<TreeEntry>> {
    let mut entries = Vec::new();
    walk(root, root, &mut |rel, meta, abs| {
        let path = rel.to_string();
        entries.push(if meta.is_dir() {
            TreeEntry::Dir { path }
        } else {
            let (h, size) = hash_file(abs)?;
            TreeEntry::File {
                path,
                hash: ContentHash::parse(&h)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
                size,
                executable: is_executable(meta),
            }
        });
        Ok(())
    })?;
    Ok(entries)
}

/// Hash of a directory from its entries: a canonical listing of relative paths (sorted),
/// each file's executable bit and content hash, and empty directories; and its total
/// size.
pub fn tree_hash(entries: &[TreeEntry]) -> (String, u64) {
    let mut listing = String::new();
    let mut total = 0;
    for entry in entries {
        match entry {
            TreeEntry::Dir { path } => listing.push_str(&format!("D\0{path}\n")),
            TreeEntry::File {
                path,
                hash,
                size,
                executable,
            } => {
                total += size;
                listing.push_str(&format!("F\0{path}\0{}\0{hash}\n", *executable as u8));
            }
        }
    }
    (blake3::hash(listing.as_bytes()).to_hex().to_string(), total)
}

/// Whether the tree at `root` has exactly the paths, kinds, sizes and executable bits
/// of `entries`, in walk order. A tree built from `entries` whose every file was checked
/// against its hash as it was written then has [`tree_hash`] of them, without a file
/// being read again; a listing that is not in the walk's own form does not pass.
pub fn has_shape(root: &Path, entries: &[TreeEntry]) -> io::Result<bool> {
    let mut expected = entries.iter();
    let mut same = true;
    walk(root, root, &mut |rel, meta, _| {
        same &= match expected.next() {
            Some(TreeEntry::Dir { path }) => meta.is_dir() && path == rel,
            Some(TreeEntry::File {
                path,
                size,
                executable,
                ..
            }) => {
                meta.is_file()
                    && path == rel
                    && meta.len() == *size
                    && is_executable(meta) == *executable
            }
            None => false,
        };
        Ok(())
    })?;
    Ok(same && expected.next().is_none())
}

/// Hash of the directory at `root` ([`tree_hash`] of its entries). Symlinks are refused
/// so that an artifact never points outside itself.
pub fn hash_tree(root: &Path) -> io::Result<(String, u64)> {
    Ok(tree_hash(&tree_entries(root)?))
}

/// Visits every entry under `root` in sorted order; directories are visited only when empty.
pub fn walk(
    root: &Path,
    dir: &Path,
    visit: &mut dyn FnMut(&str, &fs::Metadata, &Path) -> io::Result<()>,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    if entries.is_empty() && dir != root {
        let rel = rel_path(root, dir)?;
        visit(&rel, &fs::metadata(dir)?, dir)?;
    }
    for e in entries {
        let path = e.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is a symbolic link; outputs must contain only files and directories",
                    path.display()
                ),
            ));
        }
        if meta.is_dir() {
            walk(root, &path, visit)?;
        } else if meta.is_file() {
            visit(&rel_path(root, &path)?, &meta, &path)?;
        } else {
            return Err(special_file(&path, &meta));
        }
    }
    Ok(())
}

fn rel_path(root: &Path, path: &Path) -> io::Result<String> {
    let rel = path.strip_prefix(root).map_err(io::Error::other)?;
    rel.to_str().map(|s| s.replace('\\', "/")).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not valid UTF-8", path.display()),
        )
    })
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &fs::Metadata) -> bool {
    false
}

/// Hash of any path: a file's content hash or a directory's tree hash.
pub fn hash_path(path: &Path) -> io::Result<(String, u64)> {
    if fs::metadata(path)?.is_dir() {
        hash_tree(path)
    } else {
        hash_file(path)
    }
}
