//! SOMA V1 building blocks for soma-flow: the model, its canonical weights, the
//! on-chain data contract, the SIGReg regulariser and the on-chain score.
//!
//! Everything here follows `shared/SOMA-V1.md`; where the public Python helpers
//! differ from the chain, the chain's behaviour is implemented.

pub mod backend;
pub mod contract;
pub mod kinds;
pub mod loss;
pub mod model;
pub mod noise;
pub mod score;
pub mod sigreg;

pub use backend::{BackendChoice, BackendTask};
pub use model::{ArchConfig, SomaModel};
pub use score::{score_models, ModelScore, ScoreReport};
