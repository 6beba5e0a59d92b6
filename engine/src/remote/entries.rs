//! Cache entries in the remote store: found as this machine's trust says
//! ([`super::trust`]), published signed where it signs, condemned when broken.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use super::stores::{concise, is_not_found};
use super::trust::Refused;
use super::Address;
use super::{artifact_rel, Remote};
use crate::store::ArtifactKind;
use crate::store::CacheEntry;

/// An entry the remote has for a key, taken by this machine.
#[derive(Debug, Clone)]
pub struct RemoteEntry {
    pub entry: CacheEntry,
    /// The address whose signature it bears (verified), if any.
    pub signer: Option<Address>,
    /// Taken without verification because nobody configured any trust: what derives
    /// from it is marked so, and `commit` refuses it.
    pub unverified: bool,
    /// Its objects' versions (ETags) when it was published, by path under the prefix.
    versions: BTreeMap<String, String>,
    /// Where it is, to remove it when it leads to an object that is gone or wrong.
    path: ObjectPath,
}

/// What the remote has for a key.
pub enum Lookup {
    Found(RemoteEntry),
    Missing,
    /// Entries this machine does not take (unsigned, another's key): why.
    Ignored(String),
}

impl Remote {
    /// The first entry published for `key`, by anyone.
    fn shared_entry_path(&self, key: &str) -> ObjectPath {
        self.path(&format!("cache/{key}.json"))
    }

    /// The entry for `key` that `signer` signed.
    fn signed_entry_path(&self, key: &str, signer: &Address) -> ObjectPath {
        self.path(&format!("cache/{key}/{signer}.json"))
    }

    /// Deletes the object at `path` (gone already is fine).
    pub(super) fn delete(&self, path: &ObjectPath) -> Result<()> {
        match self.block_on(self.store.delete(path)) {
            Err(e) if !is_not_found(&e) => Err(concise(e)),
            _ => Ok(()),
        }
    }

    /// The remote's entry for `key` that this machine takes: the shared one if its
    /// signature is trusted (or nothing is configured), else one that a trusted
    /// address signed.
    pub fn entry(&self, key: &str) -> Result<Lookup> {
        let mut ignored = None;
        let signed = self.trust.slots().map(|a| self.signed_entry_path(key, a));
        for path in std::iter::once(self.shared_entry_path(key)).chain(signed) {
            match self.read_entry(&path, key)? {
                Some(Ok(found)) => return Ok(Lookup::Found(found)),
                Some(Err(why)) => {
                    ignored.get_or_insert(why);
                }
                None => {}
            }
        }
        Ok(ignored.map_or(Lookup::Missing, Lookup::Ignored))
    }

    /// The entry at `path`, `Err` saying why it is not taken. One that nobody could take
    /// (malformed, another key's, a signature that fails) is condemned.
    fn read_entry(
        &self,
        path: &ObjectPath,
        key: &str,
    ) -> Result<Option<Result<RemoteEntry, String>>> {
        let Some(bytes) = self.get_bytes(path)? else {
            return Ok(None);
        };
        let read = self
            .trust
            .read(&bytes)
            .and_then(|read| match read.entry.key == key {
                true => Ok(read),
                false => Err(Refused::Broken(format!(
                    "it names the key {}",
                    read.entry.key
                ))),
            });
        Ok(Some(match read {
            Ok(read) => Ok(RemoteEntry {
                entry: read.entry,
                signer: read.signer,
                unverified: self.trust.unset(),
                versions: read.versions,
                path: path.clone(),
            }),
            Err(Refused::Untrusted(why)) => {
                Err(format!("the remote's entry {path} is ignored: {why}"))
            }
            Err(Refused::Broken(why)) => {
                self.delete(path)?;
                Err(format!(
                    "the remote's entry {path} was condemned (deleted from the remote): {why}"
                ))
            }
        }))
    }

    /// Publishes `entry`: into the shared place unless an entry is there (the first
    /// wins), and, when this machine signs and `sign` holds, into its own place, where
    /// an entry it did not sign is replaced. `Ok(false)` when neither changed.
    pub fn publish_entry(&self, entry: &CacheEntry, sign: bool) -> Result<bool> {
        let mut versions = BTreeMap::new();
        for a in entry.outputs.values() {
            if let Some(tag) = self.head(a)?.and_then(|meta| meta.e_tag) {
                versions.insert(artifact_rel(a), tag);
            }
        }
        let bytes = self.trust.publish(entry, &versions, sign);
        let shared = self.put_new(&self.shared_entry_path(&entry.key), bytes.clone())?;
        let Some(me) = self.trust.signer().filter(|_| sign) else {
            return Ok(shared);
        };
        let path = self.signed_entry_path(&entry.key, &me);
        if self.put_new(&path, bytes.clone())? {
            return Ok(true);
        }
        let mine = self.get_bytes(&path)?.is_some_and(|held| {
            matches!(self.trust.read(&held), Ok(held) if held.signer == Some(me) && held.entry.key == entry.key)
        });
        if mine {
            return Ok(shared);
        }
        self.block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map_err(concise)?;
        Ok(true)
    }

    /// Removes an entry that leads to an object that is gone or wrong.
    pub fn remove_entry(&self, found: &RemoteEntry) -> Result<()> {
        self.delete(&found.path)
    }

    /// Checks that the remote holds each object `found` names as it was published,
    /// without downloading any: `Err` says which does not. An entry whose object is gone
    /// is removed; an object replaced since (another size, another version than the
    /// entry records) is condemned with the entry, so that the stage is built again
    /// and published afresh.
    pub fn check_objects(&self, found: &RemoteEntry) -> Result<()> {
        for (name, a) in &found.entry.outputs {
            let replaced = match self.head(a)? {
                None => {
                    self.remove_entry(found)?;
                    bail!(
                        "its output `{name}` ({}) is missing there, so the entry was removed",
                        a.hash.short()
                    );
                }
                Some(meta) if a.kind == ArtifactKind::File && meta.size != a.size => {
                    format!("holds {} bytes, not {}", meta.size, a.size)
                }
                Some(meta) => match (found.versions.get(&artifact_rel(a)), meta.e_tag) {
                    (Some(published), Some(now)) if *published != now => {
                        "was replaced after the entry was published (its version changed)".into()
                    }
                    _ => continue,
                },
            };
            self.delete(&self.artifact_path(a))?;
            self.remove_entry(found)?;
            bail!(
                "its output `{name}` ({}) {replaced}: the object and the entry were deleted \
                 from the remote",
                a.hash.short()
            );
        }
        Ok(())
    }
}
