//! Uploads: a file in parts, several in flight, resumed from a log; a tree as its
//! files and its listing.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use super::stores::{concise, is_not_found};
use super::transfer::{staging, Meter, UploadGone, PARTS_IN_FLIGHT, PART_SIZE};
use super::Remote;
use crate::hash::{self, TreeEntry};
use crate::store::{Artifact, ArtifactKind, Store};

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
}
