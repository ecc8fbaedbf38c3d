//! Changing a running bosun: a reload applies the config file as it is
//! now; an upgrade re-executes the binary now at bosun's path in the same
//! pid, keeping every process. SIGHUP, `POST /v1/reload` and `bosun
//! reload` (SIGUSR2, `POST /v1/upgrade` and `bosun upgrade`) all send the
//! same request through a [`Control`] handle to the one task that owns the
//! running state (see `daemon`), so they never overlap each other or a
//! stop, and each answer says what that request did.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::plugins::PluginChanges;
use crate::supervisor::ProcessChanges;

/// Which keys a reload added, removed or changed, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyChanges {
    /// Keys new in the config.
    pub added: Vec<String>,
    /// Keys gone from the config; their next request gets 401 and their
    /// open waits and streams end.
    pub removed: Vec<String>,
    /// Keys whose hash, scope or role changed; their open waits and
    /// streams end.
    pub changed: Vec<String>,
    /// Projects whose project key (`key_hash`) changed; what was opened
    /// on them ends.
    pub project_keys: Vec<String>,
}

/// Which projects a reload added, removed or restarted whole.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProjectChanges {
    /// Projects new in the config: set up, cloned if configured, started.
    pub added: Vec<String>,
    /// Projects gone from the config: processes stopped, queued jobs
    /// cancelled, the running job given `shutdown_grace`.
    pub removed: Vec<String>,
    /// Projects whose dir, confinement, limits or merged log changed:
    /// every process restarted in a jail set up anew, queued jobs
    /// cancelled.
    pub restarted: Vec<String>,
}

/// What one reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    /// Whether anything changed at all.
    pub changed: bool,
    /// Projects added, removed and restarted whole.
    pub projects: ProjectChanges,
    /// Process instances added, removed and restarted, as
    /// `project/<name>-<instance>`.
    pub processes: ProcessChanges,
    /// Actions added, removed and replaced, as `project/action`.
    pub plugins: PluginChanges,
    /// Keys added, removed and changed.
    pub keys: KeyChanges,
    /// Settings changed in the file that only a restart of bosun applies
    /// (`state_dir`, `server.*`, `jobs.*`, the engine's limits, the global
    /// `confinement`): they keep the values bosun started with.
    pub restart_needed: Vec<String>,
    /// Queued jobs of removed projects, cancelled.
    pub jobs_cancelled: usize,
    /// Running jobs of removed projects that outlasted `shutdown_grace`.
    pub jobs_interrupted: usize,
    /// Plugins in a project's own dir that do not load: their actions are
    /// unavailable until they do.
    pub warnings: Vec<String>,
    /// What could not be applied, and why; the next reload tries again.
    pub failed: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The config (or a plugin it names) is not usable; every problem
    /// found, each naming its file, line and key where it can.
    #[error("the config was not applied, nothing changed:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// bosun is stopping.
    #[error("bosun is shutting down")]
    ShuttingDown,
}

/// What an upgrade is about to do, answered before it does it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UpgradeReport {
    /// The binary bosun re-executes.
    pub binary: String,
    /// Its `--version`.
    pub version: String,
}

/// Why an upgrade did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpgradeError {
    /// The binary at bosun's path is missing or fails `bosun check` on
    /// the config; what it printed.
    #[error("the new binary cannot take over, nothing changed:\n{0}")]
    Check(String),
    /// This bosun does not run as `bosun serve` (it runs inside a test or
    /// another program), so there is no image to replace.
    #[error("only `bosun serve` can upgrade in place")]
    Unsupported,
    /// bosun is stopping.
    #[error("bosun is shutting down")]
    ShuttingDown,
}

/// A request to the control task and where its answer goes.
pub(crate) enum Request {
    Reload(oneshot::Sender<Result<ReloadReport, ReloadError>>),
    Upgrade(oneshot::Sender<Result<UpgradeReport, UpgradeError>>),
    /// Apply one project's Procfile (see `daemon::procfile`).
    Procfile(String, oneshot::Sender<Result<ProcessChanges, String>>),
}

/// Asks the running bosun to reload or upgrade. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    tx: mpsc::Sender<Request>,
}

impl Control {
    pub(crate) fn new(tx: mpsc::Sender<Request>) -> Self {
        Self { tx }
    }

    /// Reload, and return what changed once it is all applied.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Reload(tx))
            .await
            .map_err(|_| ReloadError::ShuttingDown)?;
        rx.await.map_err(|_| ReloadError::ShuttingDown)?
    }

    /// Re-read `project`'s Procfile and apply it to that project alone;
    /// what changed, or why nothing did.
    pub async fn procfile(&self, project: &str) -> Result<ProcessChanges, String> {
        let (tx, rx) = oneshot::channel();
        let gone = || "bosun is shutting down".to_string();
        self.tx
            .send(Request::Procfile(project.to_string(), tx))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Check the binary now at bosun's path and, if it passes, upgrade to
    /// it. Returns once the upgrade has begun (the answer comes from the
    /// image that is about to be replaced).
    pub async fn upgrade(&self) -> Result<UpgradeReport, UpgradeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Upgrade(tx))
            .await
            .map_err(|_| UpgradeError::ShuttingDown)?;
        rx.await.map_err(|_| UpgradeError::ShuttingDown)?
    }
}
