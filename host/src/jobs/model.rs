//! A job: one call of one action on one project, from the request that
//! asked for it to its outcome.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::plugins::{FailureKind, RunFailure};

/// Where a job is. `queued` and `running` are the only states a job leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Stored, waiting for its project's earlier jobs.
    Queued,
    /// Its plugin is running.
    Running,
    /// The action returned a result.
    Succeeded,
    /// The action failed: its own error, a trap, a memory cap, a broken plugin.
    Failed,
    /// Cancelled by a caller, before or while it ran.
    Cancelled,
    /// It ran out of time.
    TimedOut,
    /// bosun stopped while it ran; it was not finished.
    Interrupted,
}

impl JobState {
    /// Every state, in life-cycle order.
    pub const ALL: [JobState; 7] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::TimedOut,
        Self::Interrupted,
    ];

    /// Whether the job is over.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// The name used in JSON, SQL and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Interrupted => "interrupted",
        }
    }

    /// The state called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of failure ended a job: a run's [`FailureKind`], or
/// `interrupted` (bosun stopped while it ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobErrorKind {
    /// The plugin returned its own error.
    PluginError,
    /// The run's deadline passed.
    Timeout,
    /// Cancelled by a caller, before or while it ran.
    Cancelled,
    /// The plugin tried to use more memory than its cap.
    MemoryLimit,
    /// The plugin trapped.
    Trap,
    /// The plugin does not fit the contract, failed to load, or its
    /// project or action is gone.
    InvalidPlugin,
    /// bosun could not set up the run.
    HostError,
    /// bosun stopped (or a reload took the project away) while it ran.
    Interrupted,
}

impl JobErrorKind {
    /// Every kind.
    pub const ALL: [JobErrorKind; 8] = [
        Self::PluginError,
        Self::Timeout,
        Self::Cancelled,
        Self::MemoryLimit,
        Self::Trap,
        Self::InvalidPlugin,
        Self::HostError,
        Self::Interrupted,
    ];

    /// The name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PluginError => "plugin_error",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::MemoryLimit => "memory_limit",
            Self::Trap => "trap",
            Self::InvalidPlugin => "invalid_plugin",
            Self::HostError => "host_error",
            Self::Interrupted => "interrupted",
        }
    }

    /// The kind called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The state a job ends in with this error.
    pub fn state(self) -> JobState {
        match self {
            Self::Timeout => JobState::TimedOut,
            Self::Cancelled => JobState::Cancelled,
            Self::Interrupted => JobState::Interrupted,
            Self::PluginError
            | Self::MemoryLimit
            | Self::Trap
            | Self::InvalidPlugin
            | Self::HostError => JobState::Failed,
        }
    }
}

impl fmt::Display for JobErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<FailureKind> for JobErrorKind {
    fn from(kind: FailureKind) -> Self {
        match kind {
            FailureKind::Timeout => Self::Timeout,
            FailureKind::Cancelled => Self::Cancelled,
            FailureKind::MemoryLimit => Self::MemoryLimit,
            FailureKind::Trap => Self::Trap,
            FailureKind::PluginError => Self::PluginError,
            FailureKind::InvalidPlugin => Self::InvalidPlugin,
            FailureKind::HostError => Self::HostError,
        }
    }
}

/// Why a job did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobError {
    /// What kind of failure.
    pub kind: JobErrorKind,
    /// What happened, in words.
    pub message: String,
}

impl JobError {
    /// An error of `kind`.
    pub fn new(kind: JobErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<RunFailure> for JobError {
    fn from(failure: RunFailure) -> Self {
        Self::new(failure.kind.into(), failure.message)
    }
}

/// A job's record, as stored and as served.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id: a UUIDv7, so ids sort by creation time and cannot be guessed.
    pub id: String,
    /// The project it acts on.
    pub project: String,
    /// The action it runs.
    pub action: String,
    /// The parameters, in the order given.
    pub params: Vec<(String, String)>,
    /// The name of the key that asked for it.
    pub requested_by: String,
    /// Where it is.
    pub state: JobState,
    /// When it was accepted, in ms since the Unix epoch.
    pub created_at: u64,
    /// When its plugin started.
    pub started_at: Option<u64>,
    /// When it ended.
    pub finished_at: Option<u64>,
    /// The action's result, when it succeeded.
    pub result: Option<String>,
    /// Why it did not succeed.
    pub error: Option<JobError>,
}

impl Job {
    /// A new queued job.
    pub fn new(
        project: &str,
        action: &str,
        params: Vec<(String, String)>,
        requested_by: &str,
    ) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            project: project.to_string(),
            action: action.to_string(),
            params,
            requested_by: requested_by.to_string(),
            state: JobState::Queued,
            created_at: now_ms(),
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
        }
    }

    /// Record the end of the job: the result, or the error, whose kind
    /// decides the state, so the two cannot disagree.
    pub fn finish(&mut self, outcome: Result<String, JobError>) {
        self.finished_at = Some(now_ms());
        match outcome {
            Ok(result) => {
                self.state = JobState::Succeeded;
                self.result = Some(result);
            }
            Err(error) => {
                self.state = error.kind.state();
                self.error = Some(error);
            }
        }
    }

    /// Seconds the plugin ran, once it has finished.
    pub fn run_seconds(&self) -> Option<f64> {
        Some(self.finished_at?.saturating_sub(self.started_at?) as f64 / 1000.0)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run's failure kind keeps its name as a job's error kind, in JSON,
    /// in SQL and in the API's words alike.
    #[test]
    fn a_failure_kind_keeps_its_name_as_a_job_error_kind() {
        for failure in [
            FailureKind::Timeout,
            FailureKind::Cancelled,
            FailureKind::MemoryLimit,
            FailureKind::Trap,
            FailureKind::PluginError,
            FailureKind::InvalidPlugin,
            FailureKind::HostError,
        ] {
            assert_eq!(JobErrorKind::from(failure).as_str(), failure.to_string());
        }
        for kind in JobErrorKind::ALL {
            assert_eq!(JobErrorKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).expect("json"), kind.as_str());
        }
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).expect("json"), state.as_str());
        }
    }
}
