//! The ledger on disk: a snapshot, `ledger.bcs` = magic ‖ format version (u32
//! LE) ‖ generation (u64 LE) ‖ BCS of the ledger, and the write-ahead logs of
//! the changes made after it (see `journal`). A snapshot is written to a
//! temporary file, fsynced, renamed over the old one and its directory fsynced,
//! so a killed process leaves either the old snapshot or the new one, never a
//! torn file; the logs it replaces are removed only after.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::journal;
use crate::ledger::{Ledger, LedgerData};
use crate::LedgerError;

/// The snapshot's file name inside the ledger directory.
pub const LEDGER_FILE: &str = "ledger.bcs";
/// The first bytes of every ledger file.
pub const MAGIC: &[u8; 8] = b"SOMALNET";
/// The file format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 3;

/// An I/O error on `path`, as a ledger error.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Ledger {
    /// Loads the ledger saved in `dir`: its snapshot, then the changes logged
    /// after it.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        let path = dir.join(LEDGER_FILE);
        let bytes = fs::read(&path).map_err(io(&path))?;
        let (generation, data) = decode(&path, &bytes)?;
        let mut ledger = Ledger {
            data,
            owner_index: Default::default(),
        };
        ledger.rebuild_owner_index();
        journal::replay(&mut ledger, dir, generation)?;
        Ok(ledger)
    }

    /// Saves the ledger into `dir` (created if missing) as a new snapshot,
    /// atomically, and removes the logs it replaces. Returns the snapshot's path.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, LedgerError> {
        self.save_generation(dir)?;
        Ok(dir.join(LEDGER_FILE))
    }

    /// [`Ledger::save`], returning the new snapshot's generation.
    pub(crate) fn save_generation(&self, dir: &Path) -> Result<u64, LedgerError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let generation = next_generation(dir)?;
        write_snapshot(dir, &self.snapshot()?, generation)?;
        remove_logs_before(dir, generation)?;
        Ok(generation)
    }

    /// The BCS of everything persisted, as a snapshot holds it.
    pub(crate) fn snapshot(&self) -> Result<Vec<u8>, LedgerError> {
        Ok(bcs::to_bytes(&self.data)?)
    }
}

/// A snapshot file's generation and ledger.
fn decode(path: &Path, bytes: &[u8]) -> Result<(u64, LedgerData), LedgerError> {
    let corrupt = |reason: String| LedgerError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let (generation, body) = header(path, bytes)?;
    let body = match body {
        Body::Current(body) => std::borrow::Cow::Borrowed(body),
        // Format 1 ends before `validators`, format 2 before `pending`: empty
        // lists (length 0) complete them.
        Body::Old(body, missing) => std::borrow::Cow::Owned([body, &vec![0u8; missing]].concat()),
    };
    let data = bcs::from_bytes(&body).map_err(|e| corrupt(e.to_string()))?;
    Ok((generation, data))
}

enum Body<'a> {
    Current(&'a [u8]),
    /// A body of an older format and how many empty lists it lacks at its end.
    Old(&'a [u8], usize),
}

/// Checks a snapshot's magic and version; its generation (0 before format 3)
/// and body.
fn header<'a>(path: &Path, bytes: &'a [u8]) -> Result<(u64, Body<'a>), LedgerError> {
    let short = || LedgerError::Corrupt {
        path: path.to_path_buf(),
        reason: "shorter than its header".to_owned(),
    };
    let (magic, rest) = bytes.split_first_chunk::<8>().ok_or_else(short)?;
    if magic != MAGIC {
        return Err(LedgerError::NotALedger {
            path: path.to_path_buf(),
        });
    }
    let (version, rest) = rest.split_first_chunk::<4>().ok_or_else(short)?;
    match u32::from_le_bytes(*version) {
        FORMAT_VERSION => {
            let (generation, body) = rest.split_first_chunk::<8>().ok_or_else(short)?;
            Ok((u64::from_le_bytes(*generation), Body::Current(body)))
        }
        2 => Ok((0, Body::Old(rest, 1))),
        1 => Ok((0, Body::Old(rest, 2))),
        found => Err(LedgerError::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            expected: FORMAT_VERSION,
        }),
    }
}

/// One past the newest generation in `dir` (its snapshot's or a log's).
fn next_generation(dir: &Path) -> Result<u64, LedgerError> {
    let path = dir.join(LEDGER_FILE);
    let snapshot = match File::open(&path) {
        Ok(file) => {
            let mut head = Vec::with_capacity(20);
            file.take(20).read_to_end(&mut head).map_err(io(&path))?;
            header(&path, &head).map(|(g, _)| g).unwrap_or(0)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io(&path)(e)),
    };
    let logs = journal::log_generations(dir)?.last().copied().unwrap_or(0);
    Ok(snapshot.max(logs) + 1)
}

/// Writes `body` as the snapshot of `generation`, atomically and durably.
pub(crate) fn write_snapshot(dir: &Path, body: &[u8], generation: u64) -> Result<(), LedgerError> {
    let path = dir.join(LEDGER_FILE);
    let tmp = dir.join(format!("{LEDGER_FILE}.tmp"));
    {
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(MAGIC).map_err(io(&tmp))?;
        file.write_all(&FORMAT_VERSION.to_le_bytes())
            .map_err(io(&tmp))?;
        file.write_all(&generation.to_le_bytes())
            .map_err(io(&tmp))?;
        file.write_all(body).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

/// Makes the directory's entries (a rename, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Removes the logs a snapshot of `generation` replaces.
pub(crate) fn remove_logs_before(dir: &Path, generation: u64) -> Result<(), LedgerError> {
    for g in journal::log_generations(dir)? {
        if g < generation {
            let path = journal::log_path(dir, g);
            fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}
