//! The remote store: one cache shared between machines through the object storage users
//! already have (`s3://`, `gs://`, `az://`, `file://`), with no server of its own.
//!
//! ```text
//! <prefix>/soma-flow-remote.json   the layout's version (written by its first user)
//! <prefix>/objects/<hash>          file artifacts, named by their BLAKE3 as in a local store
//! <prefix>/trees/<hash>.json       directory artifacts: their files (each in objects/)
//! <prefix>/cache/<key>.json        the first entry published for a key, by anyone:
//!                                  written last, create-only, never replaced
//! <prefix>/cache/<key>/<address>.json  the entry signed by `address` ([`trust`])
//! <prefix>/leases/<key>.json       who is building a key ([`leases`])
//! <prefix>/jobs/<name>.json         how a job on a machine without the submitter's
//!                                   filesystem ended (read, then removed, by the submitter)
//! ```
//!
//! An entry is written only after every object it names: a reader never sees an entry
//! whose objects were not uploaded, and a key is never published twice with different
//! content by one signer. Every object that comes down is hashed before the local store
//! takes it, and one that fails a check is condemned: deleted, with the entry that led
//! to it, so that the next run rebuilds and republishes it. Which entries are taken at
//! all is [`trust`]'s matter: those signed by a trusted key, or, when nobody configured
//! any, every entry, said to be unverified. Nothing here lists the bucket: every read
//! names its object.
//!
//! Transfers go in [`PART_SIZE`] parts, [`PARTS_IN_FLIGHT`] at once, in both
//! directions: memory stays bounded whatever the size of the file. A download resumes
//! where a killed one stopped; an upload skips what the remote already holds.

mod download;
mod entries;
mod leases;
mod setting;
mod stores;
mod transfer;
pub mod trust;
mod upload;

pub use entries::{Lookup, RemoteEntry};
pub use leases::{Claim, Lease, LeaseWatch};
pub use setting::{Address, KeyScheme, RemoteSetting, TrustSetting};
pub use stores::{check_url, is_store_setting, open_url};
use stores::{concise, is_not_found, is_taken, open_stores};
pub use transfer::{condemned, Condemned, Gone, Meter, PARTS_IN_FLIGHT, PART_SIZE};
pub use trust::Trust;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use bytes::Bytes;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};

use crate::duration::from_env;
use crate::lease::owner_name;
use crate::store::{Artifact, ArtifactKind};

/// Where `a` is under the remote's prefix.
fn artifact_rel(a: &Artifact) -> String {
    match a.kind {
        ArtifactKind::File => format!("objects/{}", a.hash),
        ArtifactKind::Dir => format!("trees/{}.json", a.hash),
    }
}

/// The layout this code reads and writes.
const LAYOUT: u32 = 1;
const LAYOUT_FILE: &str = "soma-flow-remote.json";
/// How long a lease holds without renewal (`SOMA_FLOW_REMOTE_LEASE` overrides), so that
/// a machine that dies while building a key blocks the others only that long.
const LEASE_TTL: Duration = Duration::from_secs(300);

#[derive(Serialize, Deserialize)]
struct LayoutFile {
    layout: u32,
}

/// A remote store, opened and checked.
pub struct Remote {
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The same store's multipart interface, where it has one: resumable uploads.
    parts: Option<Arc<dyn MultipartStore>>,
    prefix: ObjectPath,
    /// Its own runtime: the remote is used from blocking code (stage runners on the
    /// scheduler's blocking threads, the push and pull commands).
    runtime: Option<tokio::runtime::Runtime>,
    owner: String,
    lease_ttl: Duration,
    trust: Trust,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Remote {
    /// Opens the remote at `url` and checks that it can be used: the bucket exists,
    /// the credentials reach it, and its layout is this one. Its entries are taken
    /// unverified, and published unsigned ([`Remote::open_with`] says otherwise).
    pub fn open(url: &str) -> Result<Remote> {
        Remote::open_with(url, Trust::default())
    }

    /// [`Remote::open`], signing and taking entries as `trust` says.
    pub fn open_with(url: &str, trust: Trust) -> Result<Remote> {
        let opened = open_stores(url).map_err(|why| anyhow!("remote {url}: {why}"))?;
        let lease_ttl =
            from_env("SOMA_FLOW_REMOTE_LEASE", LEASE_TTL).map_err(anyhow::Error::msg)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("remote")
            .enable_all()
            .build()?;
        let remote = Remote {
            url: url.to_string(),
            store: opened.store,
            parts: opened.parts,
            prefix: opened.path,
            runtime: Some(runtime),
            owner: owner_name(),
            lease_ttl,
            trust,
        };
        remote
            .check_layout()
            .with_context(|| format!("remote {url} cannot be used"))?;
        Ok(remote)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the remote")
            .block_on(future)
    }

    fn path(&self, rel: &str) -> ObjectPath {
        if self.prefix.as_ref().is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn object_path(&self, hash: &str) -> ObjectPath {
        self.path(&format!("objects/{hash}"))
    }

    fn artifact_path(&self, a: &Artifact) -> ObjectPath {
        self.path(&artifact_rel(a))
    }

    /// The whole object, or `None` when there is none.
    fn get_bytes(&self, path: &ObjectPath) -> Result<Option<Bytes>> {
        self.block_on(async {
            match self.store.get(path).await {
                Ok(got) => Ok(Some(got.bytes().await.map_err(concise)?)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(concise(e)),
            }
        })
    }

    /// Writes `bytes` at `path` unless something is there: `Ok(false)` when it was.
    fn put_new(&self, path: &ObjectPath, bytes: Vec<u8>) -> Result<bool> {
        let put = self.block_on(self.store.put_opts(
            path,
            PutPayload::from(bytes),
            PutMode::Create.into(),
        ));
        match put {
            Ok(_) => Ok(true),
            Err(e) if is_taken(&e) => Ok(false),
            Err(e) => Err(concise(e)),
        }
    }

    fn check_layout(&self) -> Result<()> {
        let path = self.path(LAYOUT_FILE);
        match self.get_bytes(&path)? {
            Some(bytes) => {
                let found: LayoutFile = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{path} is not a soma-flow layout file"))?;
                ensure!(
                    found.layout == LAYOUT,
                    "its layout is version {} and this soma-flow reads version {LAYOUT}",
                    found.layout
                );
            }
            None => {
                let body = serde_json::to_vec(&LayoutFile { layout: LAYOUT })?;
                self.put_new(&path, body)
                    .with_context(|| format!("cannot write {path}"))?;
            }
        }
        Ok(())
    }

    /// Writes the result of job `name` (see [`crate::exec`]'s Slurm jobs).
    pub fn put_job_result(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(&format!("jobs/{name}.json"));
        self.block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map_err(concise)?;
        Ok(())
    }

    /// Takes the result of job `name`, if it wrote one: read, then removed.
    pub fn take_job_result(&self, name: &str) -> Result<Option<Bytes>> {
        let path = self.path(&format!("jobs/{name}.json"));
        let bytes = self.get_bytes(&path)?;
        if bytes.is_some() {
            let _ = self.block_on(self.store.delete(&path));
        }
        Ok(bytes)
    }

    /// What the remote holds in `a`'s place (the file, or a tree's listing), if anything.
    fn head(&self, a: &Artifact) -> Result<Option<ObjectMeta>> {
        match self.block_on(self.store.head(&self.artifact_path(a))) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(concise(e)),
        }
    }

    /// Whether the remote holds `a` (a file of the right size, or a tree's listing).
    pub fn has(&self, a: &Artifact) -> Result<bool> {
        Ok(self
            .head(a)?
            .is_some_and(|meta| a.kind == ArtifactKind::Dir || meta.size == a.size))
    }
}
