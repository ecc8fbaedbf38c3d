//! The `git` import: the project's work tree, driven by the host's git with
//! the host's credentials. The plugin gets results, never the credentials.

use async_trait::async_trait;

use super::bindings::bosun::plugin::git::Host;
use super::bindings::{CallError, RepoInfo, UpdateResult};
use super::state::RunState;

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

impl Host for RunState {
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
