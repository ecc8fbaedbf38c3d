//! Running actions and reading jobs.
//!
//! (`unused_qualifications` is allowed here: utoipa's `IntoParams` expansion
//! qualifies the query types it is given.)
#![allow(unused_qualifications)]

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::long_requests::Held;
use super::params::{RunBody, check_params, read_body};
use super::query::{ApiPath, ApiQuery, flag, page_limit, parse_wait};
use super::views::{JobPage, JobView};
use super::{AppState, stream};
use crate::config::Role;
use crate::jobs::{Job, JobFilter, JobState, NewJob};
use crate::plugins::bindings::ActionMeta;

/// How long a cancel waits for a running job to stop before answering 202.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// Query of `POST …/actions/{action}` and `GET /v1/jobs/{id}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// Wait up to this long for the job to end (`30s`, `2m`, `500ms`, or
    /// seconds), capped at the server's `max_wait`.
    #[param(schema_with = super::query::wait_schema)]
    wait: Option<String>,
}

/// Query of `GET /v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this project's jobs.
    project: Option<String>,
    /// Only this action's jobs.
    action: Option<String>,
    /// Only jobs in this state.
    #[param(schema_with = super::query::job_state_schema)]
    state: Option<String>,
    /// Only jobs older than this job (the `next` of the previous page).
    before: Option<String>,
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// Query of `GET /v1/jobs/{id}/log`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// `1` or `true`: stream lines as they come, until the job ends.
    #[param(schema_with = super::query::flag_schema)]
    follow: Option<String>,
}

fn job_response(status: StatusCode, job: &Job) -> Response {
    let mut response = (status, Json(JobView::from(job))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Run an action: the job is stored before the answer, then queued behind
/// the project's earlier jobs.
#[utoipa::path(
    post, path = "/v1/projects/{project}/actions/{action}", tag = "jobs",
    params(("project" = String, Path), ("action" = String, Path), RunQuery),
    request_body(content = RunBody, description = "Optional; `{\"params\":{…}}`"),
    responses(
        (status = 202, description = "Accepted: queued or still running", body = JobView, links(
            ("job" = (operation_id = "get_job", parameters(("id" = "$response.body#/id")))),
            ("log" = (operation_id = "job_log", parameters(("id" = "$response.body#/id")))),
            ("cancel" = (operation_id = "cancel_job", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 200, description = "Finished within `wait`", body = JobView, links(
            ("job" = (operation_id = "get_job", parameters(("id" = "$response.body#/id")))),
            ("log" = (operation_id = "job_log", parameters(("id" = "$response.body#/id")))),
            ("cancel" = (operation_id = "cancel_job", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, description = "Malformed JSON or query", body = ErrorBody),
        (status = 401, description = "No key or a wrong key", body = ErrorBody),
        (status = 403, description = "Out of the key's scope", body = ErrorBody),
        (status = 404, description = "No such project or action", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `read_timeout`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Params do not fit the action", body = ErrorBody),
        (status = 429, description = "The project's queue is full, or the key holds its most waits", body = ErrorBody),
        (status = 503, description = "The action's plugin failed to load, the server holds its most waits, or it is shutting down", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn run_action(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((project, action)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<RunQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Role::Run)?;
    state.auth.project(&caller, &project)?;
    caller.action(&action)?;
    if !state.projects.load().contains_key(&project) {
        return Err(ApiError::not_found(format!("no project `{project}`")));
    }
    let meta = action_meta(&state, &project, &action)?;
    let wait = parse_wait(q.wait.as_deref(), state.server.max_wait)?;
    // Refused before the job exists: a caller over its share loses nothing.
    let project_revoked = state.auth.project_revoked(&project);
    let held = wait.map(|_| state.hold_on(&caller, &project)).transpose()?;
    let body = read_body(
        body,
        usize::try_from(state.server.max_body.as_u64()).unwrap_or(usize::MAX),
        state.server.read_timeout,
        || match held {
            Some(_) => Ok(None),
            None => state.long_requests.hold(&caller).map(Some),
        },
    )
    .await?;
    let params = check_params(&action, &meta, &body.params)?;
    // A reload may have revoked the key while the body was arriving.
    if caller.revoked().is_cancelled() || project_revoked.is_some_and(|r| r.is_cancelled()) {
        return Err(ApiError::unauthorized(
            "key_revoked",
            "the bearer key (or the project key) was revoked while the request arrived",
        ));
    }
    let job = state
        .jobs
        .submit(NewJob {
            project,
            action,
            params,
            requested_by: caller.name.clone(),
        })
        .await?;
    tracing::info!(job = %job.id, project = %job.project, action = %job.action, by = %job.requested_by, "job accepted");
    // A wait always holds a place: both or neither.
    let (Some(wait), Some(held)) = (wait, held) else {
        return Ok(job_response(StatusCode::ACCEPTED, &job));
    };
    let job = wait_held(&state, &job.id, wait, &held)
        .await?
        .unwrap_or(job);
    drop(held);
    let status = if job.state.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(job_response(status, &job))
}

/// What `action` of `project` declares: 404 when it has no such action,
/// 503 when its plugin failed to load.
pub(super) fn action_meta(
    state: &AppState,
    project: &str,
    action: &str,
) -> Result<ActionMeta, ApiError> {
    match state.registry.load().get(project, action) {
        None => Err(ApiError::not_found(format!(
            "project `{project}` has no action `{action}`"
        ))),
        Some(Err(e)) => {
            tracing::warn!(%project, %action, "run refused: {e}");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "action_unavailable",
                format!(
                    "the plugin of action `{action}` failed to load; `bosun check` on the server says why"
                ),
            ))
        }
        Some(Ok(loaded)) => Ok(loaded.plugin.meta().clone()),
    }
}

/// Wait up to `wait` for job `id` to end, unless a reload revokes the key
/// that holds the wait first.
async fn wait_held(
    state: &AppState,
    id: &str,
    wait: Duration,
    held: &Held,
) -> Result<Option<Job>, ApiError> {
    tokio::select! {
        job = state.jobs.wait(id, wait) => Ok(job?),
        () = held.revoked() => Err(ApiError::unauthorized(
            "key_revoked",
            "the bearer key (or the project key) was revoked while waiting",
        )),
    }
}

/// The job `id`, if the caller may see it. Another tenant's job is a plain
/// 404: job ids must not leak across scopes.
async fn visible_job(state: &AppState, caller: &Caller, id: &str) -> Result<Job, ApiError> {
    let not_found = || ApiError::not_found(format!("no job `{id}`"));
    let job = state.jobs.get(id).await?.ok_or_else(not_found)?;
    state
        .auth
        .project(caller, &job.project)
        .map_err(|_| not_found())?;
    Ok(job)
}

/// List jobs the caller may see, newest first.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, body = JobPage),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let projects = match &q.project {
        Some(p) => {
            state.auth.project(&caller, p)?;
            vec![p.clone()]
        }
        None => state
            .projects
            .load()
            .keys()
            .filter(|p| state.auth.sees(&caller, p))
            .cloned()
            .collect(),
    };
    let job_state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("no job state is called `{s}`"))
        })?),
    };
    let limit = page_limit(q.limit)?;
    let jobs = state
        .jobs
        .list(JobFilter {
            projects: Some(projects),
            action: q.action,
            state: job_state,
            before: q.before,
            limit,
        })
        .await?;
    let next = (jobs.len() == limit as usize)
        .then(|| jobs.last().map(|j| j.id.clone()))
        .flatten();
    Ok(Json(JobPage {
        jobs: jobs.iter().map(JobView::from).collect(),
        next,
    }))
}

/// One job; with `?wait=30s`, once it has ended (or the time is up).
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path), RunQuery),
    responses(
        (status = 200, body = JobView), (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, description = "The key holds its most waits", body = ErrorBody),
        (status = 503, description = "The server holds its most waits", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> Result<Json<JobView>, ApiError> {
    let wait = parse_wait(q.wait.as_deref(), state.server.max_wait)?;
    let mut job = visible_job(&state, &caller, &id).await?;
    if let Some(wait) = wait {
        let held = state.hold_on(&caller, &job.project)?;
        job = wait_held(&state, &id, wait, &held).await?.unwrap_or(job);
    }
    Ok(Json(JobView::from(&job)))
}

/// Cancel a job: a queued one at once, a running one at its plugin's next
/// instruction. Keys with the `run` role may cancel their own jobs; `admin`
/// keys any job in their scope.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The job has ended", body = JobView),
        (status = 202, description = "Cancel sent; the job is still stopping", body = JobView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Already ended", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Run)?;
    let job = visible_job(&state, &caller, &id).await?;
    if !caller.is_admin() && job.requested_by != caller.name {
        return Err(ApiError::forbidden(
            "only the key that started a job, or an admin key, may cancel it",
        ));
    }
    let job = state.jobs.cancel(&id, CANCEL_WAIT).await?;
    tracing::info!(job = %id, by = %caller.name, "job cancelled");
    let status = if job.state.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(job_response(status, &job))
}

/// A job's log as plain text; with `follow`, streamed until the job ends
/// (SSE when asked with `Accept: text/event-stream`).
#[utoipa::path(
    get, path = "/v1/jobs/{id}/log", tag = "jobs", params(("id" = String, Path), LogQuery),
    responses(
        (status = 200, description = "The log, one line per line", content_type = "text/plain"),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, description = "The key follows its most streams", body = ErrorBody),
        (status = 503, description = "The server follows its most streams", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn job_log(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Response, ApiError> {
    let follow = flag(q.follow.as_deref())?;
    let job = visible_job(&state, &caller, &id).await?;
    // Held before the log is loaded: a follower over its share costs nothing.
    let held = follow
        .then(|| state.hold_on(&caller, &job.project))
        .transpose()?;
    let log = state
        .jobs
        .follow(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job `{id}`")))?;
    if let Some(held) = held {
        return Ok(stream::respond(
            stream::wants_sse(&headers),
            stream::job_log(log, job),
            held,
        ));
    }
    let lines = match log {
        crate::jobs::LogFollow::Done(lines) => lines,
        crate::jobs::LogFollow::Live { lines, .. } => lines,
    };
    Ok(stream::plain(lines))
}
