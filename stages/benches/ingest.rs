//! Ingest throughput: ~200 MB of local text files and a ~200 MB local Parquet file
//! through `fetch_dataset` (read, filter, split, write), then a full read back.
//! Run: `cargo bench -p soma-flow-stages --bench ingest`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use soma_flow_stages::data::{fetch_dataset, Dataset, FetchOptions, SourceDirs, SourceKind};

const TOTAL: usize = 200_000_000;
const TEXT_FILE: usize = 100_000;
const PARQUET_ROW: usize = 2_000;
const ROWS_PER_BATCH: usize = 10_000;

/// Code-like text with random identifiers and constants, so that it compresses
/// about as well as real code rather than flattering the figures.
fn document(seed: usize, len: usize) -> String {
    let mut state = seed as u64;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (state ^ (state >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^ (z >> 29)
    };
    let mut text = String::with_capacity(len + 80);
    while text.len() < len {
        let (name, constant) = (next() as u32, next());
        text.push_str(&format!(
            "fn item_{name:x}(x: u64) -> u64 {{ x ^ {constant:#x} }}\n"
        ));
    }
    text.truncate(len);
    text
}

fn write_text_files(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..TOTAL / TEXT_FILE {
        std::fs::write(
            dir.join(format!("{f:05}.rs")),
            document(f * 1000, TEXT_FILE),
        )
        .unwrap();
    }
}

fn write_parquet(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "content",
        arrow_schema::DataType::Utf8,
        false,
    )]));
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    let rows = TOTAL / PARQUET_ROW;
    for start in (0..rows).step_by(ROWS_PER_BATCH) {
        let docs: Vec<String> = (start..start + ROWS_PER_BATCH)
            .map(|r| document(r, PARQUET_ROW))
            .collect();
        let column: ArrayRef = Arc::new(StringArray::from(docs));
        writer
            .write(&RecordBatch::try_from_iter([("content", column)]).unwrap())
            .unwrap();
    }
    writer.close().unwrap();
}

fn ingest(label: &str, base: &Path, paths: &[&str], out: &Path) {
    let mut options = FetchOptions::new(SourceKind::Local);
    options.paths = paths.iter().map(|p| p.to_string()).collect();
    let dirs = SourceDirs {
        base_dir: base,
        hf_cache: &out.join("hf"),
        download_dir: &out.join("downloads"),
    };
    let quiet = |_: &str| {};
    let start = Instant::now();
    let report = fetch_dataset(
        &options,
        &dirs,
        &out.join("train"),
        &out.join("holdout"),
        &quiet,
    )
    .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let bytes = report.train.bytes + report.holdout.bytes;
    let documents = report.train.documents + report.holdout.documents;
    println!(
        "{label}: ingested {documents} documents, {:.1} MB in {seconds:.2} s = {:.1} MB/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / seconds
    );
    let start = Instant::now();
    let train = Dataset::open(&out.join("train")).unwrap();
    let sum: u64 = train
        .iter()
        .map(|d| d.iter().map(|&b| b as u64).sum::<u64>())
        .sum();
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{label}: read back {} documents ({:.1} MB, byte sum {sum}) at {:.1} MB/s",
        train.len(),
        train.total_bytes() as f64 / 1e6,
        train.total_bytes() as f64 / 1e6 / seconds
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("inputs");
    let start = Instant::now();
    write_text_files(&base.join("text"));
    write_parquet(&base.join("data.parquet"));
    let parquet_size = std::fs::metadata(base.join("data.parquet")).unwrap().len();
    println!(
        "generated inputs in {:.1} s (Parquet file: {:.1} MB on disk, snappy)",
        start.elapsed().as_secs_f64(),
        parquet_size as f64 / 1e6
    );
    ingest("text files", &base, &["text"], &dir.path().join("out-text"));
    ingest(
        "parquet",
        &base,
        &["data.parquet"],
        &dir.path().join("out-parquet"),
    );
}
