//! The observable state of one process instance.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Where a process instance is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not running, and not meant to be.
    Stopped,
    /// About to spawn at boot, or spawned and waiting for its readiness check.
    Starting,
    /// Running (and ready, when a check is configured).
    Running,
    /// Exited unexpectedly; waiting out the restart schedule.
    Backoff,
    /// Stop signal sent; waiting for the group to exit.
    Stopping,
    /// Exited, and the schedule says not to restart it.
    Exited,
    /// Could not be spawned at all; see the status message.
    Fatal,
}

impl State {
    /// Its name, as the API and the JSON say it.
    pub fn name(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Fatal => "fatal",
        }
    }
}

/// One process instance's status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The configured name.
    pub name: String,
    /// The instance index.
    pub instance: u32,
    /// The state.
    pub state: State,
    /// The leader's pid (also the process group id) while it runs.
    pub pid: Option<u32>,
    /// Restarts since bosun started it (automatic and requested).
    pub restarts: u32,
    /// When the current run began.
    #[serde(skip)]
    pub started_at: Option<Instant>,
    /// The last run's exit code, when it exited normally.
    pub exit_code: Option<i32>,
    /// The signal that ended the last run, when one did.
    pub exit_signal: Option<i32>,
    /// Why it is `fatal`, or the last notable event.
    pub message: Option<String>,
    /// CPU use of the whole process group, percent of one core.
    pub cpu_percent: f32,
    /// RSS of the whole process group, in bytes.
    pub rss_bytes: u64,
}

impl Status {
    /// The status before the worker's first step: `starting` when it is
    /// about to spawn, so nobody reads "stopped" for a process that is not.
    pub(crate) fn new(name: &str, instance: u32, will_start: bool) -> Self {
        Self {
            name: name.to_string(),
            instance,
            state: if will_start {
                State::Starting
            } else {
                State::Stopped
            },
            pid: None,
            restarts: 0,
            started_at: None,
            exit_code: None,
            exit_signal: None,
            message: None,
            cpu_percent: 0.0,
            rss_bytes: 0,
        }
    }

    /// Time since the current run began; zero when not running.
    pub fn uptime(&self) -> Duration {
        self.started_at.map(|t| t.elapsed()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn a_states_name_is_its_json() {
        for state in [
            State::Stopped,
            State::Starting,
            State::Running,
            State::Backoff,
            State::Stopping,
            State::Exited,
            State::Fatal,
        ] {
            assert_eq!(
                serde_json::to_value(state).expect("serializes"),
                state.name()
            );
        }
    }
}
