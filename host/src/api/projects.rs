//! Reading projects: their processes, actions and process logs.
//!
//! (`unused_qualifications` is allowed here: utoipa's `IntoParams` expansion
//! qualifies the query types it is given.)
#![allow(unused_qualifications)]

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::query::{ApiPath, ApiQuery, flag};
use super::views::{ActionView, ParamView, ProcessView, ProjectSummary, ProjectView};
use super::{AppState, stream};
use crate::plugins::Source;
use crate::supervisor::{ProjectHandle, RING_LINES, State as ProcessState};

/// Lines of a process log served when `lines` is not given.
const DEFAULT_LINES: usize = 100;

/// Query of `GET …/processes/{name}/logs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProcessLogQuery {
    /// Recent lines per instance, 0-1000 (default 100).
    #[param(minimum = 0, maximum = 1000)]
    lines: Option<usize>,
    /// `1` or `true`: keep streaming new lines.
    #[param(schema_with = super::query::flag_schema)]
    follow: Option<String>,
}

fn action_names(state: &AppState, project: &str) -> Vec<String> {
    state
        .registry
        .load()
        .project(project)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Check scope, then look the project up: the order keeps project names
/// private from keys that may not see them.
pub(super) fn visible_project(
    state: &AppState,
    caller: &Caller,
    project: &str,
) -> Result<ProjectHandle, ApiError> {
    state.auth.project(caller, project)?;
    state
        .projects
        .load()
        .get(project)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no project `{project}`")))
}

/// The projects the caller's key reaches.
#[utoipa::path(
    get, path = "/v1/projects", tag = "projects",
    responses(
        (status = 200, body = [ProjectSummary], links(
            ("project" = (operation_id = "get_project", parameters(("project" = "$response.body#/0/name")))),
            ("actions" = (operation_id = "list_actions", parameters(("project" = "$response.body#/0/name")))),
        )),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
) -> Json<Vec<ProjectSummary>> {
    let projects = state
        .projects
        .load()
        .iter()
        .filter(|(name, _)| state.auth.sees(&caller, name))
        .map(|(name, handle)| {
            let statuses = handle.list();
            ProjectSummary {
                name: name.clone(),
                processes: statuses.len(),
                running: statuses
                    .iter()
                    .filter(|s| s.state == ProcessState::Running)
                    .count(),
                actions: action_names(&state, name),
            }
        })
        .collect();
    Json(projects)
}

/// One project: its processes (state, pid, uptime, restarts, CPU, memory)
/// and actions.
#[utoipa::path(
    get, path = "/v1/projects/{project}", tag = "projects", params(("project" = String, Path)),
    responses(
        (status = 200, body = ProjectView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<ProjectView>, ApiError> {
    let handle = visible_project(&state, &caller, &project)?;
    let queued_jobs = state
        .jobs
        .queue_depths()
        .into_iter()
        .find(|(p, _)| *p == project)
        .map_or(0, |(_, n)| n);
    Ok(Json(ProjectView {
        processes: handle.list().iter().map(ProcessView::from).collect(),
        actions: action_names(&state, &project),
        confinement: state.confinement.report(&project),
        name: project,
        queued_jobs,
    }))
}

/// Each action of a project, as its plugin describes itself.
#[utoipa::path(
    get, path = "/v1/projects/{project}/actions", tag = "projects", params(("project" = String, Path)),
    responses(
        (status = 200, body = [ActionView], links(
            ("run" = (operation_id = "run_action", parameters(
                ("project" = "$request.path.project"), ("action" = "$response.body#/0/name"),
            ))),
        )),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_actions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<Vec<ActionView>>, ApiError> {
    visible_project(&state, &caller, &project)?;
    let actions = state
        .registry
        .load()
        .project(&project)
        .map(|(name, loaded)| match loaded {
            Ok(loaded) => {
                let meta = loaded.plugin.meta();
                let (source, version) = match loaded.source {
                    Source::Stock => ("stock", None),
                    Source::File => ("file", None),
                    Source::Repo => ("repository", None),
                    Source::Upload(v) => ("upload", Some(v)),
                };
                ActionView {
                    name: name.to_string(),
                    summary: Some(meta.summary.clone()),
                    params: meta.params.iter().map(ParamView::from).collect(),
                    available: true,
                    source: Some(source.into()),
                    version,
                }
            }
            Err(_) => ActionView {
                name: name.to_string(),
                summary: None,
                params: Vec::new(),
                available: false,
                source: None,
                version: None,
            },
        })
        .collect();
    Ok(Json(actions))
}

/// A process's recent log lines (every instance, oldest first), each as
/// `<name>-<instance> | <line>`; with `follow`, new lines as they come.
#[utoipa::path(
    get, path = "/v1/projects/{project}/processes/{name}/logs", tag = "projects",
    params(("project" = String, Path), ("name" = String, Path), ProcessLogQuery),
    responses(
        (status = 200, description = "Log lines", content_type = "text/plain"),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, description = "The key follows its most streams", body = ErrorBody),
        (status = 503, description = "The server follows its most streams", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn process_logs(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((project, name)): ApiPath<(String, String)>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ProcessLogQuery>,
) -> Result<Response, ApiError> {
    logs(&state, &caller, &project, Some(&name), &headers, q)
}

/// Every process's recent log lines, merged oldest first, each as
/// `<name>-<instance> | <line>`; with `follow`, new lines as they come.
#[utoipa::path(
    get, path = "/v1/projects/{project}/logs", tag = "projects",
    params(("project" = String, Path), ProcessLogQuery),
    responses(
        (status = 200, description = "Log lines", content_type = "text/plain"),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, description = "The key follows its most streams", body = ErrorBody),
        (status = 503, description = "The server follows its most streams", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn project_logs(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(project): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ProcessLogQuery>,
) -> Result<Response, ApiError> {
    logs(&state, &caller, &project, None, &headers, q)
}

fn logs(
    state: &AppState,
    caller: &Caller,
    project: &str,
    name: Option<&str>,
    headers: &HeaderMap,
    q: ProcessLogQuery,
) -> Result<Response, ApiError> {
    let handle = visible_project(state, caller, project)?;
    let follow = flag(q.follow.as_deref())?;
    let lines = q.lines.unwrap_or(DEFAULT_LINES);
    if lines > RING_LINES {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("`lines` must be 0-{RING_LINES}"),
        ));
    }
    if follow {
        let held = state.hold_on(caller, project)?;
        let follow = handle.follow(name, lines)?;
        return Ok(stream::respond(
            stream::wants_sse(headers),
            stream::process_log(follow),
            held,
        ));
    }
    let lines = handle.logs(name, lines)?;
    Ok(stream::plain(lines.iter().map(|l| stream::format_line(l))))
}
