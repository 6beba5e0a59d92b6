//! Generic pipeline engine.
