//! The engine's behaviour, in process, with test kinds: scheduling, cache, locks,
//! records, validation, status, partial runs, verify and gc. No SOMA, no Burn: a change to the engine
//! is tested by relinking this one binary.

mod harness;
use soma_flow_test_support::moto;

mod cache;
mod compare;
mod partial;
mod records;
mod remote;
mod scheduling;
mod status;
mod validation;
