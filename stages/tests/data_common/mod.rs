//! Helpers shared by the data tests: input files and a local Hugging Face Hub.
#![allow(dead_code)]

pub mod hub;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use soma_flow_engine::exec::{self, ExecOptions, StopOn};
use soma_flow_engine::pipeline::{load, read, LoadOptions};
use soma_flow_engine::record::RunRecord;
use soma_flow_engine::store::Store;
use soma_flow_engine::Registry;
use soma_flow_stages::data::{
    fetch_dataset, DataError, Dataset, FetchOptions, FetchReport, SourceDirs,
};

/// A Parquet file with the given string columns, in row groups of `group_rows`.
pub fn parquet_bytes(columns: &[(&str, Vec<Option<&str>>)], group_rows: usize) -> Vec<u8> {
    let arrays: Vec<(&str, ArrayRef)> = columns
        .iter()
        .map(|(name, values)| {
            (
                *name,
                Arc::new(StringArray::from(values.clone())) as ArrayRef,
            )
        })
        .collect();
    let batch = RecordBatch::try_from_iter(arrays).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(group_rows))
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}

/// JSON Lines with one record per `(field, value)` list.
pub fn jsonl_bytes(records: &[Vec<(&str, &str)>]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        let map: serde_json::Map<String, serde_json::Value> = record
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
            .collect();
        serde_json::to_writer(&mut out, &map).unwrap();
        out.push(b'\n');
    }
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A scratch area: the base directory of local sources, the caches and the outputs.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn base(&self) -> std::path::PathBuf {
        self.dir.path().join("base")
    }

    pub fn write(&self, name: &str, bytes: &[u8]) {
        write(&self.base(), name, bytes);
    }

    /// Runs a fetch into `out/<name>/{train,holdout}`, collecting progress lines.
    pub fn fetch(&self, options: &FetchOptions, name: &str) -> Result<Fetched, DataError> {
        std::fs::create_dir_all(self.base()).unwrap();
        let lines = Mutex::new(Vec::new());
        let progress = |line: &str| lines.lock().unwrap().push(line.to_owned());
        let out = self.dir.path().join("out").join(name);
        let dirs = SourceDirs {
            base_dir: &self.base(),
            hf_cache: &self.dir.path().join("state/hf"),
            download_dir: &self.dir.path().join("state/downloads"),
        };
        let report = fetch_dataset(
            options,
            &dirs,
            &out.join("train"),
            &out.join("holdout"),
            &progress,
        )?;
        Ok(Fetched {
            report,
            train: Dataset::open(&out.join("train")).unwrap(),
            holdout: Dataset::open(&out.join("holdout")).unwrap(),
            dir: out,
            progress: lines.into_inner().unwrap(),
        })
    }
}

pub struct Fetched {
    pub report: FetchReport,
    pub train: Dataset,
    pub holdout: Dataset,
    pub dir: std::path::PathBuf,
    pub progress: Vec<String>,
}

impl Fetched {
    pub fn train_docs(&self) -> Vec<String> {
        docs(&self.train)
    }

    pub fn holdout_docs(&self) -> Vec<String> {
        docs(&self.holdout)
    }

    /// Every output file's bytes, for byte-identity checks.
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        for split in ["train", "holdout"] {
            for name in ["docs.bin", "index.bin", "manifest.json"] {
                let bytes = std::fs::read(self.dir.join(split).join(name)).unwrap();
                files.push((format!("{split}/{name}"), bytes));
            }
        }
        files
    }
}

pub fn docs(dataset: &Dataset) -> Vec<String> {
    dataset
        .iter()
        .map(|d| String::from_utf8(d.to_vec()).unwrap())
        .collect()
}

/// Options from JSON, the way the stage's `with` block arrives.
pub fn options(json: serde_json::Value) -> FetchOptions {
    serde_json::from_value(json).unwrap()
}

/// The error a fetch must fail with, as text.
pub fn error_text(result: Result<Fetched, DataError>) -> String {
    match result {
        Ok(_) => panic!("the fetch succeeded but should have failed"),
        Err(e) => e.to_string(),
    }
}

/// Runs the pipeline `yaml` through the engine as `soma-flow run` does, from
/// `dir/pipeline.yaml` with the store in `dir/store`, and returns the run record.
pub fn run_pipeline(dir: &Path, yaml: &str) -> RunRecord {
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut registry = Registry::new();
    soma_flow_stages::kinds::register(&mut registry);
    let options = LoadOptions {
        registry: &registry,
        overrides: &[],
        backend: None,
        backends: soma_flow_stages::backend::SETTING,
    };
    let plan = read(&path)
        .and_then(|source| load(source, &options))
        .unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(&dir.join("store")).unwrap();
    let exec_options = ExecOptions {
        jobs: 1,
        no_cache: false,
        overrides: Vec::new(),
        stop_on: StopOn::Notified(Default::default()),
        remote: None,
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(exec::run(Arc::new(plan), store, exec_options))
        .unwrap()
}
