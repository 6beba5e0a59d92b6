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
        let root = root_of(entry, &full, base_dir);
        if entry.contains(['*', '?', '[']) {
            let pattern = full.to_string_lossy();
            let matches = glob::glob(&pattern)
                .map_err(|e| DataError::InvalidOptions(format!("bad glob {entry:?}: {e}")))?;
            for path in matches {
                let path = path.map_err(|e| DataError::Io {
                    path: e.path().display().to_string(),
                    source: e.into(),
                })?;
                collect(&path, &root, &mut found)?;
            }
        } else {
            collect(&full, &root, &mut found)?;
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

/// What an entry's file names are relative to: the base directory for a relative
/// entry; for an absolute one, the folder it names before any wildcard (its parent
/// for a file), so that the folders above it (a hidden `~/.cache`, say) are no part
/// of the names the filters see.
fn root_of(entry: &str, full: &Path, base_dir: &Path) -> PathBuf {
    if !Path::new(entry).is_absolute() {
        return base_dir.to_owned();
    }
    let fixed = soma_flow_engine::params::before_wildcards(Path::new(entry));
    match fixed == Path::new(entry) && !full.is_dir() {
        true => fixed.parent().map_or(fixed.clone(), Path::to_owned),
        false => fixed,
    }
}

/// Adds `path`, or every file below it when it is a directory, keyed by its name
/// relative to `root` (`/`-separated); a name two entries share keeps the first
/// file and gives the other its whole path.
fn collect(
    path: &Path,
    root: &Path,
    found: &mut BTreeMap<String, PathBuf>,
) -> Result<(), DataError> {
    let meta = std::fs::metadata(path).map_err(io_at(path))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io_at(path))? {
            collect(&entry.map_err(io_at(path))?.path(), root, found)?;
        }
    } else {
        let name = |p: &Path| {
            p.components()
                .filter(|c| {
                    !matches!(
                        c,
                        std::path::Component::RootDir | std::path::Component::Prefix(_)
                    )
                })
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        };
        let mut key = name(path.strip_prefix(root).unwrap_or(path));
        if found.get(&key).is_some_and(|other| other != path) {
            key = name(path);
        }
        found.insert(key, path.to_owned());
    }
    Ok(())
}
