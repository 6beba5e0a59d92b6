//! The remote store: one cache shared between machines through the object storage users
//! already have (`s3://`, `gs://`, `az://`, `file://`), with no server of its own.
//!
//! ```text
//! <prefix>/soma-flow-remote.json   the layout's version (written by its first user)
//! <prefix>/objects/<hash>          file artifacts, named by their BLAKE3 as in a local store
//! <prefix>/trees/<hash>.json       directory artifacts: their files (each in objects/)
//! <prefix>/cache/<key>.json        cache entries: written last, create-only, never replaced
//! <prefix>/leases/<key>.json       who is building a key, and until when
//! <prefix>/jobs/<name>.json         how a job on a machine without the submitter's
//!                                   filesystem ended (read, then removed, by the submitter)
//! ```
//!
//! An entry is written only after every object it names, and never replaced: a reader
//! never sees an entry whose objects were not uploaded, and a key is never published
//! twice with different content. Every object that comes down is hashed before the local
//! store takes it. Entries carry no seal (machines share no key): whoever may write to
//! the bucket is trusted to say which outputs a key has, as with any shared cache, but
//! not what they contain. Nothing here lists the bucket: every read names its object.
//!
//! Transfers go in [`PART_SIZE`] parts, [`PARTS_IN_FLIGHT`] at once, in both
//! directions: memory stays bounded whatever the size of the file. A download resumes
//! where a killed one stopped; an upload skips what the remote already holds.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::future::Future;
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use indicatif::HumanBytes;
use object_store::buffered::BufWriter;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjectPath;
use object_store::{
    ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutMode, PutPayload, RetryConfig, UpdateVersion,
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::duration::from_env;
use crate::hash::{self, TreeEntry};
use crate::lease::{self, owner_name, Heartbeat, LeaseBody};
use crate::store::{Artifact, ArtifactKind, CacheEntry, Check, Store};

/// Bytes per part of a transfer.
pub const PART_SIZE: usize = 8 << 20;
/// Parts moving at once, per file.
pub const PARTS_IN_FLIGHT: usize = 8;
/// The layout this code reads and writes.
const LAYOUT: u32 = 1;
const LAYOUT_FILE: &str = "soma-flow-remote.json";
/// How long a lease holds without renewal (`SOMA_FLOW_REMOTE_LEASE` overrides), so that
/// a machine that dies while building a key blocks the others only that long.
const LEASE_TTL: Duration = Duration::from_secs(300);

/// Environment prefixes whose variables configure the cloud stores, mirroring each
/// builder's `from_env` (other variables could clash with builder option names).
const CREDENTIAL_PREFIXES: [&str; 3] = ["AWS_", "GOOGLE_", "AZURE_"];

/// Whether an environment variable configures the cloud stores (credentials included).
pub fn is_store_setting(name: &str) -> bool {
    CREDENTIAL_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// How long a failing request to object storage is retried before it counts as failed,
/// unless `SOMA_FLOW_STORAGE_RETRY` says otherwise (object_store's default).
const RETRY_FOR: Duration = Duration::from_secs(180);

/// Opens the object store behind `url` and the path inside it, with credentials from
/// the environment as each cloud's own tools read them; `Err` says why the URL is
/// unusable. A request that fails (a network cut, a server error) is retried for
/// `SOMA_FLOW_STORAGE_RETRY` (a duration, default 3m) before it fails.
pub fn open_url(url: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath), String> {
    open_stores(url).map(|opened| (opened.store, opened.path))
}

/// A store as [`open_url`] opens it, with its multipart interface where it has one
/// (S3, GCS, Azure): uploads through it can resume after an interruption.
struct Opened {
    store: Arc<dyn ObjectStore>,
    parts: Option<Arc<dyn MultipartStore>>,
    path: ObjectPath,
}

/// The URL parsed, the kind of store it names and the path inside it; `Err` says why
/// it cannot be used. Nothing is built or contacted (pipelines are checked with it).
pub fn check_url(url: &str) -> Result<(url::Url, ObjectStoreScheme, ObjectPath), String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let (scheme, path) = ObjectStoreScheme::parse(&parsed).map_err(|e| e.to_string())?;
    let path = ObjectPath::parse(path).map_err(|e| e.to_string())?;
    match scheme {
        ObjectStoreScheme::Local
        | ObjectStoreScheme::AmazonS3
        | ObjectStoreScheme::GoogleCloudStorage
        | ObjectStoreScheme::MicrosoftAzure
        | ObjectStoreScheme::Http => Ok((parsed, scheme, path)),
        other => Err(format!("{other:?} storage is not supported")),
    }
}

fn open_stores(url: &str) -> Result<Opened, String> {
    let (parsed, scheme, path) = check_url(url)?;
    let mut options: Vec<(String, String)> = std::env::vars()
        .filter(|(key, _)| is_store_setting(key))
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .collect();
    // A plain-http endpoint is a local test server (moto, MinIO): allow it rather
    // than making every such setup also set AWS_ALLOW_HTTP.
    let http_endpoint = options
        .iter()
        .any(|(k, v)| k.starts_with("aws_endpoint") && v.starts_with("http://"));
    if http_endpoint {
        options.push(("aws_allow_http".into(), "true".into()));
    }
    // An explicit http:// URL is the caller's choice of plain HTTP.
    if parsed.scheme() == "http" {
        options.push(("allow_http".into(), "true".into()));
    }
    let retry = RetryConfig {
        retry_timeout: from_env("SOMA_FLOW_STORAGE_RETRY", RETRY_FOR)?,
        ..RetryConfig::default()
    };
    // As `object_store::parse_url_opts` builds them, with the retry setting.
    macro_rules! build {
        ($builder:ty, $url:expr) => {{
            let builder = options.into_iter().fold(
                <$builder>::new()
                    .with_url($url.to_string())
                    .with_retry(retry),
                |builder, (key, value)| match key.parse() {
                    Ok(k) => builder.with_config(k, value),
                    Err(_) => builder,
                },
            );
            Arc::new(builder.build().map_err(|e| e.to_string())?)
        }};
    }
    fn both<S: ObjectStore + MultipartStore>(
        store: Arc<S>,
    ) -> (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>) {
        (Arc::clone(&store) as _, Some(store as _))
    }
    let (store, parts) = match scheme {
        ObjectStoreScheme::Local => (
            Arc::new(object_store::local::LocalFileSystem::new()) as _,
            None,
        ),
        ObjectStoreScheme::AmazonS3 => both(build!(object_store::aws::AmazonS3Builder, parsed)),
        ObjectStoreScheme::GoogleCloudStorage => {
            both(build!(object_store::gcp::GoogleCloudStorageBuilder, parsed))
        }
        ObjectStoreScheme::MicrosoftAzure => {
            both(build!(object_store::azure::MicrosoftAzureBuilder, parsed))
        }
        ObjectStoreScheme::Http => {
            let url = &parsed[..url::Position::BeforePath];
            let http: Arc<object_store::http::HttpStore> =
                build!(object_store::http::HttpBuilder, url);
            (http as _, None)
        }
        _ => unreachable!("check_url accepts only the schemes above"),
    };
    Ok(Opened { store, parts, path })
}

/// A directory artifact as the remote keeps it (`trees/<hash>.json`): its entries,
/// each file by its content hash, so that the local store can rebuild it.
type Listing = Vec<TreeEntry>;

/// Refuses entries whose paths would leave the tree.
fn check_paths(listing: &Listing) -> Result<()> {
    for entry in listing {
        let name = entry.path();
        ensure!(
            !name.is_empty()
                && Path::new(name)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))),
            "the remote tree names the path {name:?}, which is not inside it"
        );
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct LayoutFile {
    layout: u32,
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

/// object_store's errors repeat their sources and quote whole XML bodies: this says
/// once what failed, with the server's error code and message when it sent one.
fn concise(e: impl std::fmt::Display) -> anyhow::Error {
    let text = e.to_string();
    let field = |tag: &str| {
        let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
        let end = start + text[start..].find(&format!("</{tag}>"))?;
        Some(text[start..end].to_string())
    };
    let head = text.split(": <?xml").next().unwrap_or(&text);
    // The first "Error performing …" is the request; what follows repeats it.
    let head = match head.match_indices(": Error performing").nth(1) {
        Some((i, _)) => &head[..i],
        None => head,
    };
    match (field("Code"), field("Message")) {
        (Some(code), Some(message)) => anyhow!("{head}: {code}: {message}"),
        _ => anyhow!("{head}"),
    }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn is_taken(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

impl Remote {
    /// Opens the remote at `url` and checks that it can be used: the bucket exists,
    /// the credentials reach it, and its layout is this one.
    pub fn open(url: &str) -> Result<Remote> {
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
        };
        remote
            .check_layout()
            .with_context(|| format!("remote {url} cannot be used"))?;
        Ok(remote)
    }

    pub fn url(&self) -> &str {
        &self.url
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
        match a.kind {
            ArtifactKind::File => self.object_path(&a.hash),
            ArtifactKind::Dir => self.path(&format!("trees/{}.json", a.hash)),
        }
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

    /// The remote's cache entry for `key`, if it has one.
    pub fn entry(&self, key: &str) -> Result<Option<CacheEntry>> {
        let path = self.path(&format!("cache/{key}.json"));
        let Some(bytes) = self.get_bytes(&path)? else {
            return Ok(None);
        };
        let entry: CacheEntry = serde_json::from_slice(&bytes)
            .with_context(|| format!("the remote's entry {path} is malformed"))?;
        ensure!(
            entry.key == key,
            "the remote's entry {path} belongs to another key"
        );
        Ok(Some(entry))
    }

    /// Publishes `entry` unless the remote has one for its key: `Ok(false)` when it
    /// had (made elsewhere first; it is kept, never replaced).
    pub fn publish_entry(&self, entry: &CacheEntry) -> Result<bool> {
        let unsealed = CacheEntry {
            seal: String::new(),
            ..entry.clone()
        };
        let path = self.path(&format!("cache/{}.json", entry.key));
        self.put_new(&path, serde_json::to_vec_pretty(&unsealed)?)
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

    /// Removes the remote's entry for `key` (it names an object that is gone or wrong).
    pub fn remove_entry(&self, key: &str) -> Result<()> {
        let path = self.path(&format!("cache/{key}.json"));
        match self.block_on(self.store.delete(&path)) {
            Err(e) if !is_not_found(&e) => Err(concise(e)),
            _ => Ok(()),
        }
    }

    /// Whether the remote holds `a` (a file of the right size, or a tree's listing).
    pub fn has(&self, a: &Artifact) -> Result<bool> {
        match self.block_on(self.store.head(&self.artifact_path(a))) {
            Ok(meta) => Ok(a.kind == ArtifactKind::Dir || meta.size == a.size),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(concise(e)),
        }
    }

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
    /// nothing is read twice.
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
                let bytes = self
                    .get_bytes(&path)?
                    .with_context(|| format!("the remote holds no object {path}"))?;
                let listing: Listing = serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow!("the remote's tree {path} is malformed: {e}"))?;
                check_paths(&listing)?;
                let (hash, size) = hash::tree_hash(&listing);
                if hash != a.hash.as_str() || size != a.size {
                    return Err(self.condemn(&path));
                }
                let dest = staging.join(format!("{}.tree", a.hash));
                crate::store::discard(&dest)?;
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
                            self.download_file(hash, *size, &staging, &target, meter)?;
                            set_executable(&target, *executable)?;
                        }
                    }
                }
                if !hash::has_shape(&dest, &listing)? {
                    crate::store::discard(&dest)?;
                    return Err(self.condemn(&path));
                }
                dest
            }
        };
        local.publish_hashed(&built, a)
    }

    /// Deletes an object that does not match its name, so that the entries naming it
    /// are found dangling and rebuilt, and says so.
    fn condemn(&self, path: &ObjectPath) -> anyhow::Error {
        let _ = self.block_on(self.store.delete(path));
        anyhow!("the remote object {path} does not match its hash; it was deleted from the remote")
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
            Err(e) if is_not_found(&e) => bail!("the remote holds no object {path}"),
            Err(e) => return Err(concise(e)),
        };
        if remote_size != size {
            return Err(self.condemn(&path));
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
        Err(self.condemn(&path))
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

    /// Claims the right to build `key` for a while, so that machines running the same
    /// pipeline at once build it once.
    pub fn claim(self: &Arc<Self>, key: &str) -> Result<Claim> {
        let path = self.path(&format!("leases/{key}.json"));
        for _ in 0..5 {
            if self.put_new(&path, self.lease_body())? {
                return Ok(Claim::Mine(Lease::start(Arc::clone(self), path)));
            }
            let got = match self.block_on(self.store.get(&path)) {
                Ok(got) => got,
                Err(e) if is_not_found(&e) => continue, // released meanwhile
                Err(e) => return Err(concise(e)),
            };
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            let bytes = self.block_on(got.bytes()).map_err(concise)?;
            // A lease that does not parse counts as expired.
            if let Ok(held) = serde_json::from_slice::<LeaseBody>(&bytes) {
                if held.is_live() {
                    return Ok(Claim::Theirs {
                        owner: held.owner,
                        expires: UNIX_EPOCH + Duration::from_millis(held.expires),
                    });
                }
            }
            // Expired: take it over, only if nobody else did since it was read.
            let update = self.block_on(self.store.put_opts(
                &path,
                PutPayload::from(self.lease_body()),
                PutMode::Update(version).into(),
            ));
            match update {
                Ok(_) => return Ok(Claim::Mine(Lease::start(Arc::clone(self), path))),
                Err(e) if is_taken(&e) || is_not_found(&e) => continue,
                // Stores without conditional updates (a local directory): remove the
                // expired lease and race for a new one.
                Err(object_store::Error::NotImplemented { .. }) => {
                    let _ = self.block_on(self.store.delete(&path));
                }
                Err(e) => return Err(concise(e)),
            }
        }
        bail!("could not claim {path}: it changed hands five times in a row")
    }

    fn lease_body(&self) -> Vec<u8> {
        lease::body(&self.owner, self.lease_ttl)
    }
}

/// The outcome of [`Remote::claim`].
pub enum Claim {
    /// This process builds the key; dropping the lease releases it.
    Mine(Lease),
    /// Another machine builds it, and holds the lease until `expires`.
    Theirs { owner: String, expires: SystemTime },
}

/// A held lease, renewed in the background until dropped, then removed.
pub struct Lease {
    heartbeat: Option<Heartbeat>,
    remote: Arc<Remote>,
    path: ObjectPath,
}

impl Lease {
    fn start(remote: Arc<Remote>, path: ObjectPath) -> Lease {
        let (remote2, path2) = (Arc::clone(&remote), path.clone());
        let heartbeat = Heartbeat::start(remote.lease_ttl / 3, move || {
            let body = PutPayload::from(remote2.lease_body());
            let _ = remote2.block_on(remote2.store.put(&path2, body));
        });
        Lease {
            heartbeat: Some(heartbeat),
            remote,
            path,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Renewal stops before the lease is removed.
        drop(self.heartbeat.take());
        let _ = self.remote.block_on(self.remote.store.delete(&self.path));
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
