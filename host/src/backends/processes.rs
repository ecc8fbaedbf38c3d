//! The `processes` import's backend: a project's [`ProjectHandle`], with
//! its statuses, signals and errors put in the WIT's shapes. The
//! supervisor knows nothing of the plugin contract; this is the one place
//! the two meet.

use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::Signal;

use crate::plugins::bindings::{CallError, ProcessInfo, ProcessState, UnixSignal};
use crate::plugins::grants::ProcessControl;
use crate::supervisor::{ProjectHandle, State, Status, SupervisorError};

fn call_error(e: SupervisorError) -> CallError {
    match e {
        SupervisorError::NotFound(_) => CallError::NotFound(e.to_string()),
        SupervisorError::Failed(m) => CallError::Failed(m),
        SupervisorError::Timeout(m) => CallError::Timeout(m),
    }
}

fn infos(r: Result<Vec<Status>, SupervisorError>) -> Result<Vec<ProcessInfo>, CallError> {
    r.map(|v| v.iter().map(info).collect()).map_err(call_error)
}

fn to_signal(s: UnixSignal) -> Signal {
    match s {
        UnixSignal::Hup => Signal::SIGHUP,
        UnixSignal::Int => Signal::SIGINT,
        UnixSignal::Quit => Signal::SIGQUIT,
        UnixSignal::Kill => Signal::SIGKILL,
        UnixSignal::Usr1 => Signal::SIGUSR1,
        UnixSignal::Usr2 => Signal::SIGUSR2,
        UnixSignal::Term => Signal::SIGTERM,
    }
}

#[async_trait]
impl ProcessControl for ProjectHandle {
    async fn list(&self) -> Vec<ProcessInfo> {
        ProjectHandle::list(self).iter().map(info).collect()
    }
    async fn start(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        infos(ProjectHandle::start(self, name).await)
    }
    async fn stop(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        infos(ProjectHandle::stop(self, name).await)
    }
    async fn restart(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        infos(ProjectHandle::restart(self, name).await)
    }
    async fn signal(
        &self,
        name: Option<&str>,
        signal: UnixSignal,
    ) -> Result<Vec<ProcessInfo>, CallError> {
        infos(ProjectHandle::signal(self, name, to_signal(signal)).await)
    }
    async fn wait_ready(
        &self,
        name: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<ProcessInfo>, CallError> {
        infos(ProjectHandle::wait_ready(self, name, timeout).await)
    }
}

/// A status in the WIT shape.
fn info(status: &Status) -> ProcessInfo {
    ProcessInfo {
        name: status.name.clone(),
        instance: status.instance,
        pid: status.pid,
        state: match status.state {
            State::Stopped => ProcessState::Stopped,
            State::Starting => ProcessState::Starting,
            State::Running => ProcessState::Running,
            State::Backoff => ProcessState::Backoff,
            State::Stopping => ProcessState::Stopping,
            State::Exited => ProcessState::Exited,
            State::Fatal => ProcessState::Fatal,
        },
        restarts: status.restarts,
        uptime_ms: u64::try_from(status.uptime().as_millis()).unwrap_or(u64::MAX),
        exit_code: status.exit_code,
        exit_signal: status.exit_signal,
        cpu_percent: status.cpu_percent,
        rss_bytes: status.rss_bytes,
    }
}
