//! Training documents: each one is chunked on its own by the data contract.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A collection of documents addressed by index.
pub trait Documents: Send + Sync {
    fn len(&self) -> usize;
    fn get(&self, i: usize) -> &[u8];
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Documents held in memory.
pub struct InMemory(pub Vec<Vec<u8>>);

impl Documents for InMemory {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> &[u8] {
        &self.0[i]
    }
}

impl Documents for crate::data::Dataset {
    fn len(&self) -> usize {
        crate::data::Dataset::len(self)
    }
    fn get(&self, i: usize) -> &[u8] {
        crate::data::Dataset::get(self, i)
    }
}

/// A fetch-dataset output (memory-mapped, never read whole); otherwise a plain file is
/// one document and a directory holds one document per file, in the order of their
/// relative paths (recursive).
pub fn open_documents(path: &Path) -> Result<Box<dyn Documents>> {
    if path.join(crate::data::MANIFEST_FILE).is_file() {
        return Ok(Box::new(crate::data::Dataset::open(path)?));
    }
    if path.is_file() {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(Box::new(InMemory(vec![bytes])));
    }
    if !path.is_dir() {
        bail!("{}: no such file or directory", path.display());
    }
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    files.sort();
    let docs = files
        .iter()
        .map(|f| std::fs::read(f).with_context(|| format!("reading {}", f.display())))
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(InMemory(docs)))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_one_document_and_a_directory_is_sorted_recursively() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b"), "bee").unwrap();
        std::fs::write(dir.path().join("sub/a"), "sub-a").unwrap();
        std::fs::write(dir.path().join("a"), "aye").unwrap();
        let docs = open_documents(dir.path()).unwrap();
        let all: Vec<&[u8]> = (0..docs.len()).map(|i| docs.get(i)).collect();
        assert_eq!(all, vec![&b"aye"[..], b"bee", b"sub-a"]);
        let one = open_documents(&dir.path().join("b")).unwrap();
        assert_eq!((one.len(), one.get(0)), (1, &b"bee"[..]));
        assert!(open_documents(&dir.path().join("nope")).is_err());
    }
}
