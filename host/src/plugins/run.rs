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

use tokio_util::sync::CancellationToken;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::bindings::CallError;
use super::engine::{Engine, Plugin};
use super::failure::{FailureKind, RunFailure, RunLimits};
use super::limits::MemoryLimiter;
use super::output::{LogSink, OutputCapture, Stream};
use super::scope::ProjectScope;
use super::state::RunState;

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

impl Engine {
    /// Run `plugin`'s `run(params)` against the request's project.
    pub async fn run(&self, plugin: &Plugin, req: RunRequest) -> Result<String, RunFailure> {
        let _slot = tokio::select! {
            slot = self.slot() => slot,
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
