//! A local SOMA network's ledger: a faithful, deterministic state machine of
//! the SOMA chain at protocol version 5, persisted on disk, with no networking
//! (a gRPC front end wraps it). Section numbers refer to `SOMA-RPC.md`.
//!
//! - [`params`]: `SystemParameters` with the v5 defaults, genesis configuration.
//! - [`state`]: the SystemState: models, staking pools, emission, target state.
//! - [`ledger`]: objects, versions, digests, owner index, genesis, reads.
//! - `inputs`, [`execute`](Ledger::execute): input checks (§6.1), gas and fees (§6.2).
//! - `coins`, `models`, `submission`: the per-transaction rules (§6.3).
//! - [`epoch`]: the epoch boundary (§6.4) and target difficulty (§7.6).
//! - [`targets`], [`knn`]: target generation and routing (§7.1–7.3), listing (§2.6).
//! - [`checkpoint`]: checkpoints (one per durable batch when served); epochs.
//! - `faucet`: coins from a funded account by real PayCoins.
//! - `persist`: `Ledger::open` / `Ledger::save`: a snapshot, atomic, and the
//!   [`journal`] (write-ahead log) replayed after it.
//! - [`server`]: the gRPC/HTTP fullnode, faucet and admin servers over a ledger.
//!
//! Signatures, BCS types, ids and digests all come from `soma_flow_chain`.

use std::path::PathBuf;

use soma_flow_chain::Owner;

pub mod checkpoint;
mod coins;
pub mod effects;
pub mod epoch;
mod execute;
mod f32_bits;
mod faucet;
mod inputs;
pub mod journal;
pub mod ledger;
mod models;
pub mod params;
mod persist;
pub mod server;
pub mod state;
mod store;
mod submission;
pub mod targets;

pub use checkpoint::{Checkpoint, EpochRecord};
pub use effects::{
    BalanceChange, ChangedObject, Effects, ErrorDetails, ErrorKind, ExecutionFailure,
    ExecutionStatus, IdOperation, ObjectState, Rejection, RejectionCode, TransactionFee,
};
pub use faucet::{FaucetReceipt, FAUCET_DEFAULT_AMOUNT};
pub use ledger::{EpochInfo, Ledger, TransactionRecord, SYSTEM_ADDRESS};
pub use params::{GenesisConfig, SystemParameters, PROTOCOL_VERSION};
pub use persist::{FORMAT_VERSION, LEDGER_FILE};
pub use state::{Model, ModelCommit, ModelState, StakingPool, SystemState, TargetState};
pub use targets::{StatusFilter, TargetCursor, TargetEntry, TargetPage, TargetQuery};

/// The wall clock in milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The owner of the SystemState and of every target: `Shared{1}`.
pub const SHARED_OWNER: Owner = Owner::Shared {
    initial_shared_version: 1,
};

/// Errors of the ledger itself (a refused transaction is a [`Rejection`]).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a soma-flow-localnet ledger file", path.display())]
    NotALedger { path: PathBuf },
    #[error("{} has ledger format version {found}; this build reads version {expected}", path.display())]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("encoding failed: {0}")]
    Bcs(#[from] bcs::Error),
    #[error(transparent)]
    Chain(#[from] soma_flow_chain::Error),
    #[error("timestamp {timestamp_ms} is before the current epoch's start {epoch_start_ms}")]
    TimestampBeforeEpochStart {
        timestamp_ms: u64,
        epoch_start_ms: u64,
    },
    #[error("invalid status filter {0:?}: expected open, expired, filled, claimable or claimed")]
    InvalidStatusFilter(String),
    #[error("invalid page token")]
    InvalidPageToken,
    #[error("faucet: {0}")]
    Faucet(String),
}
