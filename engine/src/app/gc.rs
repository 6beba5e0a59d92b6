//! `gc`: remove stored objects that no run record references.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::Result;

use super::ExitStatus;
use crate::record;
use crate::store::{self, Store};

/// What a sweep removed (or, dry, would remove).
#[derive(Debug, Default)]
pub struct Swept {
    /// The objects' paths in the store.
    pub objects: Vec<PathBuf>,
    pub bytes: u64,
    pub runs_kept: usize,
}

pub(super) fn run(store: &Store, dry_run: bool) -> Result<ExitStatus> {
    let swept = gc(store, dry_run)?;
    if dry_run {
        for path in &swept.objects {
            println!("would remove {}", path.display());
        }
    }
    let verb = if dry_run { "would free" } else { "freed" };
    println!(
        "{verb} {} object(s), {:.1} MB; {} run record(s) kept",
        swept.objects.len(),
        swept.bytes as f64 / 1e6,
        swept.runs_kept
    );
    Ok(ExitStatus::Ok)
}

/// Removes (unless `dry_run`) every object and cache entry no run record references,
/// and what runs left under `tmp/`. Waits for running runs (the store lock).
pub fn gc(store: &Store, dry_run: bool) -> Result<Swept> {
    let _lock = store.lock_store(true)?;
    let runs = record::list(store)?;
    let mut live_hashes = HashSet::new();
    let mut live_keys = HashSet::new();
    for r in &runs {
        for s in r.stages.values() {
            live_hashes.extend(s.outputs.values().map(|a| a.hash.clone()));
            live_keys.extend(s.key.clone());
        }
    }
    let mut swept = Swept {
        runs_kept: runs.len(),
        ..Swept::default()
    };
    for (artifact, path) in store.all_artifacts()? {
        match &artifact {
            Ok(a) if live_hashes.contains(&a.hash) => continue,
            Ok(a) => swept.bytes += a.size,
            // Not a name the store gives: nothing can reference it.
            Err(_) => {}
        }
        if !dry_run {
            match artifact {
                Ok(a) => store.remove_object(&a)?,
                Err(_) => store::discard(&path)?,
            }
        }
        swept.objects.push(path);
    }
    if !dry_run {
        for key in store.all_cache_keys()? {
            if !live_keys.contains(&key) {
                store.cache_remove(&key);
            }
        }
        // No run or verify holds the store lock now, so nothing under tmp/ is in use,
        // and no writer is half-way through a file.
        for e in std::fs::read_dir(store.root().join("tmp"))?.flatten() {
            store::discard(&e.path())?;
        }
        store.remove_stale_temp_files()?;
    }
    Ok(swept)
}
