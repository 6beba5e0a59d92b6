//! Cache entries, `cache/ab/<key>.json`: what a stage produced for a key, sealed by
//! the store so that an entry edited or copied from elsewhere is not trusted.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::files::write_atomic;
use super::{Artifact, Store};

const SEAL_ENTRY: &str = "cache-entry";

/// What a finished stage produced for a given cache key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    pub key: String,
    pub kind: String,
    pub outputs: BTreeMap<String, Artifact>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Brought from a remote store whose entries nobody verified (`pull` without
    /// trusted keys): stages that act for the user refuse what derives from it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
    /// The store's seal over everything above ([`seal`]); written by
    /// [`Store::cache_put`], checked by [`Store::cache_get`].
    #[serde(default)]
    pub seal: String,
}

impl CacheEntry {
    fn sealed_bytes(&self) -> Vec<u8> {
        let unsealed = CacheEntry {
            seal: String::new(),
            ..self.clone()
        };
        serde_json::to_vec(&unsealed).expect("cache entries serialise")
    }
}

impl Store {
    fn cache_path(&self, key: &str) -> PathBuf {
        self.root
            .join("cache")
            .join(&key[..2])
            .join(format!("{key}.json"))
    }

    /// The cache entry for `key`: `Ok(None)` when there is none, `Err` (why) when there
    /// is one this store cannot trust: unreadable, malformed, filed under another key,
    /// or not sealed by this store.
    pub fn cache_get(&self, key: &str) -> Result<Option<CacheEntry>, String> {
        let bytes = match fs::read(self.cache_path(key)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read its cache entry: {e}")),
        };
        let entry: CacheEntry = serde_json::from_slice(&bytes)
            .map_err(|e| format!("its cache entry is malformed ({e})"))?;
        if entry.key != key {
            return Err("its cache entry belongs to another key".into());
        }
        if !self
            .seal
            .verify(SEAL_ENTRY, &entry.sealed_bytes(), &entry.seal)
        {
            return Err(
                "its cache entry is not sealed by this store (edited, or copied from elsewhere)"
                    .into(),
            );
        }
        Ok(Some(entry))
    }

    pub fn cache_put(&self, entry: &CacheEntry) -> Result<()> {
        let mut sealed = entry.clone();
        sealed.seal = self.seal.seal(SEAL_ENTRY, &entry.sealed_bytes());
        write_atomic(
            &self.cache_path(&entry.key),
            &serde_json::to_vec_pretty(&sealed)?,
        )
    }

    pub fn cache_remove(&self, key: &str) {
        let _ = fs::remove_file(self.cache_path(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_bound_to_their_key_and_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a")).unwrap();
        let other = Store::open(&dir.path().join("b")).unwrap();
        let key = "1".repeat(64);
        let entry = CacheEntry {
            key: key.clone(),
            kind: "command".into(),
            outputs: BTreeMap::new(),
            duration_ms: 1,
            notes: vec![],
            seal: String::new(),
            unverified: false,
        };
        store.cache_put(&entry).unwrap();
        assert!(store.cache_get(&key).unwrap().is_some());
        assert!(store.cache_get(&"2".repeat(64)).unwrap().is_none());
        // The same file in another store, or under another key, is not trusted.
        let text = fs::read(store.cache_path(&key)).unwrap();
        fs::create_dir_all(other.cache_path(&key).parent().unwrap()).unwrap();
        fs::write(other.cache_path(&key), &text).unwrap();
        assert!(other.cache_get(&key).is_err());
        let moved = "2".repeat(64);
        fs::create_dir_all(store.cache_path(&moved).parent().unwrap()).unwrap();
        fs::write(store.cache_path(&moved), &text).unwrap();
        assert!(store.cache_get(&moved).is_err());
    }
}
