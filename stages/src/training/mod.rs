//! Training, distillation and embeddings: documents, seeded sampling, the
//! shared optimisation loop with resumable checkpoints, loss curves, and what the
//! training kinds share as stages (`stage`).

pub mod checkpoint;
pub mod curve;
pub mod documents;
pub mod embedding;
pub mod job;
pub mod objective;
pub mod sampler;
pub mod settings;
pub mod stage;
pub mod trainer;
