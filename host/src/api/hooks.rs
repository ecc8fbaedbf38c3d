//! `POST /hooks/{project}`: a forge's push, proven by the project's webhook
//! secret instead of a bearer key; and `GET /v1/projects/{p}/deliveries`,
//! the log of what every delivery became. What a push does is `hooks`'.
//!
//! Answers: 202 `accepted` (with the job) or `ignored` (with the reason);
//! 200 for a `duplicate` (with the first job) or a `ping`; 401 for a
//! missing or wrong proof, generic, counted against the address's brake
//! for this project; 404 for a project without a webhook; 400, 408, 413,
//! 422, 429 and 503 as for any job. Every delivery whose body was read is
//! in the deliveries log; a 404, 408, 413 or a 503 for want of a place to
//! read it in is not (bosun's own log has the 503s).
//!
//! (`unused_qualifications` is allowed here: utoipa's `IntoParams` expansion
//! qualifies the query types it is given.)
#![allow(unused_qualifications)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::jobs::action_meta;
use super::params::{check_params, read_drained, too_large};
use super::query::{ApiPath, ApiQuery, page_limit};
use super::views::rfc3339;
use crate::config::Role;
use crate::hooks::{
    BODY_PLACE_WAIT, DRAIN_MAX, Delivery, Event, Forge, HookSettings, MAX_BODY, Push, REQUESTED_BY,
    Verdict,
};
use crate::jobs::{NewJob, now_ms};

/// How long a push waits to learn the commit deployed now; past it, the
/// push is taken (a deploy of what is current changes nothing).
const REVISION_WAIT: Duration = Duration::from_secs(5);

/// What a delivery became.
#[derive(Debug, Serialize)]
struct Answer {
    verdict: Verdict,
    /// The delivery's id (the forge's, else the body's SHA-256).
    delivery: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    push: Option<Push>,
    /// Queued deploys this push replaced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    replaced: Vec<String>,
}

/// One delivery as it is decided: what is known of it so far.
struct Received {
    record: Delivery,
}

impl Received {
    fn answer(&self, reason: Option<String>, push: Option<Push>) -> Answer {
        Answer {
            verdict: self.record.verdict,
            delivery: self.record.delivery.clone(),
            reason,
            job_id: self.record.job_id.clone(),
            job_url: self
                .record
                .job_id
                .as_ref()
                .map(|id| format!("/v1/jobs/{id}")),
            push,
            replaced: Vec::new(),
        }
    }
}

/// Receive a forge's delivery for `project`.
pub async fn receive(
    State(state): State<AppState>,
    ApiPath(project): ApiPath<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let not_found = || ApiError::not_found(format!("project `{project}` has no webhook"));
    let hook = state.hooks.get(&project).ok_or_else(not_found)?;
    if !state.projects.load().contains_key(&project) {
        return Err(not_found());
    }
    // A body declared larger than bosun would even drain is refused
    // before any of it is read.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_MAX as u64) {
        return Err(too_large(MAX_BODY));
    }
    let place = state
        .hook_bodies
        .admit_within(ip, BODY_PLACE_WAIT)
        .await
        .map_err(|_| {
            tracing::warn!(%project, %ip, "webhook delivery refused: no place to read its body in");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many webhook deliveries are arriving at once; try again shortly",
            )
            .retry_after(1)
        })?;
    let body = read_drained(body, MAX_BODY, DRAIN_MAX, state.server.read_timeout).await?;
    let headers = parts.headers;
    let forge = Forge::identify(&headers);
    let body_sha = sha256_hex(&body);
    let event = forge.map(|f| f.event(&headers)).unwrap_or_default();
    let mut received = Received {
        record: Delivery {
            seq: 0,
            received_at: now_ms(),
            forge: forge.map(|f| f.as_str().to_string()),
            event: event.clone(),
            delivery: forge
                .and_then(|f| f.delivery(&headers))
                .unwrap_or_else(|| body_sha.clone()),
            git_ref: None,
            after: None,
            verdict: Verdict::BadSignature,
            reason: None,
            job_id: None,
            source: ip.to_string(),
            body_sha,
            project: project.clone(),
        },
    };
    // Proven and parsed, the body and its place are let go before the
    // project's turn is awaited.
    let proven = forge.and_then(|f| {
        let payload = f.verify(&headers, &body, hook.secret.bytes())?;
        Some((f, sha256_hex(&payload), f.parse(&event, &payload)))
    });
    drop(body);
    drop(place);
    let Some((forge, payload_sha, parsed)) = proven else {
        // Only an unproven delivery is braked: a stranger's wrong secret at
        // a forge's shared address must not refuse the tenant's own.
        let braked = state.auth.hook_allowed(ip, &project);
        state.auth.hook_failed(ip, &project);
        received.record.reason = Some(match forge {
            None => "no forge's headers".into(),
            Some(_) => "the signature (or token) is missing or wrong".into(),
        });
        log(&state, received.record).await;
        braked?;
        return Err(ApiError::unauthorized(
            "bad_signature",
            "the delivery's signature is missing or wrong",
        ));
    };
    // What the signature covers: a payload re-signed as another forge's,
    // or padded with form fields, is the same push.
    received.record.body_sha = payload_sha;
    // Proven: whatever fails from here on is a refusal, not a bad signature.
    received.record.verdict = Verdict::Refused;
    let turn = state.hooks.turn(&project).await;
    let outcome = decide(&state, &hook, forge, parsed, &mut received).await;
    // Logged before the turn is given back: a copy of this delivery waiting
    // for it finds it.
    log(&state, received.record).await;
    drop(turn);
    outcome
}

/// Store `record` in the deliveries log, and say it in bosun's.
async fn log(state: &AppState, record: Delivery) {
    let (project, delivery, verdict) = (
        record.project.clone(),
        record.delivery.clone(),
        record.verdict,
    );
    // Anyone can send bad signatures: they are not worth a line each.
    if verdict == Verdict::BadSignature {
        tracing::debug!(%project, %delivery, "webhook delivery with a bad signature");
    } else {
        tracing::info!(%project, forge = record.forge.as_deref(), %delivery, ?verdict, "webhook delivery");
    }
    if let Err(e) = state.hooks.deliveries.record(record).await {
        tracing::error!(%project, "{e}");
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Decide a proven delivery; `received` says what it became.
async fn decide(
    state: &AppState,
    hook: &HookSettings,
    forge: Forge,
    parsed: Result<Event, String>,
    received: &mut Received,
) -> Result<Response, ApiError> {
    let event = received.record.event.clone();
    let pushes = match parsed {
        Ok(Event::Ping) => {
            received.record.verdict = Verdict::Ping;
            return Ok(answer(StatusCode::OK, &received.answer(None, None)));
        }
        Ok(Event::Other) => {
            return ignored(received, format!("`{event}` events do not deploy"), None);
        }
        Ok(Event::Push(pushes)) => pushes,
        Err(e) => {
            received.record.verdict = Verdict::Invalid;
            received.record.reason = Some(e.clone());
            return Err(ApiError::bad_request("invalid_payload", e));
        }
    };
    // Bitbucket sends one change per ref: the first that deploys wins.
    let push = pushes
        .iter()
        .find(|p| hook.ignored(p).is_none())
        .or(pushes.first())
        .cloned();
    let Some(push) = push else {
        return ignored(received, "the push changed no ref".into(), None);
    };
    received.record.git_ref = Some(push.git_ref.clone());
    received.record.after = Some(push.after.clone());
    let project = received.record.project.clone();
    let deliveries = &state.hooks.deliveries;
    let r = &received.record;
    if let Some(seen) = deliveries
        .seen(&project, &r.delivery, &r.body_sha)
        .await
        .map_err(ApiError::internal)?
    {
        received.record.verdict = Verdict::Duplicate;
        received.record.job_id = seen.job_id;
        let why = match seen.reason {
            Some(why) => format!("this delivery was ignored before: {why}"),
            None => "this delivery was accepted before".into(),
        };
        received.record.reason = Some(why.clone());
        let answer = received.answer(Some(why), Some(push));
        return Ok(answer_job(StatusCode::OK, &answer));
    }
    if let Some(why) = hook.ignored(&push) {
        return ignored(received, why, Some(push));
    }
    let r = &received.record;
    if deliveries
        .superseded(&project, &r.delivery, &r.body_sha, &push.git_ref)
        .await
        .map_err(ApiError::internal)?
    {
        let why = format!(
            "a newer push to `{}` was accepted since this delivery first came",
            push.git_ref
        );
        return ignored(received, why, Some(push));
    }
    if deployed(state, &project, &push.after).await {
        let why = format!("commit {} is already deployed", push.after);
        return ignored(received, why, Some(push));
    }
    let refused = |received: &mut Received, e: ApiError| {
        received.record.verdict = Verdict::Refused;
        received.record.reason = Some(e.message().to_string());
        e
    };
    let meta = action_meta(state, &project, &hook.action).map_err(|e| refused(received, e))?;
    let params = Map::from_iter([("target".to_string(), Value::from(push.after.clone()))]);
    let params = check_params(&hook.action, &meta, &params).map_err(|e| refused(received, e))?;
    let action = hook.action.clone();
    let submitted = state
        .jobs
        .submit_replacing(
            NewJob {
                project: project.clone(),
                action: action.clone(),
                params,
                requested_by: format!("{REQUESTED_BY}{}", forge.as_str()),
            },
            |job| job.action == action && job.requested_by.starts_with(REQUESTED_BY),
        )
        .await;
    let (job, replaced) = submitted.map_err(|e| refused(received, e.into()))?;
    tracing::info!(job = %job.id, %project, %action, by = %job.requested_by, commit = %push.after, "job accepted");
    received.record.verdict = Verdict::Accepted;
    received.record.job_id = Some(job.id.clone());
    let mut answer = received.answer(None, Some(push));
    answer.replaced = replaced;
    Ok(answer_job(StatusCode::ACCEPTED, &answer))
}

/// Whether `commit` is what `project` runs, with nothing of it queued or
/// running that could change that.
async fn deployed(state: &AppState, project: &str, commit: &str) -> bool {
    if state.jobs.busy(project) {
        return false;
    }
    let Some(scope) = state.jobs.scope(project) else {
        return false;
    };
    matches!(
        tokio::time::timeout(REVISION_WAIT, scope.git.revision()).await,
        Ok(Ok(head)) if head == commit
    )
}

fn ignored(received: &mut Received, why: String, push: Option<Push>) -> Result<Response, ApiError> {
    received.record.verdict = Verdict::Ignored;
    received.record.reason = Some(why.clone());
    Ok(answer(
        StatusCode::ACCEPTED,
        &received.answer(Some(why), push),
    ))
}

fn answer(status: StatusCode, answer: &Answer) -> Response {
    (status, Json(answer)).into_response()
}

/// An answer naming a job, with its `Location`.
fn answer_job(status: StatusCode, a: &Answer) -> Response {
    let mut response = answer(status, a);
    if let Some(url) = a
        .job_url
        .as_deref()
        .and_then(|u| HeaderValue::from_str(u).ok())
    {
        response.headers_mut().insert(header::LOCATION, url);
    }
    response
}

/// Query of `GET /v1/projects/{project}/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Only deliveries older than this one (the `next` of the previous page).
    #[param(minimum = 1)]
    before: Option<i64>,
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// One delivery of a project's webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Its place in the log (newer is larger): the `before` of a page.
    seq: i64,
    /// When it arrived (RFC 3339).
    received_at: String,
    /// The forge its headers named, if any.
    forge: Option<String>,
    /// The event, as the forge named it (`push`, `Push Hook`, `repo:push`).
    event: String,
    /// The forge's delivery id, or the body's SHA-256 when it sends none.
    delivery: String,
    /// The ref pushed, for a proven push.
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    /// The commit pushed, for a proven push.
    after: Option<String>,
    /// What became of it.
    verdict: Verdict,
    /// Why, for every verdict but `accepted`.
    reason: Option<String>,
    /// The job it started (for a duplicate, the first delivery's job).
    job_id: Option<String>,
    /// The address it came from.
    source: String,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            seq: d.seq,
            received_at: rfc3339(d.received_at),
            forge: d.forge,
            event: d.event,
            delivery: d.delivery,
            git_ref: d.git_ref,
            after: d.after,
            verdict: d.verdict,
            reason: d.reason,
            job_id: d.job_id,
            source: d.source,
        }
    }
}

/// A page of a project's webhook deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    /// The deliveries.
    deliveries: Vec<DeliveryView>,
    /// The `before` of the next page, when there may be one.
    next: Option<i64>,
}

/// The project's webhook deliveries, newest first: each with its forge,
/// commit, verdict and job.
#[utoipa::path(
    get, path = "/v1/projects/{project}/deliveries", tag = "projects",
    params(("project" = String, Path), DeliveriesQuery),
    responses(
        (status = 200, body = DeliveryPage),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(project): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    caller.require(Role::Read)?;
    state.auth.project(&caller, &project)?;
    if !state.projects.load().contains_key(&project) {
        return Err(ApiError::not_found(format!("no project `{project}`")));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "`before` must be a delivery's `seq`, 1 or more",
        ));
    }
    let limit = page_limit(q.limit)?;
    let deliveries = state
        .hooks
        .deliveries
        .list(&project, q.before, limit)
        .await
        .map_err(ApiError::internal)?;
    let next = (deliveries.len() == limit as usize)
        .then(|| deliveries.last().map(|d| d.seq))
        .flatten();
    Ok(Json(DeliveryPage {
        deliveries: deliveries.into_iter().map(DeliveryView::from).collect(),
        next,
    }))
}
