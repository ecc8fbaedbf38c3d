//! The HTTP API: the front door for `curl`, CI systems and the CLI.
//!
//! [`router`] builds the whole app from its state, with no socket, so the
//! OpenAPI document and the routes come from one list and cannot drift
//! apart; [`server`] puts it on a listener with TLS, timeouts and graceful
//! shutdown. Every answer that is not a success is an [`ApiError`].

mod auth;
mod caller;
mod connections;
mod dashboard;
mod document;
mod error;
mod hooks;
mod idle;
mod jobs;
mod long_requests;
mod ops;
mod params;
mod plugins;
mod projects;
mod query;
pub mod server;
mod stream;
mod views;

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{Auth, Caller};
pub use connections::Connections;
pub use error::ApiError;
pub use long_requests::LongRequests;
pub use views::{JobErrorView, JobPage, JobView};

use crate::config::ServerConfig;
use crate::control::Control;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::plugins::Actions;
use crate::supervisor::ProjectHandle;

/// Everything a handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Keys and the failure brake.
    pub auth: Arc<Auth>,
    /// The job system.
    pub jobs: Jobs,
    /// Every project's actions.
    pub registry: Actions,
    /// Every project's processes.
    pub projects: Arc<ArcSwap<BTreeMap<String, ProjectHandle>>>,
    /// The metrics.
    pub metrics: Metrics,
    /// Limits of the HTTP server.
    pub server: Arc<ServerConfig>,
    /// Every project's confinement, for what it gets as of now.
    pub confinement: Arc<crate::confine::Confinement>,
    /// Waits and streams open, overall and per key.
    pub long_requests: Arc<LongRequests>,
    /// Asks the daemon to reload its config.
    pub control: Control,
    /// The projects' webhooks.
    pub hooks: Arc<crate::hooks::Hooks>,
    /// Places to read webhook bodies in, overall and per source.
    pub hook_bodies: Arc<Connections>,
    /// Uploaded and repository actions.
    pub catalog: Arc<crate::plugins::Catalog>,
    /// The dashboard's signed-in browsers.
    pub sessions: Arc<dashboard::Sessions>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bosun",
        description = "Supervise deployed projects and run sandboxed actions on them. \
                       Every error is `{\"error\":{\"code\",\"message\"}}`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "jobs", description = "Running actions and following their jobs"),
        (name = "projects", description = "Projects, processes and their logs"),
        (name = "plugins", description = "Actions a team uploads: versions, rollback, removal"),
        (name = "ops", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and the OpenAPI document describing exactly them.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(projects::list_projects))
        .routes(routes!(projects::get_project))
        .routes(routes!(projects::list_actions))
        .routes(routes!(
            jobs::run_action,
            plugins::upload_action,
            plugins::remove_action
        ))
        .routes(routes!(plugins::list_versions))
        .routes(routes!(plugins::rollback_action))
        .routes(routes!(projects::process_logs))
        .routes(routes!(projects::project_logs))
        .routes(routes!(hooks::list_deliveries))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::job_log))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::reload))
        .routes(routes!(ops::upgrade))
        .routes(routes!(ops::openapi))
        .split_for_parts()
}

impl AppState {
    /// A long-request place for `caller` on `project`: it ends when a
    /// reload revokes the caller's key, removes the project or changes its
    /// project key.
    fn hold_on(&self, caller: &Caller, project: &str) -> Result<long_requests::Held, ApiError> {
        Ok(self
            .long_requests
            .hold(caller)?
            .on(self.auth.project_revoked(project)))
    }
}

/// One fewer open under `key`; a key down to 0 is forgotten, so a map of
/// open connections or requests holds only the sources and keys that have
/// some.
fn count_down<K: std::hash::Hash + Eq>(counts: &mut std::collections::HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// The whole app. Past `max_concurrent_requests` in flight, requests are
/// refused at once with 503 rather than queued without bound.
pub fn router(state: AppState) -> Router {
    let (routes, _) = routes();
    let max = state.server.max_concurrent_requests;
    // Signed by a forge, not a bearer key: outside the API's document.
    routes
        .route("/hooks/{project}", axum::routing::post(hooks::receive))
        .merge(dashboard::routes())
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "overloaded",
                        "the server is handling too many requests; try again shortly",
                    )
                    .retry_after(1)
                }))
                .load_shed()
                // Global: `Router::layer` gives each route its own copy of a
                // layer, and a plain concurrency limit would count per route.
                .layer(GlobalConcurrencyLimitLayer::new(max)),
        )
        .layer(axum::middleware::from_fn(dashboard::private_to_sessions))
        // Outermost, so the answers of load shedding are counted too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::count_requests,
        ))
        .with_state(state)
}
