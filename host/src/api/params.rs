//! The body of `POST …/actions/{a}`: read within the size and time limits,
//! parsed, and its params checked against what the action declares, so a
//! caller's mistake is a 4xx naming every problem instead of a failed job.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::ApiError;
use crate::plugins::bindings::ActionMeta;

/// The request body; it may also be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// The action's parameters; values may be strings, numbers or booleans.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
}

/// Read and parse the body: 413 past `limit` bytes, 408 past `timeout`,
/// 400 for malformed JSON.
pub async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<RunBody, ApiError> {
    let bytes = match tokio::time::timeout(timeout, to_bytes(body, limit)).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the request body did not arrive within {timeout:?}"),
            ));
        }
        Ok(Err(_)) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is over the limit of {limit} bytes"),
            ));
        }
        Ok(Ok(bytes)) => bytes,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(RunBody::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON of the form {{\"params\":{{…}}}}: {e}"),
        )
    })
}

/// Check `given` against `meta`'s declared params; 422 names every problem.
/// Returns the params as strings, in the declared order.
pub fn check_params(
    action: &str,
    meta: &ActionMeta,
    given: &Map<String, Value>,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut problems = Vec::new();
    let declared: Vec<&str> = meta.params.iter().map(|p| p.name.as_str()).collect();
    for name in given.keys() {
        if !declared.contains(&name.as_str()) {
            let accepted = if declared.is_empty() {
                "it takes none".to_string()
            } else {
                format!("it takes {}", declared.join(", "))
            };
            problems.push(format!("unknown param `{name}` ({accepted})"));
        }
    }
    let mut params = Vec::new();
    for spec in &meta.params {
        match given.get(&spec.name) {
            None if spec.required => {
                problems.push(format!("missing required param `{}`", spec.name));
            }
            None => {}
            Some(Value::String(s)) => params.push((spec.name.clone(), s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                params.push((spec.name.clone(), v.to_string()));
            }
            Some(_) => problems.push(format!(
                "param `{}` must be a string, number or boolean",
                spec.name
            )),
        }
    }
    if problems.is_empty() {
        return Ok(params);
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_params",
        format!("action `{action}`: {}", problems.join("; ")),
    ))
}
