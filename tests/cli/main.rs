//! The command line as the real binary, in one test binary: the client
//! subcommands against a real server, and `bosun check`'s exact errors.
//!
//! Run with: cargo test --test cli

mod check_errors;
mod client;
#[path = "../common/mod.rs"]
mod common;
