//! The host side of each import: the glue from the generated `Host` traits
//! to the run's [`ProjectScope`](super::ProjectScope). Each call goes to the
//! backend the project granted (see `grants`) and nowhere else.

use std::time::Duration;

use super::bindings::bosun::plugin::{commands, git, processes, releases, types};
use super::bindings::{
    CallError, Command, Output, ProcessInfo, Release, RepoInfo, UnixSignal, UpdateResult,
};
use super::state::RunState;

impl types::Host for RunState {}

impl processes::Host for RunState {
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

impl git::Host for RunState {
    async fn info(&mut self) -> Result<RepoInfo, CallError> {
        self.scope.git.info().await
    }
    async fn fetch(&mut self, remote: Option<String>) -> Result<(), CallError> {
        self.scope.git.fetch(remote.as_deref()).await
    }
    async fn update(
        &mut self,
        target: Option<String>,
        force: bool,
    ) -> Result<UpdateResult, CallError> {
        self.scope.git.update(target.as_deref(), force).await
    }
    async fn reset(&mut self, rev: String) -> Result<(), CallError> {
        self.scope.git.reset(&rev).await
    }
}

impl commands::Host for RunState {
    async fn run(&mut self, cmd: Command) -> Result<Output, CallError> {
        self.scope.commands.run(cmd, self.log.clone()).await
    }
}

impl releases::Host for RunState {
    async fn list(&mut self) -> Result<Vec<Release>, CallError> {
        self.scope.releases.list().await
    }
    async fn resolve(&mut self, target: Option<String>) -> Result<String, CallError> {
        self.scope.releases.resolve(target.as_deref()).await
    }
    async fn prepare(&mut self, revision: String) -> Result<Release, CallError> {
        self.scope.releases.prepare(&revision).await
    }
    async fn activate(&mut self, name: String) -> Result<Option<Release>, CallError> {
        self.scope.releases.activate(&name).await
    }
    async fn prune(&mut self) -> Result<Vec<String>, CallError> {
        self.scope.releases.prune().await
    }
    async fn remove(&mut self, name: String) -> Result<(), CallError> {
        self.scope.releases.remove(&name).await
    }
}
