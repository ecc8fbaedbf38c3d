//! The guest side of bosun's plugin contract.
//!
//! A bosun action is a WASI component that exports `bosun:plugin/action`.
//! This crate turns that into a short file: implement [`Action`], call
//! [`export_action!`], build for `wasm32-wasip2` as a `cdylib`.
//!
//! ```no_run
//! use bosun_plugin_sdk::{Action, Error, Param, Params, export_action};
//!
//! struct Hello;
//! impl Action for Hello {
//!     const NAME: &'static str = "hello";
//!     const SUMMARY: &'static str = "Greets someone";
//!     const PARAMS: &'static [Param] = &[Param::optional("who", "Who to greet", "world")];
//!     fn run(params: Params) -> Result<String, Error> {
//!         let who = params.str("who")?;
//!         println!("greeting {who}"); // stdout is the job log
//!         Ok(format!("hello, {who}"))
//!     }
//! }
//! export_action!(Hello);
//! ```
//!
//! Parameters are checked against [`Action::PARAMS`] before `run` is called:
//! unknown or repeated names and missing required ones fail with
//! [`Error::Invalid`], so `run` only ever sees declared names, with defaults
//! filled in.

mod json;
mod params;
pub mod rollout;

pub use json::{process_json, processes_json, release_json, releases_json};
pub use params::{Param, Params};

/// The generated bindings of the `action-plugin` world: what
/// [`export_action!`] expands to reaches them here. Hidden from the docs;
/// the types a plugin uses are re-exported at the crate's root.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "bosun:plugin/action-plugin",
        pub_export_macro: true,
        default_bindings_module: "bosun_plugin_sdk::bindings",
        generate_all,
    });
}

pub use bindings::bosun::plugin::types::{Error, ProcessInfo, ProcessState};
pub use bindings::bosun::plugin::{commands, git, processes, releases};

use bindings::exports::bosun::plugin::action::{ActionMeta, ParamSpec};

/// A file or other I/O error, so a plugin can use `?` on `std::fs`:
/// `NotFound` and `PermissionDenied` keep their kinds (`not_found`,
/// `denied`), a timeout is `timeout`, anything else `failed`.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(e.to_string()),
            std::io::ErrorKind::PermissionDenied => Error::Denied(e.to_string()),
            std::io::ErrorKind::TimedOut => Error::Timeout(e.to_string()),
            _ => Error::Failed(e.to_string()),
        }
    }
}

/// An action a plugin exports.
pub trait Action {
    /// The action's name, as callers know it (e.g. `migrate`).
    const NAME: &'static str;
    /// One line on what the action does.
    const SUMMARY: &'static str;
    /// The parameters it accepts.
    const PARAMS: &'static [Param] = &[];

    /// Run the action. The returned text is the job's result; anything printed
    /// to stdout or stderr becomes the job log.
    fn run(params: Params) -> Result<String, Error>;
}

/// `Error::Failed` with a message: the call was valid but did not succeed.
pub fn failed(message: impl std::fmt::Display) -> Error {
    Error::Failed(message.to_string())
}

/// `Error::Invalid` with a message: the caller's input was malformed.
pub fn invalid(message: impl std::fmt::Display) -> Error {
    Error::Invalid(message.to_string())
}

/// `Error::NotFound` with a message: the named thing does not exist.
pub fn not_found(message: impl std::fmt::Display) -> Error {
    Error::NotFound(message.to_string())
}

/// `Error::Denied` with a message: the request is outside what is allowed.
pub fn denied(message: impl std::fmt::Display) -> Error {
    Error::Denied(message.to_string())
}

/// `Error::Timeout` with a message: something ran out of time.
pub fn timeout(message: impl std::fmt::Display) -> Error {
    Error::Timeout(message.to_string())
}

/// `kind: message` for an error, e.g. `not-found: no process named web`.
pub fn error_text(e: &Error) -> String {
    let (kind, message) = match e {
        Error::NotFound(m) => ("not-found", m),
        Error::Denied(m) => ("denied", m),
        Error::Failed(m) => ("failed", m),
        Error::Timeout(m) => ("timeout", m),
        Error::Invalid(m) => ("invalid", m),
    };
    format!("{kind}: {message}")
}

/// Describe `A` in the WIT shape. Used by [`export_action!`].
#[doc(hidden)]
pub fn describe<A: Action>() -> ActionMeta {
    ActionMeta {
        name: A::NAME.to_string(),
        summary: A::SUMMARY.to_string(),
        params: A::PARAMS
            .iter()
            .map(|p| ParamSpec {
                name: p.name.to_string(),
                summary: p.summary.to_string(),
                required: p.required,
                default: p.default.map(str::to_string),
            })
            .collect(),
    }
}

/// Check the raw params against `A::PARAMS`, then run `A`. Used by [`export_action!`].
#[doc(hidden)]
pub fn run<A: Action>(raw: Vec<(String, String)>) -> Result<String, Error> {
    A::run(Params::check(A::PARAMS, raw)?)
}

/// Export a type implementing [`Action`] as this component's `action`.
#[macro_export]
macro_rules! export_action {
    ($action:ty) => {
        struct __BosunExportedAction;

        impl $crate::bindings::exports::bosun::plugin::action::Guest for __BosunExportedAction {
            fn describe() -> $crate::bindings::exports::bosun::plugin::action::ActionMeta {
                $crate::describe::<$action>()
            }

            fn run(params: ::std::vec::Vec<(::std::string::String, ::std::string::String)>)
                -> ::std::result::Result<::std::string::String, $crate::Error> {
                $crate::run::<$action>(params)
            }
        }

        $crate::bindings::export!(__BosunExportedAction with_types_in $crate::bindings);
    };
}
