//! What a run may use and how it can fail: plain values shared by the
//! engine (which enforces them) and the run (which reports them), kept
//! apart from both so neither has to import the other.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use wasmtime_wasi::I32Exit;

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// Wall-clock time, from when the run gets an execution slot.
    pub timeout: Duration,
    /// Bytes of all the instance's memories together.
    pub memory: usize,
    /// Bytes of stdout + stderr passed to the log, and of the result kept.
    pub max_output: usize,
}

/// Why a run did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The run's deadline passed.
    Timeout,
    /// The run was cancelled from outside.
    Cancelled,
    /// The plugin tried to use more memory than its cap.
    MemoryLimit,
    /// The plugin trapped (a panic, `unreachable`, an out-of-bounds access…).
    Trap,
    /// The plugin returned its own error.
    PluginError,
    /// The plugin does not fit the contract (reported at load).
    InvalidPlugin,
    /// bosun could not set up the run (e.g. the project dir is gone).
    HostError,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::MemoryLimit => "memory_limit",
            Self::Trap => "trap",
            Self::PluginError => "plugin_error",
            Self::InvalidPlugin => "invalid_plugin",
            Self::HostError => "host_error",
        })
    }
}

/// A failed run: its kind and a message meant for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{kind}: {message}")]
pub struct RunFailure {
    /// The kind of failure.
    pub kind: FailureKind,
    /// What happened, in words.
    pub message: String,
}

impl RunFailure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Raised from the epoch callback to stop wasm code.
#[derive(Debug, thiserror::Error)]
pub(super) enum Interrupted {
    #[error("the run's deadline passed")]
    Deadline,
    #[error("the run was cancelled")]
    Cancelled,
}

/// Name what ended a call early: the deadline, a cancellation, the memory
/// cap, or a trap.
pub(super) fn classify(err: &wasmtime::Error, memory_hit: bool, limits: RunLimits) -> RunFailure {
    match err.downcast_ref::<Interrupted>() {
        Some(Interrupted::Deadline) => {
            return RunFailure::new(
                FailureKind::Timeout,
                format!("did not finish within {:?}", limits.timeout),
            );
        }
        Some(Interrupted::Cancelled) => {
            return RunFailure::new(FailureKind::Cancelled, "cancelled while running");
        }
        None => {}
    }
    if memory_hit {
        return RunFailure::new(
            FailureKind::MemoryLimit,
            format!(
                "tried to use more than its memory cap of {} bytes",
                limits.memory
            ),
        );
    }
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return RunFailure::new(
            FailureKind::Trap,
            format!(
                "the plugin called exit({}) instead of returning a result",
                exit.0
            ),
        );
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        return RunFailure::new(FailureKind::Trap, trap.to_string());
    }
    RunFailure::new(FailureKind::Trap, format!("{err:#}"))
}
