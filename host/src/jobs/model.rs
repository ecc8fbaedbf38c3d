//! A job: one call of one action on one project, from the request that
//! asked for it to its outcome.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::plugins::{FailureKind, RunFailure};

/// Where a job is. `queued` and `running` are the only states a job leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// Why a job did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobError {
    /// A stable word: a run failure kind (`plugin_error`, `timeout`, `trap`,
    /// …), `cancelled`, or `interrupted`.
    pub kind: String,
    /// What happened, in words.
    pub message: String,
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

    /// Record the end of the job: its state, and the result or the error.
    pub fn finish(&mut self, outcome: Result<String, JobError>, state: JobState) {
        self.state = state;
        self.finished_at = Some(now_ms());
        match outcome {
            Ok(result) => self.result = Some(result),
            Err(error) => self.error = Some(error),
        }
    }

    /// Seconds the plugin ran, once it has finished.
    pub fn run_seconds(&self) -> Option<f64> {
        Some(self.finished_at?.saturating_sub(self.started_at?) as f64 / 1000.0)
    }
}

/// The state and error of a failed run.
pub fn failure_outcome(failure: RunFailure) -> (JobState, JobError) {
    let state = match failure.kind {
        FailureKind::Timeout => JobState::TimedOut,
        FailureKind::Cancelled => JobState::Cancelled,
        _ => JobState::Failed,
    };
    let error = JobError {
        kind: failure.kind.to_string(),
        message: failure.message,
    };
    (state, error)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
