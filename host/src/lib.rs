//! bosun: supervises deployed projects and runs sandboxed WASI action plugins
//! on them. See the README for the picture and `docs/` for the details.

pub mod api;
pub mod backends;
pub mod cli;
pub mod config;
pub mod confine;
pub mod control;
pub mod daemon;
pub mod hooks;
pub mod import;
pub mod jobs;
#[cfg(test)]
mod layering;
pub mod lines;
pub mod metrics;
pub mod plugins;
pub mod project;
pub mod stock;
pub mod supervisor;
