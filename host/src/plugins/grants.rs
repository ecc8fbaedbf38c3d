//! What a project grants its plugins: one trait per host import, and the
//! deny-all answer of each for a project that grants nothing.
//!
//! The engine only knows these traits. The server plugs in one backend per
//! project (`supervisor::ProjectHandle`, `backends::Git`, `backends::Commands`,
//! `backends::Releases`), so a plugin can never name another project's
//! process, work tree or program: there is no argument through which it could.
//! - **processes**: the project's own process table.
//! - **git**: the project's work tree, driven by the host's git with the
//!   host's credentials; the plugin gets results, never the credentials.
//! - **commands**: programs from the project's allow-list, run without a
//!   shell; an empty allow-list denies everything.
//! - **releases** (`bosun:plugin@0.1.1`): the project's release layout, for
//!   the stock `deploy` and `rollback`.

use std::time::Duration;

use async_trait::async_trait;

use super::bindings::{
    CallError, Command, Output, ProcessInfo, Release, RepoInfo, UnixSignal, UpdateResult,
};
use super::output::LogSink;

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

/// Git operations on one project's work tree.
#[async_trait]
pub trait GitControl: Send + Sync + 'static {
    /// Describe the work tree.
    async fn info(&self) -> Result<RepoInfo, CallError>;
    /// The full commit id of HEAD: [`GitControl::info`]'s `revision`, at
    /// the cost of one git.
    async fn revision(&self) -> Result<String, CallError>;
    /// Fetch from `remote`, or the current branch's remote.
    async fn fetch(&self, remote: Option<&str>) -> Result<(), CallError>;
    /// Move to `target`, or the current branch's upstream.
    async fn update(&self, target: Option<&str>, force: bool) -> Result<UpdateResult, CallError>;
    /// Hard-reset to `rev`.
    async fn reset(&self, rev: &str) -> Result<(), CallError>;
}

/// The git of a project that has no git work tree configured: every call
/// fails, saying so.
pub struct NoGit;

fn no_git() -> CallError {
    CallError::Failed("this project has no git work tree configured".into())
}

#[async_trait]
impl GitControl for NoGit {
    async fn info(&self) -> Result<RepoInfo, CallError> {
        Err(no_git())
    }
    async fn revision(&self) -> Result<String, CallError> {
        Err(no_git())
    }
    async fn fetch(&self, _remote: Option<&str>) -> Result<(), CallError> {
        Err(no_git())
    }
    async fn update(&self, _target: Option<&str>, _force: bool) -> Result<UpdateResult, CallError> {
        Err(no_git())
    }
    async fn reset(&self, _rev: &str) -> Result<(), CallError> {
        Err(no_git())
    }
}

/// Runs allow-listed programs for one project, streaming their output into
/// the run's log as it happens.
#[async_trait]
pub trait CommandRunner: Send + Sync + 'static {
    /// Run `cmd` to completion.
    async fn run(&self, cmd: Command, log: LogSink) -> Result<Output, CallError>;
}

/// The runner of a project with an empty allow-list: everything is denied.
pub struct NoCommands;

#[async_trait]
impl CommandRunner for NoCommands {
    async fn run(&self, cmd: Command, _log: LogSink) -> Result<Output, CallError> {
        Err(CallError::Denied(format!(
            "`{}` is not in this project's commands allow-list (the list is empty)",
            cmd.program
        )))
    }
}

/// One project's releases.
#[async_trait]
pub trait ReleaseControl: Send + Sync + 'static {
    /// The complete releases, newest first.
    async fn list(&self) -> Result<Vec<Release>, CallError>;
    /// Fetch the upstream; the commit `target` names there.
    async fn resolve(&self, target: Option<&str>) -> Result<String, CallError>;
    /// Make a new (not current) release of `revision`.
    async fn prepare(&self, revision: &str) -> Result<Release, CallError>;
    /// Make `name` current; the release current before.
    async fn activate(&self, name: &str) -> Result<Option<Release>, CallError>;
    /// Delete what is beyond the kept releases; the names deleted.
    async fn prune(&self) -> Result<Vec<String>, CallError>;
    /// Delete one release that is not current.
    async fn remove(&self, name: &str) -> Result<(), CallError>;
}

/// The releases of a project without the release layout: none to list,
/// and every change fails, saying how to turn the layout on.
pub struct NoReleases;

fn no_layout() -> CallError {
    CallError::Failed(
        "this project does not deploy in releases; set `[projects.<p>.deploy] releases = N`".into(),
    )
}

#[async_trait]
impl ReleaseControl for NoReleases {
    async fn list(&self) -> Result<Vec<Release>, CallError> {
        Ok(Vec::new())
    }
    async fn resolve(&self, _target: Option<&str>) -> Result<String, CallError> {
        Err(no_layout())
    }
    async fn prepare(&self, _revision: &str) -> Result<Release, CallError> {
        Err(no_layout())
    }
    async fn activate(&self, _name: &str) -> Result<Option<Release>, CallError> {
        Err(no_layout())
    }
    async fn prune(&self) -> Result<Vec<String>, CallError> {
        Err(no_layout())
    }
    async fn remove(&self, _name: &str) -> Result<(), CallError> {
        Err(no_layout())
    }
}
