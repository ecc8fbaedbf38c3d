//! Health, metrics, reload, upgrade and the API's own description.

use std::sync::LazyLock;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use crate::config::Role;
use crate::control::{ReloadError, ReloadReport, UpgradeError, UpgradeReport};

/// The answer of `/healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the server answers.
    status: &'static str,
}

/// Liveness: answers while the server runs. Needs no key.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Re-read the config file and apply what changed: keys, projects,
/// processes and plugins, touching nothing else. An invalid config changes
/// nothing and the answer lists every problem. Needs an `admin` key that
/// reaches every project.
#[utoipa::path(
    post, path = "/v1/reload", tag = "ops",
    responses(
        (status = 200, description = "Applied; what changed", body = ReloadReport),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "The config or a plugin is not usable; nothing changed", body = ErrorBody),
        (status = 503, description = "bosun is shutting down", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn reload(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ReloadReport>, ApiError> {
    require_server_admin(&caller, "a reload")?;
    tracing::info!(by = %caller.name, "reload requested over the API");
    match state.control.reload().await {
        Ok(report) => Ok(Json(report)),
        Err(e @ ReloadError::Invalid(_)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            e.to_string(),
        )),
        Err(e @ ReloadError::ShuttingDown) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            e.to_string(),
        )
        .retry_after(5)),
    }
}

/// Upgrade in place: check the binary now at bosun's path against the
/// config, then re-execute it in the same pid, keeping every process, the
/// listening socket and the queued jobs. Answers once the check passed and
/// the upgrade begins. Needs an `admin` key that reaches every project.
#[utoipa::path(
    post, path = "/v1/upgrade", tag = "ops",
    responses(
        (status = 202, description = "The new binary passed its check; the upgrade begins", body = UpgradeReport),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "The new binary is missing or fails its check; nothing changed", body = ErrorBody),
        (status = 503, description = "bosun is shutting down, or does not run as `bosun serve`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upgrade(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    require_server_admin(&caller, "an upgrade")?;
    tracing::info!(by = %caller.name, "upgrade requested over the API");
    match state.control.upgrade().await {
        // This image hands over now and its connections end with it: a
        // client must not send its next request on this one.
        Ok(report) => Ok((
            StatusCode::ACCEPTED,
            [(header::CONNECTION, "close")],
            Json(report),
        )
            .into_response()),
        Err(e @ UpgradeError::Check(_)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "upgrade_refused",
            e.to_string(),
        )),
        Err(e @ (UpgradeError::Unsupported | UpgradeError::ShuttingDown)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upgrade_unavailable",
            e.to_string(),
        )),
    }
}

/// Reloads and upgrades change every tenant's service: an `admin` key
/// that reaches every project only.
fn require_server_admin(caller: &Caller, what: &str) -> Result<(), ApiError> {
    caller.require(Role::Admin)?;
    if caller.reaches_all() {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "key `{}` reaches only some projects; {what} needs an admin key with `projects = \"*\"`",
        caller.name
    )))
}

/// Prometheus metrics of the projects the key reaches (and, for a key
/// reaching every project, the server's own). Needs an `admin` key.
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "OpenMetrics text format", content_type = "application/openmetrics-text"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    for (project, depth) in state.jobs.queue_depths() {
        state.metrics.queue_depth(&project, depth);
    }
    let server_wide = caller.reaches_all();
    for (project, handle) in state.projects.load().iter() {
        for s in handle.list() {
            state
                .metrics
                .restarts(project, &s.name, s.instance, s.restarts);
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state
            .metrics
            .render_for(|p| state.auth.sees(&caller, p), server_wide),
    )
        .into_response())
}

/// This API's OpenAPI 3.1 document. Needs no key.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "The OpenAPI document")))]
pub async fn openapi() -> Response {
    // Built once: the document is a function of the code, not of the config.
    static DOC: LazyLock<String> = LazyLock::new(|| super::document::openapi_json().to_string());
    ([(header::CONTENT_TYPE, "application/json")], DOC.as_str()).into_response()
}

/// Count every answer by status.
pub async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    state.metrics.request(response.status().as_u16());
    response
}
