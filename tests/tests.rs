//! soma-flow's integration tests (the product binary), in one test binary: a change
//! relinks once, not once per file.

mod backend_cli;
mod cluster;
mod common;
mod earn_cli;
mod engine_run;
mod engine_validate;
mod hostile_store;
mod localnet_cli;
use soma_flow_test_support::moto;
mod network_stages;
mod pipelines;
mod python_env;
mod remote_cli;
mod schema;
