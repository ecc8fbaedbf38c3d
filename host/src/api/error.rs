//! Every failure the API answers with: a status, a stable `code` and a
//! message meant for the caller, as `{"error":{"code","message"}}`.
//!
//! Each domain error becomes an answer here, in one `From` per error type,
//! so a handler says `?` and every route answers the same failure alike.
//!
//! Messages never carry internals: a store failure is logged in full and
//! answered with a plain "internal error". Keys never appear in either.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

/// The JSON body of every error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable word to branch on, e.g. `queue_full`.
    code: String,
    /// What happened, in words.
    message: String,
}

impl ApiError {
    /// An error with any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Add a `Retry-After` of `seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// 401: no key, or a key that is not valid.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403: a valid key, out of its scope.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400 with a specific code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 500, logging the detail and answering without it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details",
        )
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message, as the answer gives it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"bosun\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<crate::jobs::SubmitError> for ApiError {
    fn from(e: crate::jobs::SubmitError) -> Self {
        use crate::jobs::SubmitError;
        match e {
            SubmitError::QueueFull { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string()).retry_after(1)
            }
            SubmitError::UnknownProject(_) => Self::not_found(e.to_string()),
            SubmitError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            )
            .retry_after(5),
            SubmitError::Store(e) => Self::internal(e),
        }
    }
}

impl From<crate::jobs::CancelError> for ApiError {
    fn from(e: crate::jobs::CancelError) -> Self {
        use crate::jobs::CancelError;
        match e {
            CancelError::NotFound(_) => Self::not_found(e.to_string()),
            CancelError::Finished(_) => {
                Self::new(StatusCode::CONFLICT, "job_finished", e.to_string())
            }
            CancelError::Store(e) => Self::internal(e),
        }
    }
}

impl From<crate::supervisor::SupervisorError> for ApiError {
    fn from(e: crate::supervisor::SupervisorError) -> Self {
        use crate::supervisor::SupervisorError;
        match e {
            SupervisorError::NotFound(_) => Self::not_found(e.to_string()),
            SupervisorError::Failed(_) | SupervisorError::Timeout(_) => Self::internal(e),
        }
    }
}

impl From<crate::plugins::CatalogError> for ApiError {
    fn from(e: crate::plugins::CatalogError) -> Self {
        use crate::plugins::CatalogError;
        let message = e.to_string();
        match e {
            CatalogError::NoProject(_)
            | CatalogError::NotUploaded(_)
            | CatalogError::NoVersion { .. } => Self::not_found(message),
            CatalogError::NotAllowed(_) => {
                Self::new(StatusCode::FORBIDDEN, "uploads_not_allowed", message)
            }
            CatalogError::Revoked => Self::unauthorized("key_revoked", message),
            CatalogError::TooMany(_) => {
                Self::new(StatusCode::CONFLICT, "too_many_actions", message)
            }
            CatalogError::NotReplaceable(_) => {
                Self::new(StatusCode::CONFLICT, "action_not_replaceable", message)
            }
            CatalogError::TooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            CatalogError::Invalid(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_plugin", message)
            }
            CatalogError::Store(e) => Self::internal(format!("{e:#}")),
        }
    }
}

impl From<crate::jobs::StoreError> for ApiError {
    fn from(e: crate::jobs::StoreError) -> Self {
        Self::internal(e)
    }
}

/// The fallback for paths no route has.
pub async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such endpoint; GET /openapi.json lists them",
    )
}

/// The fallback for a known path with the wrong method.
pub async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; GET /openapi.json lists them",
    )
}
