//! Checkpoints and epochs: what the API needs to answer "is transaction X
//! final, and in which checkpoint" and `GetEpoch` for past epochs.
//!
//! A local network has no consensus: every executed transaction (failed ones
//! included, §9) goes into the open checkpoint, which a server closes with each
//! durable write (the transactions that arrived together share it), and an
//! epoch change gets one of its own. The checkpoint digest is
//! this crate's own (SOMA's `CheckpointSummary` BCS is not documented):
//! `Blake2b-256("CheckpointSummary::" ‖ BCS(summary fields))`.

use serde::{Deserialize, Serialize};
use soma_flow_chain::{blake2b256, Digest, TransactionDigest};

use crate::state::SystemState;

/// One checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub sequence_number: u64,
    pub digest: Digest,
    pub previous_digest: Option<Digest>,
    pub epoch: u64,
    pub timestamp_ms: u64,
    /// Transactions so far, this checkpoint's included.
    pub total_network_transactions: u64,
    pub transactions: Vec<TransactionDigest>,
    /// The last checkpoint of its epoch (it holds the epoch change).
    pub end_of_epoch: bool,
}

#[derive(Serialize)]
struct Summary<'a> {
    epoch: u64,
    sequence_number: u64,
    total_network_transactions: u64,
    transactions: &'a [TransactionDigest],
    previous_digest: Option<Digest>,
    timestamp_ms: u64,
    end_of_epoch: bool,
}

impl Checkpoint {
    pub(crate) fn new(
        sequence_number: u64,
        epoch: u64,
        timestamp_ms: u64,
        transactions: Vec<TransactionDigest>,
        previous_digest: Option<Digest>,
        total_network_transactions: u64,
        end_of_epoch: bool,
    ) -> Result<Self, bcs::Error> {
        let summary = bcs::to_bytes(&Summary {
            epoch,
            sequence_number,
            total_network_transactions,
            transactions: &transactions,
            previous_digest,
            timestamp_ms,
            end_of_epoch,
        })?;
        Ok(Self {
            sequence_number,
            digest: Digest(blake2b256(&[b"CheckpointSummary::", &summary])),
            previous_digest,
            epoch,
            timestamp_ms,
            total_network_transactions,
            transactions,
            end_of_epoch,
        })
    }
}

/// One epoch: its time span, checkpoints and the system state at its start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u64,
    pub start_timestamp_ms: u64,
    /// `None` while current.
    pub end_timestamp_ms: Option<u64>,
    pub first_checkpoint: u64,
    /// `None` while current.
    pub last_checkpoint: Option<u64>,
    /// The system state snapshot taken at the epoch's start.
    pub system_state: SystemState,
}
