//! Group commit: a served ledger's changes are applied in memory at once and
//! made durable together.
//!
//! A handler applies its change under the ledger's lock and appends the
//! change's frame to the log's tail (see `crate::journal`), then waits, without
//! the lock, until the writer says its change is on disk. The writer thread
//! takes whatever the tail holds when it is free: it closes the open checkpoint
//! (so the transactions that arrived together share one), writes the batch with
//! one `fdatasync`, then tells the waiting handlers and the checkpoint
//! subscribers. While it syncs, the next batch gathers: senders never wait on
//! each other's disk writes, only on the one in flight.
//!
//! Every `snapshot_every` changes ([`SNAPSHOT_EVERY`] by default) the writer
//! also takes a snapshot (the ledger's BCS, cut under the lock at a batch
//! boundary), starts the next generation's log, writes the snapshot atomically
//! and removes the old log, so that reopening replays a bounded log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::journal::{self, Change};
use crate::persist;
use crate::{Ledger, LedgerError};

/// Changes between snapshots, by default.
pub const SNAPSHOT_EVERY: u64 = 10_000;

/// How far the log is on disk: changes 1..=`changes` are durable, and
/// checkpoints up to `checkpoint`; `failed` once the log cannot be written.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    pub changes: u64,
    pub checkpoint: u64,
    pub failed: Option<Arc<str>>,
}

/// The log's tail: frames appended and not yet handed to the writer.
struct Tail {
    frames: Vec<u8>,
    /// Changes appended since the server started (the last one's number).
    appended: u64,
    changes_since_snapshot: u64,
    stop: bool,
}

/// The write-ahead log of a served ledger.
pub struct Journal {
    dir: PathBuf,
    snapshot_every: u64,
    tail: Mutex<Tail>,
    work: Condvar,
    durable: watch::Sender<Durable>,
}

impl Journal {
    /// Snapshots `ledger` into `dir` (replacing the logs it was replayed
    /// from) and starts the log that follows it.
    pub fn start(
        dir: &Path,
        ledger: &Ledger,
        snapshot_every: u64,
    ) -> Result<(Self, LogFile), LedgerError> {
        let generation = ledger.save_generation(dir)?;
        let file = LogFile::create(dir, generation)?;
        let checkpoint = ledger.latest_checkpoint().sequence_number;
        let journal = Self {
            dir: dir.to_owned(),
            snapshot_every: snapshot_every.max(1),
            tail: Mutex::new(Tail {
                frames: Vec::new(),
                appended: 0,
                changes_since_snapshot: 0,
                stop: false,
            }),
            work: Condvar::new(),
            durable: watch::Sender::new(Durable {
                checkpoint,
                ..Durable::default()
            }),
        };
        Ok((journal, file))
    }

    fn tail(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a change just applied; call with the ledger's lock held, so the
    /// log's order is the ledger's. Returns the change's number.
    pub fn append(&self, change: &Change) -> Result<u64, LedgerError> {
        let mut tail = self.tail();
        change.frame_into(&mut tail.frames)?;
        tail.appended += 1;
        tail.changes_since_snapshot += 1;
        self.work.notify_one();
        Ok(tail.appended)
    }

    /// Waits until change `number` is on disk.
    pub async fn durable(&self, number: u64) -> Result<(), Arc<str>> {
        let mut watch = self.durable.subscribe();
        let seen = watch
            .wait_for(|d| d.changes >= number || d.failed.is_some())
            .await
            .map_err(|_| Arc::<str>::from("the local network is shutting down"))?;
        match &seen.failed {
            Some(why) if seen.changes < number => Err(why.clone()),
            _ => Ok(()),
        }
    }

    /// Why the log cannot be written, once it cannot.
    pub fn failed(&self) -> Option<Arc<str>> {
        self.durable.borrow().failed.clone()
    }

    /// What is durable, to watch for new checkpoints.
    pub fn watch(&self) -> watch::Receiver<Durable> {
        self.durable.subscribe()
    }

    /// Asks the writer to write what is left and stop.
    pub fn stop(&self) {
        self.tail().stop = true;
        self.work.notify_one();
    }

    /// The writer's loop: until stopped, write each batch, then tell the
    /// waiters. `ledger` is the served ledger whose changes are appended here.
    pub fn write(&self, ledger: &Mutex<Ledger>, mut file: LogFile) {
        loop {
            {
                let mut tail = self.tail();
                while tail.frames.is_empty() && !tail.stop {
                    tail = self.work.wait(tail).unwrap_or_else(|p| p.into_inner());
                }
                if tail.frames.is_empty() {
                    // Stopped with everything written: a change that comes
                    // later is refused, and never reported durable.
                    let stopped: Arc<str> = "the local network has stopped".into();
                    self.durable.send_modify(|d| d.failed = Some(stopped));
                    return;
                }
            }
            let result = self.batch(ledger, &mut file);
            if let Err(e) = result {
                let why: Arc<str> = format!("the ledger's log cannot be written: {e}").into();
                eprintln!("error: {why}; no change is accepted until the network is restarted");
                self.durable.send_modify(|d| d.failed = Some(why));
                return;
            }
        }
    }

    /// One batch: cut it (closing the open checkpoint), write it, report it
    /// durable, and take a snapshot when one is due.
    fn batch(&self, ledger: &Mutex<Ledger>, file: &mut LogFile) -> Result<(), LedgerError> {
        let (frames, changes, checkpoint, snapshot) = {
            let mut ledger = ledger.lock().unwrap_or_else(|p| p.into_inner());
            if ledger.close_checkpoint()?.is_some() {
                self.append(&Change::CloseCheckpoint)?;
            }
            let mut tail = self.tail();
            let snapshot = if tail.changes_since_snapshot >= self.snapshot_every {
                tail.changes_since_snapshot = 0;
                Some(ledger.snapshot()?)
            } else {
                None
            };
            (
                std::mem::take(&mut tail.frames),
                tail.appended,
                ledger.latest_checkpoint().sequence_number,
                snapshot,
            )
        };
        file.append(&frames)?;
        // Changes after the cut go to the next log, which must exist (and be
        // found) before any of them is reported durable.
        let next = match snapshot {
            Some(body) => Some((body, LogFile::create(&self.dir, file.generation + 1)?)),
            None => None,
        };
        self.durable.send_modify(|d| {
            d.changes = changes;
            d.checkpoint = checkpoint;
        });
        if let Some((body, next)) = next {
            *file = next;
            persist::write_snapshot(&self.dir, &body, file.generation)?;
            persist::remove_logs_before(&self.dir, file.generation)?;
        }
        Ok(())
    }
}

/// The log being appended to.
pub struct LogFile {
    file: File,
    path: PathBuf,
    generation: u64,
}

impl LogFile {
    /// Creates the log of `generation` and makes its name durable.
    fn create(dir: &Path, generation: u64) -> Result<Self, LedgerError> {
        let path = journal::log_path(dir, generation);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(persist::io(&path))?;
        persist::sync_dir(dir)?;
        Ok(Self {
            file,
            path,
            generation,
        })
    }

    fn append(&mut self, frames: &[u8]) -> Result<(), LedgerError> {
        self.file
            .write_all(frames)
            .and_then(|()| self.file.sync_data())
            .map_err(persist::io(&self.path))
    }
}
