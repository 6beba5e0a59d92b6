//! Generic pipeline engine: the pipeline model and its validation, the DAG, the
//! content-addressed store, the scheduler and run records. It knows nothing of SOMA;
//! domain stages plug in through [`kind::StageKind`].

pub mod app;
pub mod command;
pub mod dag;
pub mod diag;
pub mod duration;
pub mod exec;
pub mod explain;
pub mod hash;
pub mod key;
pub mod kind;
pub mod lease;
pub mod params;
pub mod parsed;
pub mod pipeline;
pub mod process;
pub mod progress;
pub mod record;
pub mod remote;
pub mod report;
pub mod schema;
pub mod store;
pub mod table;
pub mod verify;
pub mod yaml;

pub use kind::{
    CachedOutputs, Curve, InputPort, Inputs, KeyContext, Move, Outcome, Registry, Requirements,
    RunContext, StageKind, WithError,
};
pub use parsed::Parsed;
