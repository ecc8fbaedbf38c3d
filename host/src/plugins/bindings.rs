//! Every `bindgen!` output for the `bosun:plugin` world, in one place.
//!
//! WASI types come from `wasmtime_wasi` rather than being generated again, so
//! the WASI host implementation links against the same types. Imports are
//! async so a host call (a slow git fetch, a readiness wait) yields to tokio,
//! and can be cut off by a run's deadline or cancellation.

#![allow(missing_docs, unsafe_code, unused_qualifications)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "bosun:plugin/action-plugin",
    imports: { default: async },
    exports: { default: async },
    with: { "wasi": wasmtime_wasi::p2::bindings },
});

pub use self::bosun::plugin::commands::{Command, Output};
pub use self::bosun::plugin::git::{RepoInfo, UpdateResult};
pub use self::bosun::plugin::processes::UnixSignal;
pub use self::bosun::plugin::releases::Release;
pub use self::bosun::plugin::types::{Error as CallError, ProcessInfo, ProcessState};
pub use self::exports::bosun::plugin::action::{ActionMeta, ParamSpec};
