//! One action run: a fresh store, the limits, and a typed outcome.
//!
//! Three things can end a run early, and each is enforced twice where a
//! single mechanism would leave a gap:
//! - **Deadline:** the epoch callback interrupts wasm code at the next tick,
//!   and a tokio timeout around the whole call also drops a host call in
//!   flight (epochs cannot interrupt host code, e.g. a long `wait-ready`).
//! - **Cancellation:** checked by the same epoch callback, and raced against
//!   the call with `select!` for the same reason.
//! - **Memory:** the store's limiter (see `limits`).
//!
//! The store is dropped after a cut-off call and never entered again.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use super::bindings::{ActionPlugin, ActionPluginPre, CallError};
use super::engine::{Engine, Plugin};
use super::limits::MemoryLimiter;
use super::output::{LogSink, OutputCapture, Stream};
use super::scope::ProjectScope;
use super::state::RunState;

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

/// Everything a run needs.
pub struct RunRequest {
    /// The project the run acts on, and what it may touch.
    pub scope: ProjectScope,
    /// The action's name, given to the plugin as `BOSUN_ACTION`.
    pub action: String,
    /// The job's id, given to the plugin as `BOSUN_JOB_ID`.
    pub job_id: String,
    /// The caller's parameters, in order.
    pub params: Vec<(String, String)>,
    /// Time, memory and output caps.
    pub limits: RunLimits,
    /// Receives the plugin's output, line by line, as it is written.
    pub log: LogSink,
    /// Cancels the run from outside.
    pub cancel: CancellationToken,
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
    fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Raised from the epoch callback to stop wasm code.
#[derive(Debug, thiserror::Error)]
enum Interrupted {
    #[error("the run's deadline passed")]
    Deadline,
    #[error("the run was cancelled")]
    Cancelled,
}

type Call<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

impl Engine {
    /// Run `plugin`'s `run(params)` against the request's project.
    pub async fn run(&self, plugin: &Plugin, req: RunRequest) -> Result<String, RunFailure> {
        let _slot = tokio::select! {
            slot = self.inner.slots.acquire() => slot.expect("the slot semaphore is never closed"),
            () = req.cancel.cancelled() => {
                return Err(RunFailure::new(FailureKind::Cancelled, "cancelled before it started"));
            }
        };
        let capture = OutputCapture::new(req.log.clone(), req.limits.max_output);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(capture.pipe(Stream::Stdout))
            .stderr(capture.pipe(Stream::Stderr))
            .args(&[&req.action])
            .env("BOSUN_PROJECT", &req.scope.name)
            .env("BOSUN_ACTION", &req.action)
            .env("BOSUN_JOB_ID", &req.job_id)
            .envs(&req.scope.env)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        wasi.preopened_dir(&req.scope.dir, "/", FsPerms::ReadWrite)
            .map_err(|e| {
                RunFailure::new(
                    FailureKind::HostError,
                    format!(
                        "cannot open the project dir {}: {e}",
                        req.scope.dir.display()
                    ),
                )
            })?;
        let state = RunState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(req.limits.memory),
            scope: req.scope,
            log: req.log,
        };
        let params = req.params;
        let outcome = self
            .execute(
                &plugin.pre,
                state,
                req.limits,
                &req.cancel,
                |plugin, store| {
                    Box::pin(
                        async move { plugin.bosun_plugin_action().call_run(store, &params).await },
                    )
                },
            )
            .await;
        capture.finish();
        match outcome? {
            Ok(result) => Ok(cap_result(result, req.limits.max_output)),
            Err(e) => Err(RunFailure::new(
                FailureKind::PluginError,
                describe_call_error(&e),
            )),
        }
    }

    /// Call into a plugin with no project: no preopen, no log, no backends.
    pub(crate) async fn call_detached<R>(
        &self,
        pre: &ActionPluginPre<RunState>,
        limits: RunLimits,
        call: impl for<'a> FnOnce(ActionPlugin, &'a mut Store<RunState>) -> Call<'a, R>,
    ) -> Result<R, RunFailure> {
        let state = RunState {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory),
            scope: ProjectScope::new("", ""),
            log: std::sync::Arc::new(|_, _| {}),
        };
        self.execute(pre, state, limits, &CancellationToken::new(), call)
            .await
    }

    /// Instantiate into a fresh store and make one call, under the limits.
    async fn execute<R>(
        &self,
        pre: &ActionPluginPre<RunState>,
        state: RunState,
        limits: RunLimits,
        cancel: &CancellationToken,
        call: impl for<'a> FnOnce(ActionPlugin, &'a mut Store<RunState>) -> Call<'a, R>,
    ) -> Result<R, RunFailure> {
        let deadline = Instant::now() + limits.timeout;
        let _ticking = self.inner.ticker.hold();
        let mut store = Store::new(&self.inner.wasm, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        let token = cancel.clone();
        store.epoch_deadline_callback(move |_| {
            if token.is_cancelled() {
                return Err(Interrupted::Cancelled.into());
            }
            if Instant::now() >= deadline {
                return Err(Interrupted::Deadline.into());
            }
            // Yield at every tick so a long computation shares its tokio worker.
            Ok(UpdateDeadline::Yield(1))
        });
        let work = async {
            let plugin = pre.instantiate_async(&mut store).await?;
            call(plugin, &mut store).await
        };
        let result = tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), work) => r.unwrap_or_else(|_| Err(Interrupted::Deadline.into())),
            () = cancel.cancelled() => Err(Interrupted::Cancelled.into()),
        };
        result.map_err(|e| classify(&e, store.data().limiter.hit, limits))
    }
}

fn classify(err: &wasmtime::Error, memory_hit: bool, limits: RunLimits) -> RunFailure {
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

fn describe_call_error(e: &CallError) -> String {
    match e {
        CallError::NotFound(m) => format!("not found: {m}"),
        CallError::Denied(m) => format!("denied: {m}"),
        CallError::Failed(m) => format!("failed: {m}"),
        CallError::Timeout(m) => format!("timeout: {m}"),
        CallError::Invalid(m) => format!("invalid: {m}"),
    }
}

/// Keep at most `max` bytes of the result, on a char boundary, noting the cut.
fn cap_result(mut result: String, max: usize) -> String {
    if result.len() <= max {
        return result;
    }
    let cut = result.floor_char_boundary(max);
    let dropped = result.len() - cut;
    result.truncate(cut);
    result.push_str(&format!(
        "\n[bosun] result truncated: {dropped} more bytes dropped"
    ));
    result
}
