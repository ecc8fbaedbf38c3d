//! Teams' own actions over the API: upload a component, list its versions,
//! roll back to one, remove it. Only admin keys of a project whose config
//! sets `allow_uploads`, and only for action names the key may run. The
//! checks, the store and the swap are the catalog's (`plugins::catalog`);
//! this module reads the body and maps the answers.
//!
//! (`unused_qualifications` is allowed here: utoipa's `IntoParams` expansion
//! qualifies the query types it is given.)
#![allow(unused_qualifications)]

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::params::{json_object, read_bytes, read_drained, too_large};
use super::query::ApiPath;
use super::views::{ParamView, rfc3339};
use crate::config::Role;
use crate::plugins::{CatalogError, History, InService, Version};

/// The media type of an uploaded component.
const WASM: &str = "application/wasm";

/// Bytes of a refused upload read (and dropped) for a caller without a
/// valid key, so that its 401 arrives: enough for a small component, not
/// a way for strangers to make bosun read a large one.
const STRANGER_DRAIN: usize = 4 << 20;

/// The path of an action a team may change: its name is checked as the
/// config's are.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ActionPath {
    /// The project.
    pub project: String,
    /// The action's name: 1-64 of a-z, 0-9, `-` and `_`.
    #[param(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub action: String,
}

/// A WebAssembly component, as its bytes (the request body's schema).
pub struct Component;

impl utoipa::PartialSchema for Component {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Component {}

/// One uploaded version of an action.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    /// 1 for the first upload, then one more for each.
    pub version: u32,
    /// The SHA-256 of the component, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was uploaded (RFC 3339).
    pub uploaded_at: String,
    /// The name of the key that uploaded it.
    pub uploaded_by: String,
    /// Its `describe()` summary.
    pub summary: String,
    /// Whether it is the version in service.
    pub current: bool,
}

impl VersionView {
    fn new(v: &Version, current: bool) -> Self {
        Self {
            version: v.version,
            sha256: v.sha256.clone(),
            size: v.size,
            uploaded_at: rfc3339(v.uploaded_at),
            uploaded_by: v.uploaded_by.clone(),
            summary: v.summary.clone(),
            current,
        }
    }
}

/// What an upload or a rollback put in service.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadView {
    /// The project.
    pub project: String,
    /// The action.
    pub action: String,
    /// The version now in service.
    #[serde(flatten)]
    pub version: VersionView,
    /// The parameters it declares.
    pub params: Vec<ParamView>,
}

/// An uploaded action's kept versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionsView {
    /// The action.
    pub action: String,
    /// The version in service.
    pub current: u32,
    /// The kept versions, newest first.
    pub versions: Vec<VersionView>,
}

/// Body of `POST …/actions/{action}/rollback`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version to put back; default the one before the version in
    /// service.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub version: Option<u32>,
}

/// A version number as JSON gives it: `3`, or `3.0` (the same integer to
/// JSON Schema, and so to clients that write numbers as floats).
fn whole_number<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<u32>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(de)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
            .map(|f| f as u64)
    });
    whole
        .and_then(|v| u32::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("`{n}` is not a version number")))
}

/// The caller may change `project`'s `action`: an admin of the project
/// whose key may run the action, and the name is a valid one.
fn may_change(
    state: &AppState,
    caller: &Caller,
    project: &str,
    action: &str,
) -> Result<(), ApiError> {
    caller.require(Role::Admin)?;
    state.auth.project(caller, project)?;
    caller.action(action)?;
    crate::config::check_action_name(action).map_err(|m| ApiError::bad_request("invalid_name", m))
}

fn check_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if media.is_some_and(|m| m.eq_ignore_ascii_case(WASM)) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("send the component as `Content-Type: {WASM}`"),
    ))
}

fn in_service(project: String, action: String, done: &InService) -> UploadView {
    UploadView {
        project,
        action,
        version: VersionView::new(&done.version, true),
        params: done.meta.params.iter().map(ParamView::from).collect(),
    }
}

/// Upload a component as the newest version of an action, and put it in
/// service. It is checked first (a component of the `action-plugin` world
/// that compiles within the budget and whose `describe()` answers); a
/// failed upload replaces nothing. Running jobs finish on the version they
/// started with.
#[utoipa::path(
    put, path = "/v1/projects/{project}/actions/{action}", tag = "plugins",
    params(ActionPath),
    request_body(content = Component, content_type = "application/wasm", description = "The component"),
    responses(
        (status = 201, description = "A new version is in service", body = UploadView),
        (status = 200, description = "This component was already in service", body = UploadView),
        (status = 400, description = "An invalid action name", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not an admin of the project, or the project takes no uploads", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 408, description = "The body did not arrive within `read_timeout`", body = ErrorBody),
        (status = 409, description = "The config's action of that name is not `replaceable`, or the project has its most uploaded actions", body = ErrorBody),
        (status = 413, description = "Over `plugins.max_plugin_size`", body = ErrorBody),
        (status = 415, description = "Not `application/wasm`", body = ErrorBody),
        (status = 422, description = "Not a plugin bosun can run, with the reason", body = ErrorBody),
        (status = 429, description = "The key holds its most slow requests", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload_action(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    ApiPath(ActionPath { project, action }): ApiPath<ActionPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let max = usize::try_from(state.catalog.max_plugin_size()).unwrap_or(usize::MAX);
    let drain = max.saturating_mul(2);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > drain as u64) {
        return Err(too_large(max));
    }
    let stranger = caller.is_err();
    let checked = caller.and_then(|caller| {
        may_change(&state, &caller, &project, &action)?;
        check_media_type(&headers)?;
        // Held through the reading and the compiling: a key's uploads
        // count among its long requests, so they cannot take every place.
        let held = state.hold_on(&caller, &project)?;
        Ok((caller, held))
    });
    let (caller, held) = match checked {
        Ok(checked) => checked,
        Err(refused) => {
            // Read to its end first: a client still sending a component
            // would otherwise see its connection reset, not the answer.
            // Without a valid key, at most a few MiB.
            let drain = match stranger {
                true => drain.min(STRANGER_DRAIN),
                false => drain,
            };
            let _ = read_drained(body, 0, drain, state.server.read_timeout).await;
            return Err(refused);
        }
    };
    let wasm = read_drained(body, max, drain, state.server.read_timeout).await?;
    let revoked = || held.is_revoked();
    let upload = state
        .catalog
        .upload(&project, &action, &wasm, &caller.name, &revoked);
    let done = tokio::select! {
        done = upload => done?,
        () = held.revoked() => return Err(CatalogError::Revoked.into()),
    };
    let status = if done.added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(in_service(project, action, &done))).into_response())
}

/// The kept versions of an uploaded action, newest first.
#[utoipa::path(
    get, path = "/v1/projects/{project}/actions/{action}/versions", tag = "plugins",
    params(ActionPath),
    responses(
        (status = 200, body = VersionsView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, description = "No such project, or no uploads of the action", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(ActionPath { project, action }): ApiPath<ActionPath>,
) -> Result<Json<VersionsView>, ApiError> {
    state.auth.project(&caller, &project)?;
    caller.scoped_to(&action)?;
    crate::config::check_action_name(&action)
        .map_err(|m| ApiError::bad_request("invalid_name", m))?;
    let history: History = state.catalog.versions(&project, &action)?;
    Ok(Json(VersionsView {
        action,
        current: history.current,
        versions: history
            .versions
            .iter()
            .rev()
            .map(|v| VersionView::new(v, v.version == history.current))
            .collect(),
    }))
}

/// Put a kept version of an uploaded action back in service (default:
/// the one before the version in service).
#[utoipa::path(
    post, path = "/v1/projects/{project}/actions/{action}/rollback", tag = "plugins",
    params(ActionPath),
    request_body(content = RollbackBody, description = "Optional; `{\"version\": n}`"),
    responses(
        (status = 200, body = UploadView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such project, uploaded action or kept version", body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, description = "The version no longer loads", body = ErrorBody),
        (status = 429, description = "The key holds its most long requests", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn rollback_action(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(ActionPath { project, action }): ApiPath<ActionPath>,
    body: Body,
) -> Result<Json<UploadView>, ApiError> {
    may_change(&state, &caller, &project, &action)?;
    let held = state.hold_on(&caller, &project)?;
    let limit = usize::try_from(state.server.max_body.as_u64()).unwrap_or(usize::MAX);
    let bytes = read_bytes(body, limit, state.server.read_timeout, || Ok(())).await?;
    let body: RollbackBody = json_object(&bytes, "{\"version\": n}")?;
    let done = state
        .catalog
        .rollback(&project, &action, body.version, &|| held.is_revoked())
        .await?;
    Ok(Json(in_service(project, action, &done)))
}

/// Remove an uploaded action and every version of it. An action of the
/// config that the upload replaced is in service again.
#[utoipa::path(
    delete, path = "/v1/projects/{project}/actions/{action}", tag = "plugins",
    params(ActionPath),
    responses(
        (status = 204, description = "Removed"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such project, or no uploads of the action", body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 429, description = "The key holds its most long requests", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn remove_action(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(ActionPath { project, action }): ApiPath<ActionPath>,
) -> Result<StatusCode, ApiError> {
    may_change(&state, &caller, &project, &action)?;
    let held = state.hold_on(&caller, &project)?;
    state
        .catalog
        .remove(&project, &action, &|| held.is_revoked())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
