//! The HTTP API against real servers over real TCP, in one test binary:
//! the surface (routes, keys, errors, the OpenAPI document), jobs, and the
//! front door under hostile load.
//!
//! Run with: cargo test --test api

#[path = "../common/mod.rs"]
mod common;
mod front_door;
mod jobs;
mod surface;
