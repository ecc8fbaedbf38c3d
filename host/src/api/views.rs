//! The JSON shapes the API answers with. Kept apart from the internal types
//! so that a refactor inside bosun does not change the contract by accident.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::jobs::{Job, JobErrorKind, JobState};
use crate::supervisor::Status;

/// A job. The CLI reads it back with the same type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// The project it acts on.
    pub project: String,
    /// The action it runs.
    pub action: String,
    /// Its parameters.
    pub params: BTreeMap<String, String>,
    /// The name of the key that asked for it.
    pub requested_by: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`, `timed_out` or `interrupted`.
    #[schema(schema_with = super::query::job_state_schema)]
    #[serde(deserialize_with = "state_or_failed")]
    pub state: JobState,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// When its plugin started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// The action's result: JSON when the plugin returned JSON, else a
    /// string; null until it ends.
    #[schema(schema_with = any_json)]
    pub result: Option<Value>,
    /// Why it did not succeed.
    pub error: Option<JobErrorView>,
    /// Where to read its log.
    pub log_url: String,
}

/// Why a job did not succeed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobErrorView {
    /// `plugin_error`, `timeout`, `cancelled`, `memory_limit`, `trap`,
    /// `invalid_plugin`, `host_error` or `interrupted`.
    #[schema(schema_with = super::query::job_error_kind_schema)]
    #[serde(deserialize_with = "kind_or_plugin_error")]
    pub kind: JobErrorKind,
    /// What happened.
    pub message: String,
    /// The plugin's structured account, when its error message is a JSON
    /// object (the stock `deploy` says `{"rolled_back": true, "reason": …}`).
    #[schema(schema_with = any_json)]
    pub detail: Option<Value>,
}

/// A state this version does not know (a newer server's) reads as
/// `failed`: an older CLI still ends its wait and exits non-zero, and
/// `--json` prints the server's own words.
fn state_or_failed<'de, D: Deserializer<'de>>(de: D) -> Result<JobState, D::Error> {
    let name = String::deserialize(de)?;
    Ok(JobState::parse(&name).unwrap_or(JobState::Failed))
}

/// An error kind this version does not know reads as `plugin_error`.
fn kind_or_plugin_error<'de, D: Deserializer<'de>>(de: D) -> Result<JobErrorKind, D::Error> {
    let name = String::deserialize(de)?;
    Ok(JobErrorKind::parse(&name).unwrap_or(JobErrorKind::PluginError))
}

/// Any JSON value, null included.
pub(super) fn any_json() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType};
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .build(),
    )
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<JobView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Format ms since the epoch as RFC 3339.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> Self {
        Self {
            id: job.id.clone(),
            project: job.project.clone(),
            action: job.action.clone(),
            params: job.params.iter().cloned().collect(),
            requested_by: job.requested_by.clone(),
            state: job.state,
            created_at: rfc3339(job.created_at),
            started_at: job.started_at.map(rfc3339),
            finished_at: job.finished_at.map(rfc3339),
            result: job
                .result
                .as_ref()
                .map(|r| serde_json::from_str(r).unwrap_or_else(|_| Value::String(r.clone()))),
            error: job.error.as_ref().map(|e| JobErrorView {
                kind: e.kind,
                message: e.message.clone(),
                detail: detail(&e.message),
            }),
            log_url: format!("/v1/jobs/{}/log", job.id),
        }
    }
}

/// The JSON object in a plugin error's message, which reads
/// `<variant>: <text>` (e.g. `failed: {"rolled_back": true}`).
fn detail(message: &str) -> Option<Value> {
    let text = message.split_once(": ").map_or(message, |(_, rest)| rest);
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
}

/// One supervised process instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessView {
    /// The configured name.
    pub name: String,
    /// The instance index.
    pub instance: u32,
    /// `stopped`, `starting`, `running`, `backoff`, `stopping`, `exited` or `fatal`.
    pub state: String,
    /// The leader's pid while it runs.
    pub pid: Option<u32>,
    /// Milliseconds since the current run began.
    pub uptime_ms: u64,
    /// Restarts since bosun started it.
    pub restarts: u32,
    /// The last run's exit code.
    pub exit_code: Option<i32>,
    /// The signal that ended the last run.
    pub exit_signal: Option<i32>,
    /// Why it is `fatal`, or the last notable event.
    pub message: Option<String>,
    /// CPU use of its process group, percent of one core.
    pub cpu_percent: f32,
    /// RSS of its process group, in bytes.
    pub rss_bytes: u64,
}

impl From<&Status> for ProcessView {
    fn from(s: &Status) -> Self {
        Self {
            name: s.name.clone(),
            instance: s.instance,
            state: s.state.name().to_string(),
            pid: s.pid,
            uptime_ms: u64::try_from(s.uptime().as_millis()).unwrap_or(u64::MAX),
            restarts: s.restarts,
            exit_code: s.exit_code,
            exit_signal: s.exit_signal,
            message: s.message.clone(),
            cpu_percent: s.cpu_percent,
            rss_bytes: s.rss_bytes,
        }
    }
}

/// A project in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectSummary {
    /// Its name.
    pub name: String,
    /// Process instances configured.
    pub processes: usize,
    /// Of those, how many are running.
    pub running: usize,
    /// Its actions' names.
    pub actions: Vec<String>,
}

/// A project in detail.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    /// Its name.
    pub name: String,
    /// Its process instances.
    pub processes: Vec<ProcessView>,
    /// Its actions' names.
    pub actions: Vec<String>,
    /// Jobs waiting (not counting a running one).
    pub queued_jobs: usize,
    /// What its programs run as and may see.
    pub confinement: Option<crate::confine::Report>,
}

/// An action, as its plugin describes itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionView {
    /// The action's name in this project.
    pub name: String,
    /// One line on what it does; absent when the plugin failed to load.
    pub summary: Option<String>,
    /// The parameters it accepts.
    pub params: Vec<ParamView>,
    /// Whether it can run: false when its plugin failed to load.
    pub available: bool,
    /// Where its plugin comes from: `stock`, `file` (the operator's),
    /// `repository` (the project's own) or `upload`; absent when it
    /// failed to load.
    pub source: Option<String>,
    /// The uploaded version in service, for an upload.
    pub version: Option<u32>,
}

impl From<&crate::plugins::bindings::ParamSpec> for ParamView {
    fn from(p: &crate::plugins::bindings::ParamSpec) -> Self {
        Self {
            name: p.name.clone(),
            summary: p.summary.clone(),
            required: p.required,
            default: p.default.clone(),
        }
    }
}

/// One declared parameter.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParamView {
    /// Its name.
    pub name: String,
    /// What it does.
    pub summary: String,
    /// Whether callers must give it.
    pub required: bool,
    /// Its default.
    pub default: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_reads_back_and_a_newer_servers_words_do_not_break_it() {
        let mut job = Job::new("shop", "deploy", vec![("ref".into(), "v1".into())], "ci");
        job.finish(Err(crate::jobs::JobError::new(
            JobErrorKind::Timeout,
            "did not finish",
        )));
        let json = serde_json::to_value(JobView::from(&job)).expect("serializes");
        let back: JobView = serde_json::from_value(json.clone()).expect("reads back");
        assert_eq!(back.state, JobState::TimedOut);
        assert_eq!(back.error.map(|e| e.kind), Some(JobErrorKind::Timeout));

        let mut newer = json;
        newer["state"] = "paused".into();
        newer["error"]["kind"] = "quota".into();
        let read: JobView = serde_json::from_value(newer).expect("still a job");
        assert_eq!(read.state, JobState::Failed);
        assert_eq!(read.error.map(|e| e.kind), Some(JobErrorKind::PluginError));
    }
}
