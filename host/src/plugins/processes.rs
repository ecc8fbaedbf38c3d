//! The `processes` import: a plugin's view of its own project's processes.
//!
//! The engine only knows the [`ProcessControl`] trait; the supervisor
//! implements it once per project, so a plugin can never name another
//! project's process: there is no argument through which it could.

use std::time::Duration;

use async_trait::async_trait;

use super::bindings::bosun::plugin::processes::Host;
use super::bindings::{CallError, ProcessInfo, UnixSignal};
use super::state::RunState;

/// Process control for one project. `name: None` means every process of the
/// project; a name selects every process and instance with that name.
#[async_trait]
pub trait ProcessControl: Send + Sync + 'static {
    /// The project's process table.
    async fn list(&self) -> Vec<ProcessInfo>;
    /// Start the selected processes.
    async fn start(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError>;
    /// Stop the selected processes.
    async fn stop(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError>;
    /// Restart the selected processes.
    async fn restart(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError>;
    /// Signal the process groups of the selected processes.
    async fn signal(
        &self,
        name: Option<&str>,
        signal: UnixSignal,
    ) -> Result<Vec<ProcessInfo>, CallError>;
    /// Wait until the selected processes are ready.
    async fn wait_ready(
        &self,
        name: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<ProcessInfo>, CallError>;
}

/// The process table of a project that supervises no processes: empty, and
/// every name is not found.
pub struct NoProcesses;

impl NoProcesses {
    fn select(name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        match name {
            None => Ok(Vec::new()),
            Some(n) => Err(CallError::NotFound(format!(
                "this project has no process named `{n}`"
            ))),
        }
    }
}

#[async_trait]
impl ProcessControl for NoProcesses {
    async fn list(&self) -> Vec<ProcessInfo> {
        Vec::new()
    }
    async fn start(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        Self::select(name)
    }
    async fn stop(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        Self::select(name)
    }
    async fn restart(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        Self::select(name)
    }
    async fn signal(
        &self,
        name: Option<&str>,
        _signal: UnixSignal,
    ) -> Result<Vec<ProcessInfo>, CallError> {
        Self::select(name)
    }
    async fn wait_ready(
        &self,
        name: Option<&str>,
        _timeout: Duration,
    ) -> Result<Vec<ProcessInfo>, CallError> {
        Self::select(name)
    }
}

impl Host for RunState {
    async fn list(&mut self) -> Vec<ProcessInfo> {
        self.scope.processes.list().await
    }
    async fn start(&mut self, name: Option<String>) -> Result<Vec<ProcessInfo>, CallError> {
        self.scope.processes.start(name.as_deref()).await
    }
    async fn stop(&mut self, name: Option<String>) -> Result<Vec<ProcessInfo>, CallError> {
        self.scope.processes.stop(name.as_deref()).await
    }
    async fn restart(&mut self, name: Option<String>) -> Result<Vec<ProcessInfo>, CallError> {
        self.scope.processes.restart(name.as_deref()).await
    }
    async fn signal(
        &mut self,
        name: Option<String>,
        sig: UnixSignal,
    ) -> Result<Vec<ProcessInfo>, CallError> {
        self.scope.processes.signal(name.as_deref(), sig).await
    }
    async fn wait_ready(
        &mut self,
        name: Option<String>,
        timeout_ms: u64,
    ) -> Result<Vec<ProcessInfo>, CallError> {
        self.scope
            .processes
            .wait_ready(name.as_deref(), Duration::from_millis(timeout_ms))
            .await
    }
}
