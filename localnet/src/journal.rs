//! The ledger's write-ahead log: every change a server makes, in order, so that
//! a change is durable after one append instead of a rewrite of the whole
//! ledger.
//!
//! A change is an input of the deterministic state machine (a signed
//! transaction, a faucet request, an epoch change at a given time, the close of
//! a checkpoint), not its result: replaying the log over the snapshot it
//! follows gives the same ledger bit for bit. `ledger.bcs` (see `persist`)
//! names its generation `g`; `ledger-{g}.log` holds the changes made after it,
//! then `ledger-{g+1}.log` if a newer snapshot was being written when the
//! process stopped, and so on.
//!
//! A log is a sequence of frames: payload length (u32 LE) ‖ CRC-32 of the
//! payload (u32 LE) ‖ BCS of a [`Change`]. A frame cut short or failing its
//! checksum at the end of the newest log is a write the process did not finish
//! (and so never acknowledged): reading stops there.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use soma_flow_chain::{SomaAddress, TransactionData, UserSignature};

use crate::effects::{Effects, Rejection};
use crate::faucet::FaucetReceipt;
use crate::persist::io;
use crate::{Ledger, LedgerError};

/// One change to a ledger, as logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// [`Ledger::execute`].
    Execute {
        transaction: Box<TransactionData>,
        signatures: Vec<UserSignature>,
    },
    /// [`Ledger::faucet`].
    Faucet { recipient: SomaAddress, amount: u64 },
    /// [`Ledger::advance_epoch`] at this wall time, or at the epoch's start if
    /// the clock is behind it (see [`Ledger::advance_epoch_now`]).
    AdvanceEpoch { now_ms: u64 },
    /// [`Ledger::close_checkpoint`].
    CloseCheckpoint,
}

/// What applying a [`Change`] gave.
#[derive(Debug)]
pub enum Applied {
    Executed(Effects),
    Faucet(FaucetReceipt),
    Epoch(Effects),
    Checkpoint(Option<u64>),
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl Change {
    /// Whether applying this change could have changed the ledger, so that it
    /// must be logged: everything but a transaction refused before execution.
    /// (Replaying a change that failed fails the same way and changes the same
    /// things: a faucet payment that failed still charged its fee.)
    pub fn must_log(&self, result: &Result<Applied, ChangeError>) -> bool {
        !matches!(
            (self, result),
            (Change::Execute { .. }, Err(ChangeError::Rejected(_)))
        )
    }

    /// Appends this change's frame to `log`.
    pub fn frame_into(&self, log: &mut Vec<u8>) -> Result<(), LedgerError> {
        let payload = bcs::to_bytes(self)?;
        let len = u32::try_from(payload.len()).map_err(|_| {
            LedgerError::Bcs(bcs::Error::Custom("a change of 4 GiB or more".to_owned()))
        })?;
        log.extend_from_slice(&len.to_le_bytes());
        log.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        log.extend_from_slice(&payload);
        Ok(())
    }
}

impl Ledger {
    /// Applies one change: the one place a logged change meets the ledger, for
    /// the server and for replay alike.
    pub fn apply_change(&mut self, change: &Change) -> Result<Applied, ChangeError> {
        Ok(match change {
            Change::Execute {
                transaction,
                signatures,
            } => Applied::Executed(self.execute(transaction, signatures)?),
            Change::Faucet { recipient, amount } => {
                Applied::Faucet(self.faucet(*recipient, *amount)?)
            }
            Change::AdvanceEpoch { now_ms } => Applied::Epoch(self.advance_epoch_at(*now_ms)?),
            Change::CloseCheckpoint => Applied::Checkpoint(self.close_checkpoint()?),
        })
    }
}

/// The log that follows the snapshot of `generation`.
pub fn log_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("ledger-{generation}.log"))
}

/// The generations of the logs in `dir`, in order.
pub(crate) fn log_generations(dir: &Path) -> Result<Vec<u64>, LedgerError> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    let mut found: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_prefix("ledger-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// Replays the logs that follow a snapshot of `generation` onto `ledger`, in
/// order. Only the newest log may end in an unfinished frame.
pub(crate) fn replay(ledger: &mut Ledger, dir: &Path, generation: u64) -> Result<(), LedgerError> {
    let logs: Vec<u64> = log_generations(dir)?
        .into_iter()
        .filter(|&g| g >= generation)
        .collect();
    for (expected, &g) in (generation..).zip(&logs) {
        if g != expected {
            return Err(LedgerError::Corrupt {
                path: log_path(dir, g),
                reason: format!("the log of generation {expected} is missing"),
            });
        }
        replay_one(ledger, &log_path(dir, g), Some(&g) == logs.last())?;
    }
    Ok(())
}

fn replay_one(ledger: &mut Ledger, path: &Path, newest: bool) -> Result<(), LedgerError> {
    let corrupt = |reason: String| LedgerError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = BufReader::new(File::open(path).map_err(io(path))?);
    let mut applied = 0;
    loop {
        let frame = match read_frame(&mut file).map_err(io(path))? {
            Frame::Change(payload) => payload,
            Frame::End => return Ok(()),
            Frame::Torn(_) if newest => return Ok(()),
            Frame::Torn(why) => {
                return Err(corrupt(format!("change {}: {why}", applied + 1)));
            }
        };
        let change: Change =
            bcs::from_bytes(&frame).map_err(|e| corrupt(format!("change {}: {e}", applied + 1)))?;
        // The live run saw the same result; a change's effect, failure included,
        // is what the ledger keeps.
        let _ = ledger.apply_change(&change);
        applied += 1;
    }
}

enum Frame {
    Change(Vec<u8>),
    End,
    /// Cut short or failing its checksum.
    Torn(&'static str),
}

fn read_frame(file: &mut impl Read) -> std::io::Result<Frame> {
    let mut header = Vec::with_capacity(8);
    file.take(8).read_to_end(&mut header)?;
    let (len, crc) = match header[..] {
        [] => return Ok(Frame::End),
        [l0, l1, l2, l3, c0, c1, c2, c3] => (
            u32::from_le_bytes([l0, l1, l2, l3]),
            u32::from_le_bytes([c0, c1, c2, c3]),
        ),
        _ => return Ok(Frame::Torn("its header is cut short")),
    };
    let mut payload = Vec::new();
    let got = file.take(len.into()).read_to_end(&mut payload)?;
    if got < len as usize {
        return Ok(Frame::Torn("it is cut short"));
    }
    if crc32fast::hash(&payload) != crc {
        return Ok(Frame::Torn("its checksum does not match"));
    }
    Ok(Frame::Change(payload))
}
