//! SOMA V1 for soma-flow: the model, its canonical weights, the on-chain data
//! contract, SIGReg and the on-chain score; the network (SOMA's real protocol
//! through `soma-flow-chain`, the local network, signers, commit-reveal), crypto
//! and storage; and the stage kinds built on them.
//!
//! Everything here follows `shared/SOMA-V1.md`; where the public Python helpers
//! differ from the chain, the chain's behaviour is implemented.

pub mod backend;
pub mod contract;
pub mod crypto;
pub mod data;
pub mod formats;
pub mod gaps;
#[cfg(feature = "ndarray")]
mod host;
pub mod kinds;
pub mod loss;
pub mod merge;
pub mod model;
pub mod network;
pub mod noise;
pub mod placement;
mod private_file;
pub mod score;
pub mod sigreg;
pub mod storage;
mod string_or_map;
pub mod training;

pub use backend::{BackendChoice, BackendTask};
pub use model::{ArchConfig, SomaModel};
pub use score::{score_models, ModelScore, ScoreReport};
