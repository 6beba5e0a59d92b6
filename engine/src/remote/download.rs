//! Downloads: verified as they come (a tree's listing against its hash first, each
//! file against its own), resumed where a killed one stopped, and anything that fails
//! a check condemned.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{ensure, Context, Result};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;

use super::stores::{concise, is_not_found};
use super::transfer::{
    check_paths, condemned, set_executable, staging, Condemned, Gone, Listing, Meter,
    PARTS_IN_FLIGHT, PART_SIZE,
};
use super::Remote;
use crate::hash::{self, TreeEntry};
use crate::store::{Artifact, ArtifactKind, Check, Store};

impl Remote {
    /// Downloads `a` into `local`, verified, unless it is there already. A tree's
    /// listing is checked against its hash before anything comes down, each file
    /// against its own as it does, and the tree built against the listing's shape, so
    /// nothing is read twice. An object that fails a check is condemned ([`Condemned`]).
    pub fn download(&self, local: &Store, a: &Artifact, meter: &Meter<'_>) -> Result<()> {
        if let Ok(Check::Ok) = local.verify(a) {
            meter.add(a.size);
            return Ok(());
        }
        let staging = staging(local)?;
        let built = match a.kind {
            ArtifactKind::File => {
                let dest = staging.join(format!("{}.file", a.hash));
                self.download_file(&a.hash, a.size, &staging, &dest, meter)?;
                dest
            }
            ArtifactKind::Dir => {
                let path = self.artifact_path(a);
                let dest = staging.join(format!("{}.tree", a.hash));
                if let Err(e) = self.download_tree(a, &path, &staging, &dest, meter) {
                    crate::store::discard(&dest)?;
                    return Err(e);
                }
                dest
            }
        };
        local.publish_hashed(&built, a)
    }

    /// Builds the tree `a` (its listing at `listing`) in `dest`.
    fn download_tree(
        &self,
        a: &Artifact,
        listing_path: &ObjectPath,
        staging: &Path,
        dest: &Path,
        meter: &Meter<'_>,
    ) -> Result<()> {
        let bytes = self
            .get_bytes(listing_path)?
            .ok_or_else(|| Gone(listing_path.to_string()))?;
        let listing: Listing = serde_json::from_slice(&bytes)
            .map_err(|e| self.condemn(listing_path, format!("it is not a tree listing ({e})")))?;
        check_paths(&listing).map_err(|why| self.condemn(listing_path, why))?;
        let (hash, size) = hash::tree_hash(&listing);
        if hash != a.hash.as_str() || size != a.size {
            return Err(self.condemn(listing_path, "it does not match its hash".into()));
        }
        crate::store::discard(dest)?;
        for entry in &listing {
            match entry {
                TreeEntry::Dir { path } => fs::create_dir_all(dest.join(path))?,
                TreeEntry::File {
                    path,
                    hash,
                    size,
                    executable,
                } => {
                    let target = dest.join(path);
                    fs::create_dir_all(target.parent().expect("inside the tree"))?;
                    // A tree whose file is wrong or gone is condemned with its listing.
                    self.download_file(hash, *size, staging, &target, meter)
                        .map_err(|e| match condemned(&e) {
                            true => self.condemn(listing_path, format!("{e:#}")),
                            false => e,
                        })?;
                    set_executable(&target, *executable)?;
                }
            }
        }
        if !hash::has_shape(dest, &listing)? {
            return Err(self.condemn(listing_path, "its entries do not form a tree".into()));
        }
        Ok(())
    }

    /// Deletes an object that failed `check`, so that the entries naming it are found
    /// dangling and rebuilt, and says so.
    fn condemn(&self, path: &ObjectPath, check: String) -> anyhow::Error {
        let _ = self.delete(path);
        anyhow::Error::new(Condemned {
            object: path.to_string(),
            check,
        })
    }

    /// Downloads one object into `dest`, parts in parallel, resuming the parts a killed
    /// download already wrote, and checks its hash before `dest` appears.
    fn download_file(
        &self,
        hash: &str,
        size: u64,
        staging: &Path,
        dest: &Path,
        meter: &Meter<'_>,
    ) -> Result<()> {
        let path = self.object_path(hash);
        let remote_size = match self.block_on(self.store.head(&path)) {
            Ok(meta) => meta.size,
            Err(e) if is_not_found(&e) => return Err(Gone(path.to_string()).into()),
            Err(e) => return Err(concise(e)),
        };
        if remote_size != size {
            let why = format!("it holds {remote_size} bytes, not {size}");
            return Err(self.condemn(&path, why));
        }
        let partial = staging.join(format!("{hash}.part"));
        let log_path = staging.join(format!("{hash}.parts"));
        // Twice at most: when a resumed download does not match, the fault may be the
        // part this machine wrote before it was killed, so fetch it all once more
        // before blaming the remote.
        for attempt in 0..2 {
            let resumed = self
                .fetch_parts(&path, size, &partial, &log_path, meter)
                .with_context(|| format!("cannot download {path}"))?;
            let (actual, actual_size) = hash::hash_file(&partial)?;
            let _ = fs::remove_file(&log_path);
            if actual == hash && actual_size == size {
                fs::rename(&partial, dest)?;
                return Ok(());
            }
            let _ = fs::remove_file(&partial);
            if !resumed || attempt == 1 {
                break;
            }
        }
        Err(self.condemn(&path, "it does not match its hash".into()))
    }

    fn fetch_parts(
        &self,
        path: &ObjectPath,
        size: u64,
        partial: &Path,
        log_path: &Path,
        meter: &Meter<'_>,
    ) -> Result<bool> {
        use std::os::unix::fs::FileExt;
        let part = PART_SIZE as u64;
        let count = size.div_ceil(part);
        // Parts logged as written by an earlier, interrupted download of this object.
        let resumed = fs::metadata(partial).is_ok_and(|m| m.len() == size);
        let done: BTreeSet<u64> = match File::open(log_path) {
            Ok(log) if resumed => io::BufReader::new(log)
                .lines()
                .map_while(|l| l.ok()?.trim().parse().ok())
                .collect(),
            _ => BTreeSet::new(),
        };
        let file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(!resumed)
            .open(partial)?;
        file.set_len(size)?;
        let log = Mutex::new(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .truncate(false)
                .open(log_path)?,
        );
        for i in &done {
            meter.add((size - i * part).min(part));
        }
        let todo: Vec<u64> = (0..count).filter(|i| !done.contains(i)).collect();
        self.block_on(
            futures::stream::iter(todo)
                .map(|i| {
                    let range = i * part..((i + 1) * part).min(size);
                    let (file, log) = (&file, &log);
                    async move {
                        let bytes = self
                            .store
                            .get_range(path, range.clone())
                            .await
                            .map_err(concise)?;
                        ensure!(
                            bytes.len() as u64 == range.end - range.start,
                            "the remote sent {} bytes for a part of {}",
                            bytes.len(),
                            range.end - range.start
                        );
                        file.write_all_at(&bytes, range.start)?;
                        writeln!(log.lock().expect("log lock"), "{i}")?;
                        meter.add(bytes.len() as u64);
                        anyhow::Ok(())
                    }
                })
                .buffer_unordered(PARTS_IN_FLIGHT)
                .try_collect::<()>(),
        )?;
        file.sync_all()?;
        Ok(!done.is_empty())
    }
}
