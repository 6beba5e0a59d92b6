//! Reading documents out of one file: plain text or code (the whole file is one
//! document), JSON Lines (one record, one document) or Parquet (one row, one
//! document), each optionally gzip- or zstd-compressed. Files are streamed: a line,
//! a record batch or one text file at a time.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayAccessor, ArrayRef};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use super::error::{corrupt, io_at, DataError};

/// Fields or columns tried, in order, when the options name none.
pub const DEFAULT_FIELDS: [&str; 2] = ["text", "content"];
/// Fields or columns the `language` filter looks at.
const LANGUAGE_FIELDS: [&str; 2] = ["language", "lang"];
const READ_BUFFER: usize = 1 << 20;
const PARQUET_BATCH_ROWS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    JsonLines,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// What to take from each record.
pub struct Selection<'a> {
    /// The field or column holding the text; `None` tries [`DEFAULT_FIELDS`].
    pub field: Option<&'a str>,
    /// Keep only records whose language field equals this (case-insensitive).
    pub language: Option<&'a str>,
}

/// Whether the reader should go on after a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// The extension that decides the format, looking through a compression suffix
/// (`a.jsonl.gz` → `jsonl`), lower-cased.
pub fn content_extension(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let stem = lower
        .strip_suffix(".gz")
        .or_else(|| lower.strip_suffix(".zst"))
        .unwrap_or(&lower);
    let file = stem.rsplit('/').next().unwrap_or(stem);
    match file.rsplit_once('.') {
        Some((_, ext)) => ext.to_owned(),
        None => String::new(),
    }
}

/// Decides format and compression from the name, and from the first bytes where the
/// name says nothing (magic numbers of gzip, zstd and Parquet).
pub fn detect(name: &str, head: &[u8]) -> (Format, Compression) {
    let compression = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let format = match content_extension(name).as_str() {
        // Hub datasets often name JSON Lines `.json` (C4, The Pile): a JSON array
        // there fails on its first line with an error naming the file.
        "jsonl" | "ndjson" | "json" => Format::JsonLines,
        "parquet" => Format::Parquet,
        _ if compression == Compression::None && head.starts_with(b"PAR1") => Format::Parquet,
        _ => Format::Text,
    };
    (format, compression)
}

/// Calls `emit` with each document of the file at `path`; `name` is how errors and
/// progress refer to it. `scratch` is where a compressed Parquet file is expanded,
/// since Parquet needs random access.
pub fn read_documents(
    path: &Path,
    name: &str,
    selection: &Selection<'_>,
    scratch: &Path,
    emit: &mut dyn FnMut(&[u8]) -> Result<Flow, DataError>,
) -> Result<(), DataError> {
    let mut file = File::open(path).map_err(io_at(path))?;
    let mut head = [0u8; 4];
    let n = read_full(&mut file, &mut head).map_err(io_at(path))?;
    file.rewind().map_err(io_at(path))?;
    let (format, compression) = detect(name, &head[..n]);
    if format == Format::Parquet {
        return match compression {
            Compression::None => read_parquet(file, name, selection, emit),
            _ => {
                let mut expanded = tempfile::tempfile_in(scratch).map_err(io_at(scratch))?;
                std::io::copy(&mut decompress(file, compression, name)?, &mut expanded)
                    .map_err(|e| corrupt(name)(e.to_string()))?;
                expanded.rewind().map_err(io_at(scratch))?;
                read_parquet(expanded, name, selection, emit)
            }
        };
    }
    let reader = BufReader::with_capacity(READ_BUFFER, decompress(file, compression, name)?);
    match format {
        Format::JsonLines => read_json_lines(reader, name, selection, emit),
        _ => read_text(reader, name, emit),
    }
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn decompress(
    file: File,
    compression: Compression,
    name: &str,
) -> Result<Box<dyn Read>, DataError> {
    let buffered = BufReader::with_capacity(READ_BUFFER, file);
    Ok(match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| corrupt(name)(e.to_string()))?,
        ),
    })
}

fn read_text(
    mut reader: impl Read,
    name: &str,
    emit: &mut dyn FnMut(&[u8]) -> Result<Flow, DataError>,
) -> Result<(), DataError> {
    let mut doc = Vec::new();
    reader
        .read_to_end(&mut doc)
        .map_err(|e| corrupt(name)(e.to_string()))?;
    emit(&doc).map(drop)
}

fn read_json_lines(
    mut reader: impl BufRead,
    name: &str,
    selection: &Selection<'_>,
    emit: &mut dyn FnMut(&[u8]) -> Result<Flow, DataError>,
) -> Result<(), DataError> {
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| corrupt(name)(format!("line {number}: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&line)
            .map_err(|e| corrupt(name)(format!("line {number}: {e}")))?;
        let language = LANGUAGE_FIELDS.iter().find_map(|f| record.get(*f));
        if let (Some(wanted), Some(serde_json::Value::String(value))) =
            (selection.language, language)
        {
            if !value.eq_ignore_ascii_case(wanted) {
                continue;
            }
        }
        let field = pick_field(selection.field, name, "field", || {
            record.keys().cloned().collect()
        })?;
        let text = match record.get(&field) {
            Some(serde_json::Value::String(text)) => text,
            Some(serde_json::Value::Null) => continue,
            Some(other) => {
                return Err(corrupt(name)(format!(
                    "line {number}: field `{field}` is not a string but {other}"
                )))
            }
            None => {
                let mut available: Vec<String> = record.keys().cloned().collect();
                available.sort();
                return Err(DataError::MissingField {
                    file: format!("{name} line {number}"),
                    kind: "field",
                    wanted: format!("`{field}`"),
                    available,
                });
            }
        };
        if emit(text.as_bytes())? == Flow::Stop {
            return Ok(());
        }
    }
    Ok(())
}

/// The requested field, or the first of [`DEFAULT_FIELDS`] in `available`.
fn pick_field(
    requested: Option<&str>,
    name: &str,
    kind: &'static str,
    available: impl FnOnce() -> Vec<String>,
) -> Result<String, DataError> {
    if let Some(field) = requested {
        return Ok(field.to_owned());
    }
    let mut available = available();
    available.sort();
    DEFAULT_FIELDS
        .iter()
        .find(|d| available.iter().any(|a| a == *d))
        .map(|d| (*d).to_owned())
        .ok_or_else(|| DataError::MissingField {
            file: name.to_owned(),
            kind,
            wanted: format!("`{}` or `{}`", DEFAULT_FIELDS[0], DEFAULT_FIELDS[1]),
            available,
        })
}

fn read_parquet(
    file: File,
    name: &str,
    selection: &Selection<'_>,
    emit: &mut dyn FnMut(&[u8]) -> Result<Flow, DataError>,
) -> Result<(), DataError> {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| corrupt(name)(e.to_string()))?;
    let columns: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let text_column = pick_field(selection.field, name, "column", || columns.clone())?;
    let position = |wanted: &str| columns.iter().position(|c| c == wanted);
    let text_index = position(&text_column).ok_or_else(|| DataError::MissingField {
        file: name.to_owned(),
        kind: "column",
        wanted: format!("`{text_column}`"),
        available: columns.clone(),
    })?;
    let language_index = selection
        .language
        .and_then(|_| LANGUAGE_FIELDS.iter().find_map(|f| position(f)));
    let mut roots = vec![text_index];
    roots.extend(language_index);
    roots.sort_unstable();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(PARQUET_BATCH_ROWS)
        .build()
        .map_err(|e| corrupt(name)(e.to_string()))?;
    let projected = |index: usize| roots.iter().position(|r| *r == index).expect("projected");
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(name)(e.to_string()))?;
        let texts = byte_values(batch.column(projected(text_index))).ok_or_else(|| {
            corrupt(name)(format!(
                "column `{text_column}` has type {}, not text",
                batch.column(projected(text_index)).data_type()
            ))
        })?;
        let languages = language_index.and_then(|i| byte_values(batch.column(projected(i))));
        for (row, text) in texts.iter().enumerate() {
            let Some(text) = text else { continue };
            let language = languages.as_ref().and_then(|l| l[row]);
            if let (Some(wanted), Some(value)) = (selection.language, language) {
                if !value.eq_ignore_ascii_case(wanted.as_bytes()) {
                    continue;
                }
            }
            if emit(text)? == Flow::Stop {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The values of a string or binary column as byte slices (`None` for nulls), or
/// `None` when the column holds anything else.
fn byte_values(array: &ArrayRef) -> Option<Vec<Option<&[u8]>>> {
    /// String and binary values seen as bytes, keeping their lifetime.
    trait Bytes<'a> {
        fn bytes(self) -> &'a [u8];
    }
    impl<'a> Bytes<'a> for &'a str {
        fn bytes(self) -> &'a [u8] {
            self.as_bytes()
        }
    }
    impl<'a> Bytes<'a> for &'a [u8] {
        fn bytes(self) -> &'a [u8] {
            self
        }
    }
    fn collect<'a, A>(array: A) -> Vec<Option<&'a [u8]>>
    where
        A: ArrayAccessor,
        A::Item: Bytes<'a>,
    {
        (0..array.len())
            .map(|i| (!array.is_null(i)).then(|| array.value(i).bytes()))
            .collect()
    }
    Some(match array.data_type() {
        DataType::Utf8 => collect(array.as_string::<i32>()),
        DataType::LargeUtf8 => collect(array.as_string::<i64>()),
        DataType::Utf8View => collect(array.as_string_view()),
        DataType::Binary => collect(array.as_binary::<i32>()),
        DataType::LargeBinary => collect(array.as_binary::<i64>()),
        DataType::BinaryView => collect(array.as_binary_view()),
        _ => return None,
    })
}
