//! The on-disk dataset: `docs.bin` holds the documents back to back, `index.bin` the
//! n+1 little-endian u64 offsets of their boundaries, `manifest.json` the counts and
//! provenance. Readers map both files, so training streams any corpus size.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::error::{io_at, DataError};
use super::source::Offer;

pub const DOCS_FILE: &str = "docs.bin";
pub const INDEX_FILE: &str = "index.bin";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const FORMAT: &str = "soma-flow-dataset/1";

/// `manifest.json`. Holds nothing that varies between runs of the same inputs and
/// options (no times, no absolute paths), so outputs are byte-identical.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// `train` or `holdout`.
    pub split: String,
    pub documents: u64,
    pub bytes: u64,
    pub sources: Vec<SourceRecord>,
    pub options: serde_json::Value,
    /// For `source: network`: every target the network offered for the options,
    /// including any whose data could not be had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Offer>,
}

/// One fetched file and how to recognise its exact content again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Repo-relative path, object URL, or path relative to the base directory.
    pub path: String,
    /// The Hub repo, for `hf` sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Resolved commit (Hub) or ETag / version (object storage), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The source's own checksum: the Hub's LFS sha256 or git blob id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_hash: Option<String>,
    pub size: u64,
    pub blake3: String,
}

/// Appends documents to a dataset directory; [`DatasetWriter::finish`] writes the
/// manifest last, so a directory with a manifest is complete.
pub struct DatasetWriter {
    dir: PathBuf,
    docs: BufWriter<File>,
    index: BufWriter<File>,
    documents: u64,
    bytes: u64,
}

const WRITE_BUFFER: usize = 1 << 20;

impl DatasetWriter {
    pub fn create(dir: &Path) -> Result<Self, DataError> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let open = |name: &str| {
            let path = dir.join(name);
            File::create(&path)
                .map(|f| BufWriter::with_capacity(WRITE_BUFFER, f))
                .map_err(io_at(&path))
        };
        let mut writer = DatasetWriter {
            dir: dir.to_owned(),
            docs: open(DOCS_FILE)?,
            index: open(INDEX_FILE)?,
            documents: 0,
            bytes: 0,
        };
        writer.write_offset(0)?;
        Ok(writer)
    }

    fn write_offset(&mut self, offset: u64) -> Result<(), DataError> {
        let path = self.dir.join(INDEX_FILE);
        self.index
            .write_all(&offset.to_le_bytes())
            .map_err(io_at(&path))
    }

    pub fn push(&mut self, doc: &[u8]) -> Result<(), DataError> {
        let path = self.dir.join(DOCS_FILE);
        self.docs.write_all(doc).map_err(io_at(&path))?;
        self.documents += 1;
        self.bytes += doc.len() as u64;
        self.write_offset(self.bytes)
    }

    pub fn documents(&self) -> u64 {
        self.documents
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn finish(
        mut self,
        split: &str,
        sources: &[SourceRecord],
        options: serde_json::Value,
        network: Option<&Offer>,
    ) -> Result<Manifest, DataError> {
        let docs_path = self.dir.join(DOCS_FILE);
        self.docs.flush().map_err(io_at(&docs_path))?;
        let index_path = self.dir.join(INDEX_FILE);
        self.index.flush().map_err(io_at(&index_path))?;
        let manifest = Manifest {
            format: FORMAT.into(),
            split: split.into(),
            documents: self.documents,
            bytes: self.bytes,
            sources: sources.to_vec(),
            options,
            network: network.cloned(),
        };
        let path = self.dir.join(MANIFEST_FILE);
        let mut text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        text.push('\n');
        std::fs::write(&path, text).map_err(io_at(&path))?;
        Ok(manifest)
    }
}

/// A dataset opened for reading: documents are slices of the mapped `docs.bin`.
pub struct Dataset {
    manifest: Manifest,
    docs: Option<Mmap>,
    index: Option<Mmap>,
}

/// Maps a file read-only; an empty file (which cannot be mapped) reads as no bytes.
fn map(path: &Path) -> Result<Option<Mmap>, DataError> {
    let file = File::open(path).map_err(io_at(path))?;
    let len = file.metadata().map_err(io_at(path))?.len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: dataset files are written once and never modified afterwards.
    unsafe { Mmap::map(&file) }.map(Some).map_err(io_at(path))
}

impl Dataset {
    pub fn open(dir: &Path) -> Result<Self, DataError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let text = std::fs::read(&manifest_path).map_err(io_at(&manifest_path))?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| DataError::Corrupt {
            file: manifest_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let dataset = Dataset {
            docs: map(&dir.join(DOCS_FILE))?,
            index: map(&dir.join(INDEX_FILE))?,
            manifest,
        };
        let bad = |reason: String| DataError::Corrupt {
            file: dir.display().to_string(),
            reason,
        };
        let index_len = dataset.index.as_deref().map_or(0, <[u8]>::len) as u64;
        if index_len != (dataset.manifest.documents + 1) * 8 {
            return Err(bad(format!(
                "{INDEX_FILE} has {index_len} bytes, expected {} for {} documents",
                (dataset.manifest.documents + 1) * 8,
                dataset.manifest.documents
            )));
        }
        let docs_len = dataset.docs.as_deref().map_or(0, <[u8]>::len) as u64;
        if docs_len != dataset.manifest.bytes || dataset.offset(dataset.len()) != docs_len {
            return Err(bad(format!(
                "{DOCS_FILE} has {docs_len} bytes, the manifest says {}",
                dataset.manifest.bytes
            )));
        }
        Ok(dataset)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn len(&self) -> usize {
        self.manifest.documents as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total bytes of all documents.
    pub fn total_bytes(&self) -> u64 {
        self.manifest.bytes
    }

    fn offset(&self, i: usize) -> u64 {
        let index = self.index.as_deref().unwrap_or_default();
        u64::from_le_bytes(index[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
    }

    /// Document `i`; panics when `i >= len()`, like slice indexing.
    pub fn get(&self, i: usize) -> &[u8] {
        assert!(i < self.len(), "document {i} of {}", self.len());
        let docs = self.docs.as_deref().unwrap_or_default();
        &docs[self.offset(i) as usize..self.offset(i + 1) as usize]
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}
