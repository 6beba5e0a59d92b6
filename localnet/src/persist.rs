//! The ledger on disk: one file, `ledger.bcs` = magic ‖ format version (u32
//! LE) ‖ BCS of the ledger. Saving writes a temporary file, fsyncs it, renames
//! it over the old one and fsyncs the directory, so a killed process leaves
//! either the old ledger or the new one, never a torn file.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ledger::{Ledger, LedgerData};
use crate::LedgerError;

/// The file name inside the ledger directory.
pub const LEDGER_FILE: &str = "ledger.bcs";
/// The first bytes of every ledger file.
pub const MAGIC: &[u8; 8] = b"SOMALNET";
/// The file format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Ledger {
    /// Loads the ledger saved in `dir`.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        let path = dir.join(LEDGER_FILE);
        let bytes = fs::read(&path).map_err(io(&path))?;
        let corrupt = |reason: String| LedgerError::Corrupt {
            path: path.clone(),
            reason,
        };
        let (magic, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt("shorter than its header".to_owned()))?;
        if magic != MAGIC {
            return Err(LedgerError::NotALedger { path });
        }
        let (version, body) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("shorter than its header".to_owned()))?;
        let version = u32::from_le_bytes(*version);
        let body = match version {
            FORMAT_VERSION => body.to_vec(),
            // Format 1 ends before `validators`: an empty list (length 0) completes it.
            1 => [body, &[0u8]].concat(),
            found => {
                return Err(LedgerError::UnsupportedVersion {
                    path,
                    found,
                    expected: FORMAT_VERSION,
                })
            }
        };
        let data: LedgerData = bcs::from_bytes(&body).map_err(|e| corrupt(e.to_string()))?;
        let mut ledger = Ledger {
            data,
            owner_index: Default::default(),
        };
        ledger.rebuild_owner_index();
        Ok(ledger)
    }

    /// Saves the ledger into `dir` (created if missing), atomically.
    pub fn save(&self, dir: &Path) -> Result<PathBuf, LedgerError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(LEDGER_FILE);
        let tmp = dir.join(format!("{LEDGER_FILE}.tmp"));
        let body = bcs::to_bytes(&self.data)?;
        {
            let mut file = File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(MAGIC).map_err(io(&tmp))?;
            file.write_all(&FORMAT_VERSION.to_le_bytes())
                .map_err(io(&tmp))?;
            file.write_all(&body).map_err(io(&tmp))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        // The rename is durable once the directory entry is.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(path)
    }
}
