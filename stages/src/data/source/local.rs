//! `source: local`: files, directories and glob patterns under the base directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{FileFilter, SourceFile};
use crate::data::dataset::SourceRecord;
use crate::data::error::{io_at, DataError};
use crate::data::options::FetchOptions;

pub fn files(options: &FetchOptions, base_dir: &Path) -> Result<Vec<SourceFile>, DataError> {
    let mut found = BTreeMap::new();
    for entry in &options.paths {
        let full = base_dir.join(entry);
        if entry.contains(['*', '?', '[']) {
            let pattern = full.to_string_lossy();
            let matches = glob::glob(&pattern)
                .map_err(|e| DataError::InvalidOptions(format!("bad glob {entry:?}: {e}")))?;
            for path in matches {
                let path = path.map_err(|e| DataError::Io {
                    path: e.path().display().to_string(),
                    source: e.into(),
                })?;
                collect(&path, base_dir, &mut found)?;
            }
        } else {
            collect(&full, base_dir, &mut found)?;
        }
    }
    let filter = FileFilter::new(options, &[])?;
    let selected = filter.select(
        &format!(
            "local paths {:?} under {}",
            options.paths,
            std::path::absolute(base_dir)
                .unwrap_or_else(|_| base_dir.into())
                .display()
        ),
        options,
        found.into_iter().collect(),
    )?;
    selected
        .into_iter()
        .map(|(name, path)| {
            let size = std::fs::metadata(&path).map_err(io_at(&path))?.len();
            Ok(SourceFile {
                raw: false,
                record: SourceRecord {
                    path: name.clone(),
                    repo: None,
                    revision: None,
                    source_hash: None,
                    size,
                    blake3: String::new(),
                },
                name,
                path,
            })
        })
        .collect()
}

/// Adds `path`, or every file below it when it is a directory, keyed by its name
/// relative to `base_dir`.
fn collect(
    path: &Path,
    base_dir: &Path,
    found: &mut BTreeMap<String, PathBuf>,
) -> Result<(), DataError> {
    let meta = std::fs::metadata(path).map_err(io_at(path))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io_at(path))? {
            collect(&entry.map_err(io_at(path))?.path(), base_dir, found)?;
        }
    } else {
        let relative = path.strip_prefix(base_dir).unwrap_or(path);
        let name = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        found.insert(name, path.to_owned());
    }
    Ok(())
}
