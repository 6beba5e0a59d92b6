//! SOMA stage kinds.
pub mod data;
