//! The `fetch-dataset` pipeline: fetch the files, read their documents through the
//! filters and limits, then write the train and holdout datasets in their final
//! (optionally shuffled) order.

use std::path::Path;

use super::dataset::{Dataset, DatasetWriter, Manifest, SourceRecord};
use super::error::{io_at, DataError};
use super::format::{read_documents, Flow, Selection};
use super::options::FetchOptions;
use super::progress::{Meter, ProgressFn};
use super::shuffle::{permutation, shuffle};
use super::source::{fetch_files, Offer, SourceDirs, SourceFile};

/// The two datasets one fetch writes.
#[derive(Debug, Clone)]
pub struct FetchReport {
    pub train: Manifest,
    pub holdout: Manifest,
}

/// Fetches and ingests the documents `options` select into a dataset at
/// `train_dir` and the held-out fraction into one at `holdout_dir`. The same inputs
/// and options give byte-identical outputs.
pub fn fetch_dataset(
    options: &FetchOptions,
    dirs: &SourceDirs<'_>,
    train_dir: &Path,
    holdout_dir: &Path,
    progress: ProgressFn<'_>,
) -> Result<FetchReport, DataError> {
    options
        .validate()
        .map_err(|e| DataError::InvalidOptions(e.message))?;
    let files = fetch_files(options, dirs, progress)?;
    ingest(options, files, None, train_dir, holdout_dir, progress)
}

/// Reads `files` (already fetched) through the filters and limits into the two
/// datasets; `network` is what the network offered, for a `source: network` fetch.
pub fn ingest(
    options: &FetchOptions,
    mut files: Vec<SourceFile>,
    network: Option<&Offer>,
    train_dir: &Path,
    holdout_dir: &Path,
    progress: ProgressFn<'_>,
) -> Result<FetchReport, DataError> {
    for file in &mut files {
        file.record.blake3 = blake3_file(&file.path)?;
    }
    let sources: Vec<SourceRecord> = files.iter().map(|f| f.record.clone()).collect();
    if options.shuffle {
        // Shuffling files too makes `max_docs` / `max_bytes` sample across all of them.
        shuffle(&mut files, options.seed);
    }

    std::fs::create_dir_all(train_dir).map_err(io_at(train_dir))?;
    let staging = tempfile::Builder::new()
        .prefix(".ingest-")
        .tempdir_in(train_dir)
        .map_err(io_at(train_dir))?;
    let mut writer = DatasetWriter::create(&staging.path().join("all"))?;
    let selection = Selection {
        field: options.field.as_deref(),
        language: options.language.as_deref(),
    };
    let mut meter = Meter::new(progress, "reading documents", None);
    let mut take = |doc: &[u8]| -> Result<Flow, DataError> {
        let len = doc.len() as u64;
        if options.min_len.is_some_and(|min| len < min)
            || options.max_len.is_some_and(|max| len > max)
        {
            return Ok(Flow::Continue);
        }
        let full = options
            .max_docs
            .is_some_and(|max| writer.documents() >= max)
            || options
                .max_bytes
                .is_some_and(|max| writer.bytes() + len > max);
        if full {
            return Ok(Flow::Stop);
        }
        writer.push(doc)?;
        meter.add(len);
        Ok(Flow::Continue)
    };
    for file in &files {
        let flow = if file.raw {
            take(&std::fs::read(&file.path).map_err(io_at(&file.path))?)?
        } else {
            let mut flow = Flow::Continue;
            read_documents(
                &file.path,
                &file.name,
                &selection,
                staging.path(),
                &mut |doc| {
                    flow = take(doc)?;
                    Ok(flow)
                },
            )?;
            flow
        };
        if flow == Flow::Stop {
            break;
        }
    }
    writer.finish("all", &[], serde_json::Value::Null, None)?;
    let all = Dataset::open(&staging.path().join("all"))?;
    meter.finish(&format!(", {} documents", all.len()));

    let options_json = serde_json::to_value(options).expect("options serialise");
    let (train, holdout) = split(&all, options, train_dir, holdout_dir)?;
    let train = train.finish("train", &sources, options_json.clone(), network)?;
    let holdout = holdout.finish("holdout", &sources, options_json, network)?;
    progress(&format!(
        "wrote {} train documents ({} bytes) and {} holdout documents ({} bytes)",
        train.documents, train.bytes, holdout.documents, holdout.bytes
    ));
    Ok(FetchReport { train, holdout })
}

/// Copies `all` into the two splits: the holdout is the first `round(n·holdout)`
/// documents of a seeded permutation; each split keeps the input order, or the
/// permutation's order when shuffling.
fn split(
    all: &Dataset,
    options: &FetchOptions,
    train_dir: &Path,
    holdout_dir: &Path,
) -> Result<(DatasetWriter, DatasetWriter), DataError> {
    let n = all.len();
    let held = (n as f64 * options.holdout).round() as usize;
    let perm = permutation(n, options.seed);
    let mut in_holdout = vec![false; n];
    for &i in &perm[..held] {
        in_holdout[i] = true;
    }
    let order: Box<dyn Iterator<Item = usize>> = if options.shuffle {
        Box::new(perm.iter().copied())
    } else {
        Box::new(0..n)
    };
    let mut train = DatasetWriter::create(train_dir)?;
    let mut holdout = DatasetWriter::create(holdout_dir)?;
    for i in order {
        let target = if in_holdout[i] {
            &mut holdout
        } else {
            &mut train
        };
        target.push(all.get(i))?;
    }
    Ok((train, holdout))
}

fn blake3_file(path: &Path) -> Result<String, DataError> {
    let file = std::fs::File::open(path).map_err(io_at(path))?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).map_err(io_at(path))?;
    Ok(hasher.finalize().to_hex().to_string())
}
