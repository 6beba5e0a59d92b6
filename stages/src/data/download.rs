//! Resumable downloads shared by the Hub and object-storage sources: bytes go to
//! `<dest>.part`, a broken transfer continues with a ranged request from where the
//! file ends, and transient failures are retried with exponential backoff. A
//! [`Through`] transforms the bytes on their way to the file (a model's
//! decryption and the hash its manifest checks), so no second pass is needed.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::Digest;

use super::error::{io_at, DataError};
use super::progress::{Meter, ProgressFn};

/// Failed attempts in a row (without new bytes) before a download gives up.
pub const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The wait before retry number `attempt` (1-based): 0.25 s, 0.5 s, 1 s, ...
pub fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF * 2u32.pow(attempt.saturating_sub(1).min(6))
}

/// What a download does to the bytes before it appends them. It sees every byte
/// of the object once, in order; a download that continues bytes already on
/// disk (a resumed or retried transfer) first rebuilds it from them.
pub trait Through {
    /// Bytes processed so far.
    fn position(&self) -> u64;
    /// Starts over, then catches up with the first `len` bytes of `part`, which
    /// this transformation wrote.
    fn restart(&mut self, part: &Path, len: u64) -> std::io::Result<()>;
    /// Transforms the next bytes in place.
    fn process(&mut self, chunk: &mut [u8]);
}

/// A response body starting at the requested offset, with its announced length
/// when the server gave one.
pub struct Body<S> {
    pub length: Option<u64>,
    pub stream: S,
}

/// How one source reports a failed request.
pub struct Failure {
    pub transient: bool,
    pub error: DataError,
}

/// Downloads `size` bytes into `dest`, calling `fetch(offset)` for the body from
/// `offset` on. Returns at once when `dest` already holds `size` bytes.
pub async fn download<F, Fut, S>(
    name: &str,
    size: u64,
    dest: &Path,
    fetch: F,
    progress: ProgressFn<'_>,
) -> Result<(), DataError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Body<S>, Failure>>,
    S: Stream<Item = Result<Bytes, Failure>> + Unpin,
{
    download_through(name, size, dest, fetch, None, progress).await
}

/// [`download`], the bytes passing `through` a transformation on their way.
pub async fn download_through<F, Fut, S>(
    name: &str,
    size: u64,
    dest: &Path,
    fetch: F,
    mut through: Option<&mut dyn Through>,
    progress: ProgressFn<'_>,
) -> Result<(), DataError>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Body<S>, Failure>>,
    S: Stream<Item = Result<Bytes, Failure>> + Unpin,
{
    if std::fs::metadata(dest).is_ok_and(|m| m.len() == size) {
        if let Some(through) = through {
            through.restart(dest, size).map_err(io_at(dest))?;
        }
        return Ok(());
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    }
    let part = part_path(dest);
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&part)
        .map_err(io_at(&part))?;
    let mut offset = std::fs::metadata(&part).map_or(0, |m| m.len());
    if offset > size {
        offset = 0;
    }
    let mut meter = Meter::new(progress, format!("downloading {name}"), Some(size));
    meter.set(offset);
    let mut failures = 0;
    while offset < size {
        let attempt = transfer(
            &part,
            offset,
            size,
            &fetch,
            through.as_deref_mut(),
            &mut meter,
        );
        let (reached, failure) = match attempt.await {
            Ok(reached) if reached == size => (reached, None),
            Ok(reached) => {
                let error = DataError::Io {
                    path: name.into(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the connection closed at byte {reached} of {size}"),
                    ),
                };
                (
                    reached,
                    Some(Failure {
                        transient: true,
                        error,
                    }),
                )
            }
            Err((reached, failure)) => (reached, Some(failure)),
        };
        // Progress resets the count: only failures in a row without new bytes add up.
        failures = if reached > offset { 1 } else { failures + 1 };
        offset = reached;
        let Some(failure) = failure else { continue };
        if !failure.transient {
            return Err(failure.error);
        }
        if failures >= ATTEMPTS {
            return Err(DataError::Download {
                file: name.into(),
                attempts: failures,
                reason: failure.error.to_string(),
            });
        }
        progress(&format!(
            "{name}: {} (attempt {failures} of {ATTEMPTS}, resuming at byte {offset})",
            failure.error
        ));
        tokio::time::sleep(backoff(failures)).await;
    }
    meter.finish("");
    std::fs::rename(&part, dest).map_err(io_at(dest))
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// One request: appends what arrives to `part` and returns the offset reached,
/// alongside the failure when there was one.
async fn transfer<'t, F, Fut, S>(
    part: &Path,
    offset: u64,
    size: u64,
    fetch: &F,
    mut through: Option<&mut (dyn Through + 't)>,
    meter: &mut Meter<'_>,
) -> Result<u64, (u64, Failure)>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Body<S>, Failure>>,
    S: Stream<Item = Result<Bytes, Failure>> + Unpin,
{
    let local = |offset: u64| {
        move |e: std::io::Error| {
            let error = io_at(part)(e);
            (
                offset,
                Failure {
                    transient: false,
                    error,
                },
            )
        }
    };
    let mut body = fetch(offset).await.map_err(|f| (offset, f))?;
    // A server that ignored the range sends the whole file: start over with it.
    let mut offset = offset;
    if offset > 0 && body.length == Some(size) {
        offset = 0;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .map_err(local(offset))?;
    file.set_len(offset).map_err(local(offset))?;
    if let Some(through) = through.as_deref_mut().filter(|t| t.position() != offset) {
        through.restart(part, offset).map_err(local(offset))?;
    }
    let (queue, written) = appender(file);
    let mut received = async {
        while let Some(chunk) = body.stream.next().await {
            let chunk = chunk.map_err(|f| (offset, f))?;
            if offset + chunk.len() as u64 > size {
                return Err((
                    offset,
                    Failure {
                        transient: false,
                        error: DataError::Mismatch {
                            file: part.display().to_string(),
                            what: "size",
                            expected: size.to_string(),
                            actual: format!("over {}", offset + chunk.len() as u64),
                        },
                    },
                ));
            }
            let chunk = match through.as_deref_mut() {
                Some(through) => {
                    // Without a copy when the piece is the only owner of its bytes.
                    let mut bytes = Vec::from(chunk);
                    through.process(&mut bytes);
                    Bytes::from(bytes)
                }
                None => chunk,
            };
            let len = chunk.len() as u64;
            if queue.send(chunk).await.is_err() {
                break; // The writer failed: its error is reported below.
            }
            offset += len;
            meter.set(offset);
        }
        Ok(())
    }
    .await;
    drop(queue);
    let wrote = written
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    if let Err(e) = wrote {
        received = Err(local(offset)(e));
    }
    received.map(|()| offset)
}

/// Appends what it is sent to `file` on a blocking thread, so that writing one
/// piece overlaps receiving (and transforming) the next; the file is synced
/// once everything sent is written.
fn appender(
    mut file: File,
) -> (
    tokio::sync::mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (queue, mut pieces) = tokio::sync::mpsc::channel::<Bytes>(2);
    let written = tokio::task::spawn_blocking(move || {
        while let Some(piece) = pieces.blocking_recv() {
            file.write_all(&piece)?;
        }
        file.sync_all()
    });
    (queue, written)
}

/// A SHA-256 as `sha256sum` prints it (64 hex digits), for [`Parsed`](soma_flow_engine::Parsed):
/// the text is the value.
#[derive(Debug, Clone, Copy)]
pub struct Sha256Hex;

impl std::str::FromStr for Sha256Hex {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => Ok(Sha256Hex),
            false => Err(format!("`{text}` is not a SHA-256: expected 64 hex digits")),
        }
    }
}

/// Hex SHA-256 of the file at `path`, checked against `expected` when given (either
/// case). A mismatching file is removed, so that it cannot pass a later run's
/// "already downloaded" check; the error names `name`.
pub fn check_sha256(path: &Path, name: &str, expected: Option<&str>) -> Result<String, DataError> {
    let actual = sha256_file(path)?;
    match expected {
        Some(expected) if !expected.eq_ignore_ascii_case(&actual) => {
            let _ = std::fs::remove_file(path);
            Err(DataError::Mismatch {
                file: name.into(),
                what: "sha256",
                expected: expected.into(),
                actual,
            })
        }
        _ => Ok(actual),
    }
}

fn sha256_file(path: &Path) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(io_at(path))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
