//! soma-flow-stages' integration tests, in one test binary: a change relinks once,
//! not once per file.

mod common;
mod data_common;
use soma_flow_test_support::moto;
mod network_fixtures;

mod competitors_url;
mod curve;
mod data_hf;
mod data_local;
mod data_s3;
mod golden;
mod model;
mod network_lifecycle;
mod placement;
mod signer;
mod storage_s3;
mod training;
mod weights;
mod wgpu;
