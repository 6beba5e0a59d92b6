use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use indicatif::HumanBytes;
use object_store::buffered::BufWriter;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use crate::hash::{self, TreeEntry};
use crate::store::{Artifact, ArtifactKind, Check, Store};

use super::stores::{concise, is_not_found};
use super::Remote;

/// Bytes per part of a transfer.
pub const PART_SIZE: usize = 8 << 20;
/// Parts moving at once, per file.
pub const PARTS_IN_FLIGHT: usize = 8;

/// A directory artifact as the remote keeps it (`trees/<hash>.json`): its entries,
/// each file by its content hash, so that the local store can rebuild it.
type Listing = Vec<TreeEntry>;

/// Refuses entries whose paths would leave the tree.
fn check_paths(listing: &Listing) -> Result<(), String> {
    for entry in listing {
        let name = entry.path();
        let inside = !name.is_empty()
            && Path::new(name)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return Err(format!(
                "it names the path {name:?}, which is not inside the tree"
            ));
        }
    }
    Ok(())
}

/// Whether an error comes from a remote object that is gone or was condemned: the
/// entry that led to it should go too.
pub fn condemned(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Condemned>() || c.is::<Gone>())
}

/// An object the remote no longer holds.
#[derive(Debug, thiserror::Error)]
#[error("the remote holds no object {0}")]
pub struct Gone(pub String);

/// A remote object that failed a check on download, and was deleted from the remote
/// (for a file in a tree, the tree's listing too): entries that name it are then found
/// dangling and rebuilt.
#[derive(Debug, thiserror::Error)]
#[error("the remote object {object} failed a check: {check}; it was deleted from the remote, and the next run rebuilds the stage that made it")]
pub struct Condemned {
    pub object: String,
    pub check: String,
}

/// The multipart upload a log names is gone from the remote.
#[derive(Debug, thiserror::Error)]
#[error("the logged multipart upload is gone from the remote")]
struct UploadGone;

/// Counts the bytes of a transfer and says how far it is, every few seconds.
pub struct Meter<'a> {
    label: String,
    total: u64,
    done: AtomicU64,
    last: Mutex<Instant>,
    report: &'a (dyn Fn(&str) + Sync),
}

impl<'a> Meter<'a> {
    pub fn new(label: String, total: u64, report: &'a (dyn Fn(&str) + Sync)) -> Meter<'a> {
        Meter {
            label,
            total,
            done: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
            report,
        }
    }

    /// Says something about the transfer now.
    fn say(&self, what: &str) {
        (self.report)(&format!("{}: {what}", self.label));
    }

    fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let mut last = self.last.lock().expect("meter lock");
        if last.elapsed() >= Duration::from_secs(2) && done < self.total {
            *last = Instant::now();
            (self.report)(&format!(
                "{}: {} of {}",
                self.label,
                HumanBytes(done),
                HumanBytes(self.total)
            ));
        }
    }
}

impl Remote {
    /// Uploads a stored artifact of `local`, unless the remote holds it already.
    pub fn upload(&self, local: &Store, a: &Artifact, meter: &Meter<'_>) -> Result<()> {
        let path = local.path_of(a);
        match a.kind {
            ArtifactKind::File => self.upload_object(local, &path, a, meter),
            ArtifactKind::Dir if self.has(a)? => {
                meter.add(a.size);
                Ok(())
            }
            ArtifactKind::Dir => {
                let listing = hash::tree_entries(&path)?;
                for entry in &listing {
                    if let TreeEntry::File {
                        path: rel,
                        hash,
                        size,
                        ..
                    } = entry
                    {
                        let file = Artifact {
                            kind: ArtifactKind::File,
                            hash: hash.clone(),
                            size: *size,
                        };
                        self.upload_object(local, &path.join(rel), &file, meter)?;
                    }
                }
                // Last, so that a listing never names a file that is not there.
                let body = serde_json::to_vec_pretty(&listing)?;
                self.block_on(
                    self.store
                        .put(&self.artifact_path(a), PutPayload::from(body)),
                )
                .map_err(concise)?;
                Ok(())
            }
        }
    }

    /// Uploads the file at `src` as the object `a`, unless the remote holds it already.
    fn upload_object(
        &self,
        local: &Store,
        src: &Path,
        a: &Artifact,
        meter: &Meter<'_>,
    ) -> Result<()> {
        if self.has(a)? {
            meter.add(a.size);
            return Ok(());
        }
        self.upload_file(local, src, &a.hash, meter)
    }

    /// Uploads one file of `local` as the object `hash`. Every path hashes it on the
    /// way: if it no longer matches its name the upload is abandoned, so the remote
    /// never holds an object that lies.
    fn upload_file(&self, local: &Store, src: &Path, hash: &str, meter: &Meter<'_>) -> Result<()> {
        let size = fs::metadata(src)
            .with_context(|| format!("cannot read {}", src.display()))?
            .len();
        match &self.parts {
            Some(parts) if size > PART_SIZE as u64 => {
                let log = staging(local)?.join(format!("{hash}.upload"));
                // A logged upload the remote no longer has (aborted, expired) starts over.
                match self.upload_parts(parts, src, hash, size, &log, meter) {
                    Err(e) if e.downcast_ref::<UploadGone>().is_some() => {
                        let _ = fs::remove_file(&log);
                        self.upload_parts(parts, src, hash, size, &log, meter)
                    }
                    done => done,
                }
            }
            _ => self.upload_buffered(src, hash, meter),
        }
    }

    /// A large file as a multipart upload whose id and finished parts are logged in
    /// `log`: a killed upload resumes with the parts the remote has. The file is read
    /// and hashed whole either way.
    fn upload_parts(
        &self,
        parts: &Arc<dyn MultipartStore>,
        src: &Path,
        hash: &str,
        size: u64,
        log: &Path,
        meter: &Meter<'_>,
    ) -> Result<()> {
        let dest = self.object_path(hash);
        let logged = fs::read_to_string(log).unwrap_or_default();
        let mut lines = logged.lines();
        let resumed = lines.next().and_then(|l| l.strip_prefix("upload "));
        let (id, done) = match resumed {
            Some(id) => {
                let done: std::collections::BTreeMap<usize, PartId> = lines
                    .filter_map(|l| {
                        let (i, content_id) = l.split_once(' ')?;
                        let content_id = content_id.to_string();
                        Some((i.parse().ok()?, PartId { content_id }))
                    })
                    .collect();
                meter.say(&format!(
                    "resuming an upload: {} of {} parts are there already",
                    done.len(),
                    size.div_ceil(PART_SIZE as u64)
                ));
                (id.to_string(), done)
            }
            None => {
                let id = self
                    .block_on(parts.create_multipart(&dest))
                    .map_err(concise)?;
                crate::store::write_atomic(log, format!("upload {id}\n").as_bytes())?;
                (id, Default::default())
            }
        };
        let appender = Mutex::new(fs::OpenOptions::new().append(true).open(log)?);
        let mut file = File::open(src).with_context(|| format!("cannot read {}", src.display()))?;
        let mut hasher = blake3::Hasher::new();
        let count = size.div_ceil(PART_SIZE as u64) as usize;
        let sent: Result<Vec<PartId>> = self.block_on(
            futures::stream::iter(0..count)
                .map(|i| {
                    // Read and hashed in order, as the buffer below asks for parts.
                    let mut buf = vec![0u8; PART_SIZE];
                    let read = hash::read_full(&mut file, &mut buf).map(|n| {
                        buf.truncate(n);
                        hasher.update(&buf);
                        Bytes::from(buf)
                    });
                    let (dest, id, done, appender) = (&dest, &id, &done, &appender);
                    async move {
                        let bytes =
                            read.with_context(|| format!("cannot read {}", src.display()))?;
                        let n = bytes.len() as u64;
                        let part = match done.get(&i) {
                            Some(part) => part.clone(),
                            None => {
                                let put = parts.put_part(dest, id, i, bytes.into()).await;
                                let part = put.map_err(|e| match is_not_found(&e) {
                                    true => anyhow::Error::new(UploadGone),
                                    false => concise(e),
                                })?;
                                let mut log = appender.lock().expect("log lock");
                                writeln!(log, "{i} {}", part.content_id)?;
                                part
                            }
                        };
                        meter.add(n);
                        anyhow::Ok(part)
                    }
                })
                .buffered(PARTS_IN_FLIGHT)
                .try_collect(),
        );
        let sent = sent?;
        if hasher.finalize().to_hex().as_str() != hash {
            let _ = self.block_on(parts.abort_multipart(&dest, &id));
            let _ = fs::remove_file(log);
            bail!(
                "{} changed while it was uploaded; nothing was published",
                src.display()
            );
        }
        self.block_on(parts.complete_multipart(&dest, &id, sent))
            .map_err(concise)
            .with_context(|| format!("cannot complete the upload of {dest}"))?;
        let _ = fs::remove_file(log);
        Ok(())
    }

    /// A file through a buffered writer (stores without a multipart interface, and
    /// files of one part).
    fn upload_buffered(&self, src: &Path, hash: &str, meter: &Meter<'_>) -> Result<()> {
        let dest = self.object_path(hash);
        let mut file = File::open(src).with_context(|| format!("cannot read {}", src.display()))?;
        self.block_on(async {
            let mut writer =
                BufWriter::with_capacity(Arc::clone(&self.store), dest.clone(), PART_SIZE)
                    .with_max_concurrency(PARTS_IN_FLIGHT);
            let mut hasher = blake3::Hasher::new();
            let sent = async {
                loop {
                    let mut buf = vec![0u8; PART_SIZE];
                    let n = hash::read_full(&mut file, &mut buf)
                        .with_context(|| format!("cannot read {}", src.display()))?;
                    if n == 0 {
                        break;
                    }
                    buf.truncate(n);
                    hasher.update(&buf);
                    writer.put(Bytes::from(buf)).await.map_err(concise)?;
                    meter.add(n as u64);
                }
                ensure!(
                    hasher.finalize().to_hex().as_str() == hash,
                    "{} changed while it was uploaded; nothing was published",
                    src.display()
                );
                Ok(())
            }
            .await;
            match sent {
                Ok(()) => writer.shutdown().await.map_err(|e| {
                    concise(e).context(format!("cannot complete the upload of {dest}"))
                }),
                Err(e) => {
                    let _ = writer.abort().await;
                    Err(e)
                }
            }
        })
    }

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

/// Where transfers keep their partial files and logs in the local store (never trusted:
/// under `tmp/`).
fn staging(local: &Store) -> io::Result<std::path::PathBuf> {
    let dir = local.root().join("tmp").join("remote");
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn set_executable(path: &Path, executable: bool) -> io::Result<()> {
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode();
        fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o111))?;
    }
    let _ = (path, executable);
    Ok(())
}
