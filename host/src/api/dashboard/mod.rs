//! The dashboard: bosun's own web pages at `/`, on the API's port.
//!
//! Server-rendered HTML (maud, escaped by construction) with one small,
//! framework-free script, both embedded in the binary: nothing to build
//! with Node, nothing fetched from elsewhere. Every page reads through the
//! API's own handlers with the session's [`Caller`](super::Caller), and the
//! script acts through the JSON API with the session cookie and its CSRF
//! token ([`session`]): the dashboard can do nothing the key could not do
//! with `curl`, and shows nothing the key could not read.
//!
//! Every answer here carries a content security policy that allows only
//! this origin's script and style and no framing.

mod jobs;
mod layout;
mod live;
mod pages;
mod session;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use session::Sessions;

use super::AppState;
use super::error::ApiError;
use layout::Flash;
use session::Session;

/// The longest sign-in form read: a key and a token, with room to spare.
const MAX_FORM: usize = 4096;

/// The dashboard's pages, its assets and its live feed.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/ui/signin", get(sign_in_page).post(sign_in))
        .route("/ui/signout", post(sign_out))
        .route("/ui/live", get(live::processes))
        .route("/ui/projects/{project}", get(pages::project))
        .route("/ui/projects/{project}/logs", get(pages::logs))
        .route("/ui/projects/{project}/deploy", get(pages::deploy))
        .route(
            "/ui/projects/{project}/actions/{action}",
            get(pages::action),
        )
        .route("/ui/jobs", get(jobs::list))
        .route("/ui/jobs/{id}", get(jobs::show))
        .route("/ui/assets/app.js", get(script))
        .route("/ui/assets/app.css", get(style))
        .layer(axum::middleware::map_response(protect))
}

/// The headers every dashboard answer carries.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/app.css"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A signed-in browser, for a page: without a live session, the page
/// answers with a way to the sign-in form instead.
pub struct Viewer(pub Session);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        // A page another site's page fetches (not a link followed) is
        // refused: a sibling subdomain's `<img>` must not hold streams.
        let navigating = parts
            .headers
            .get("sec-fetch-mode")
            .is_none_or(|m| m.as_bytes() == b"navigate");
        if session::from_elsewhere(&parts.headers) && !navigating {
            return Err(layout::error_page(
                StatusCode::FORBIDDEN,
                "a request from another site is refused for a session",
            ));
        }
        match token(state, &parts.headers).and_then(|t| state.sessions.find(t)) {
            Some(session) => Ok(Viewer(session)),
            None => Err(Redirect::to("/ui/signin").into_response()),
        }
    }
}

async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if token(&state, &headers)
        .and_then(|t| state.sessions.find(t))
        .is_some()
    {
        return Redirect::to("/").into_response();
    }
    layout::sign_in(StatusCode::OK, None)
}

/// Exchange a key for a session. The key is checked as a bearer key is,
/// brake included, and is forgotten once the session is open.
async fn sign_in(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let tls = secure(&state, &parts.headers);
    let refused = |status, message: &str| layout::sign_in(status, Some(Flash::error(message)));
    if let Err(e) = session::same_origin(&parts.uri, &parts.headers) {
        return refused(e.status(), e.message());
    }
    let Some(key) = read_form(body, "key").await else {
        return refused(StatusCode::BAD_REQUEST, "send the form with a key");
    };
    let mut bearer = HeaderMap::new();
    let Ok(value) = HeaderValue::from_str(&format!("Bearer {key}")) else {
        return refused(StatusCode::UNAUTHORIZED, "that key is not valid");
    };
    bearer.insert(header::AUTHORIZATION, value);
    let caller = match state.auth.authenticate(&bearer, ip(&parts)) {
        Ok(caller) => caller,
        Err(e) => return refused(e.status(), e.message()),
    };
    let token = match state.sessions.open(&caller) {
        Ok(token) => token,
        Err(e) => return refused(e.status(), e.message()),
    };
    tracing::info!(key = %caller.name, "dashboard sign-in");
    let mut response = Redirect::to("/").into_response();
    insert_cookie(&mut response, &session::set_cookie(&token, tls));
    response
}

/// End the session (a form carrying its CSRF token), then forget the cookie.
async fn sign_out(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let tls = secure(&state, &parts.headers);
    let Some(token) = token(&state, &parts.headers).map(str::to_string) else {
        return Redirect::to("/ui/signin").into_response();
    };
    if let Some(session) = state.sessions.find(&token) {
        let sent = read_form(body, "csrf").await.unwrap_or_default();
        if let Err(e) = session.check(&sent, &parts.uri, &parts.headers) {
            return e.into_response();
        }
        state.sessions.close(&token);
        tracing::info!(key = %session.caller.name, "dashboard sign-out");
    }
    let mut response = Redirect::to("/ui/signin").into_response();
    insert_cookie(&mut response, &session::set_cookie("", tls));
    response
}

/// The session token a request carries, if any.
pub fn token<'h>(state: &AppState, headers: &'h HeaderMap) -> Option<&'h str> {
    session::cookie(headers, state.server.tls.is_some())
}

/// API answers read with a session are the browser's alone: never kept
/// by a shared cache, which would not tell one cookie from another.
pub async fn private_to_sessions(request: Request, next: axum::middleware::Next) -> Response {
    let by_session = !request.headers().contains_key(header::AUTHORIZATION)
        && request
            .headers()
            .get(header::COOKIE)
            .is_some_and(|c| c.as_bytes().windows(13).any(|w| w == b"bosun_session"));
    let mut response = next.run(request).await;
    if by_session {
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.append(header::VARY, HeaderValue::from_static("Cookie"));
    }
    response
}

/// Whether the browser reached bosun over TLS: bosun's own, or a proxy's
/// that says so (`X-Forwarded-Proto: https`). Only ever adds `Secure`.
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.server.tls.is_some()
        || headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

fn insert_cookie(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}

/// The field `name` of a small urlencoded form.
async fn read_form(body: Body, name: &str) -> Option<String> {
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.ok()?;
    form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// What a page answers when the API refuses: the same status and message,
/// as a page.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        layout::error_page(self.0.status(), self.0.message())
    }
}
