//! bosun: supervises deployed projects and runs sandboxed WASI action plugins
//! on them. See the README for the picture and `docs/` for the details.

pub mod cli;
pub mod config;
pub mod lines;
pub mod plugins;
pub mod supervisor;
