//! The `soma.rpc` protobuf messages of SOMA-RPC.md §2, hand-written with
//! `#[derive(prost::Message)]` (no protoc, no build script).
//!
//! Field numbers are exactly those of §2. Every scalar is proto3 `optional`
//! (explicit presence): the server rejects absent fields, so set `Some(0)` for a
//! zero value. Nested messages that §2 names without giving their fields are
//! carried as opaque `bytes` (the same wire type as a message), so their field
//! numbers and contents survive a decode/encode round trip.

mod common;
pub mod convert;
mod execution;
mod ledger;
mod state;
mod subscription;
mod system_state;
mod transaction;

pub use common::*;
pub use execution::*;
pub use ledger::*;
pub use state::*;
pub use subscription::*;
pub use system_state::*;
pub use transaction::*;
