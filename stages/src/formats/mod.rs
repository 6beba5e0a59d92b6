//! The on-disk formats that pass between stages, one module each with its reader
//! and writer, so that a kind reads another kind's output through a library module,
//! never through that kind's file.
//!
//! - [`competitors`]: a fetch-competitors directory (`models.json` and the weights),
//!   and the "a model file or a fetch-competitors directory" inputs.
//! - [`embedding`]: embeddings (`embedding.json` + `embedding.f32`, or a JSON array or
//!   little-endian f32 file given by hand).
//! - [`scores`]: the `scores` of `score`, and the table people read.
//! - [`gaps`]: the `table` and `summary` of `gaps`.
//!
//! Commit records are `network::lifecycle::CommitRecord` (`read`, `write`).

pub mod competitors;
pub mod embedding;
pub mod gaps;
pub mod scores;

/// An `f32` as the `f64` people read it (`1.05`, not `1.0499999523162842`): its
/// shortest decimal form, for JSON built by hand (serde writes `f32` fields so already).
pub fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}
