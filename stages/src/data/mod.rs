//! Data ingest behind the `fetch-dataset` stage: fetch documents from local files,
//! a Hugging Face dataset repo or object storage, filter them, and write them as a
//! memory-mappable dataset (`docs.bin` + `index.bin` + `manifest.json`) that training
//! and the embed stage stream from. Documents stay separate: the SOMA data contract
//! chunks each one on its own.

mod dataset;
pub(crate) mod download;
mod error;
mod format;
mod ingest;
mod options;
mod progress;
mod shuffle;
mod source;

pub use dataset::{
    Dataset, DatasetWriter, Manifest, SourceRecord, DOCS_FILE, FORMAT, INDEX_FILE, MANIFEST_FILE,
};
pub use download::{check_sha256, Sha256Hex};
pub use error::{io_at, DataError};
pub use format::{detect, read_documents, Compression, Flow, Format, Selection, DEFAULT_FIELDS};
pub use ingest::{fetch_dataset, ingest, FetchReport};
pub use options::{FetchOptions, SourceKind, TargetFilter, TargetState, WonBy};
pub use progress::ProgressFn;
pub use source::{
    check_url, download_object, local_files, network_files, network_offer, offer_listed,
    resolve_revision, still_offered, Offer, Offered, SourceDirs,
};
