//! The one integration test binary (see ripgrep's `tests/tests.rs`).

mod util;

mod compat;
mod writer;
mod properties;
mod crash;
mod cli;
