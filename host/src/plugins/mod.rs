//! The sandboxed action engine.
//!
//! Every action is a WASI component implementing `bosun:plugin/action-plugin`
//! (see `wit/`). The [`Engine`] compiles and links each plugin once at load
//! ([`Engine::load`]) and gives every run a fresh store ([`Engine::run`]):
//! one preopen (the project dir, at `/`), capped time, memory and output, and
//! host imports scoped to one project through [`ProjectScope`]. A hostile or
//! broken plugin fails its own run with a [`FailureKind`]; the engine and
//! every other run carry on.

pub mod bindings;
mod cache;
pub mod catalog;
pub mod compile;
mod engine;
mod failure;
pub mod grants;
mod imports;
mod limits;
mod output;
mod params;
mod registry;
mod run;
mod scope;
mod state;
mod ticker;
pub mod uploads;

pub use cache::Origin;
pub use catalog::{Catalog, CatalogError, InService};
pub use compile::Compiler;
pub use engine::{Allocation, Engine, EngineConfig, EngineError, LoadError, Plugin};
pub use failure::{FailureKind, RunFailure, RunLimits};
pub use output::{LogSink, Stream};
pub use params::{Given, ParamsError, check_params};
pub use registry::{ActionRegistry, Actions, LoadedAction, PluginChanges, Source};
pub use run::RunRequest;
pub use scope::ProjectScope;
pub use ticker::TICK;
pub use uploads::{History, UploadStore, Version};
