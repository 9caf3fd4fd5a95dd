//! The one integration test binary (see ripgrep's `tests/tests.rs`).

mod util;

/// The bench harness's HTTP client, shared by path (it is not part of the
/// library).
#[path = "../../src/bin/n4a-bench/client.rs"]
#[allow(dead_code)]
mod client;

mod bucket;
mod cli;
mod compat;
mod crash;
mod export;
mod faults;
mod fixtures;
mod mixed;
mod openapi;
mod properties;
mod query;
mod reader;
mod refresh;
mod regression;
mod serve;
mod store;
mod summary;
mod webapp;
mod writer;
