//! The one integration test binary (see ripgrep's `tests/tests.rs`).

mod util;

mod cli;
mod compat;
mod crash;
mod faults;
mod fixtures;
mod properties;
mod query;
mod reader;
mod refresh;
mod regression;
mod serve;
mod summary;
mod writer;
