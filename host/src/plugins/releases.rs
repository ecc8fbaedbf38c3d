//! The `releases` import (added in `bosun:plugin@0.1.1`): a project's
//! release layout, for the stock `deploy` and `rollback`. The backend is
//! `backends::Releases`; a project without the layout gets [`NoReleases`].

use async_trait::async_trait;

use super::bindings::bosun::plugin::releases::Host;
use super::bindings::{CallError, Release};
use super::state::RunState;

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

impl Host for RunState {
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
