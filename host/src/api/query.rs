//! The values a request carries in its path and query string, each decoded
//! beside the schema that documents it, so `/openapi.json` and the server
//! accept the same strings: anything the document allows is served,
//! anything else is a JSON 400 naming the value.

use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::Uri;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use super::error::ApiError;
use crate::jobs::{JobErrorKind, JobState};

/// What `wait` takes: whole seconds, or a number with one unit.
const WAIT_PATTERN: &str = "^[0-9]+(ms|s|m|h)?$";
/// Items per page of a list (jobs, deliveries) by default, and at most.
const PAGE_DEFAULT: u32 = 50;
const PAGE_MAX: u32 = 500;

/// What a flag such as `follow` takes; the empty string (`?follow`) is on.
const FLAG_VALUES: [&str; 5] = ["", "1", "true", "0", "false"];

/// Path parameters, refused as a JSON 400 like every other error (axum's
/// own answer to, say, a `%FF` in a path is plain text).
pub(super) struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

/// The query string, decoded, or the JSON 400 that says what is wrong
/// with it (as [`ApiPath`] for the path).
pub(super) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> ApiQuery<T> {
    /// Decode the query of `uri`.
    pub(super) fn from_uri(uri: &Uri) -> Result<Self, ApiError> {
        Query::try_from_uri(uri)
            .map(|Query(q)| Self(q))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Self::from_uri(&parts.uri)
    }
}

/// A list's page size: `limit`, else the default; 400 outside 1-500.
pub(super) fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("`limit` must be 1-{PAGE_MAX}"),
        ));
    }
    Ok(limit)
}

/// A flag: absent, `0` or `false` is off; `1`, `true` or empty is on.
pub(super) fn flag(value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("0" | "false") => Ok(false),
        Some("" | "1" | "true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "invalid_query",
            format!("expected 1, true, 0 or false, found `{other}`"),
        )),
    }
}

/// The schema of a flag.
pub(super) fn flag_schema() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(FLAG_VALUES))
            .build(),
    )
}

/// The schema of a job state, in a query or an answer.
pub(super) fn job_state_schema() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(JobState::ALL.map(JobState::as_str)))
            .build(),
    )
}

/// The schema of a job error's kind.
pub(super) fn job_error_kind_schema() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(JobErrorKind::ALL.map(JobErrorKind::as_str)))
            .build(),
    )
}

/// `wait`, capped at `max`: `30` (seconds), `500ms`, `30s`, `2m` or `1h`.
/// A number too large to count is as long as `max`.
pub(super) fn parse_wait(wait: Option<&str>, max: Duration) -> Result<Option<Duration>, ApiError> {
    let Some(text) = wait else { return Ok(None) };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let per_unit = match unit {
        "ms" => Some(Duration::from_millis(1)),
        "" | "s" => Some(Duration::from_secs(1)),
        "m" => Some(Duration::from_secs(60)),
        "h" => Some(Duration::from_secs(3600)),
        _ => None,
    };
    let (Some(per_unit), false) = (per_unit, number.is_empty()) else {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "`wait` must be seconds or a duration such as 500ms, 30s, 2m or 1h, found `{text}`"
            ),
        ));
    };
    let wait = number
        .parse::<u32>()
        .ok()
        .and_then(|n| per_unit.checked_mul(n))
        .unwrap_or(max);
    Ok(Some(wait.min(max)))
}

/// The schema of `wait`.
pub(super) fn wait_schema() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(WAIT_PATTERN))
            .examples(["30s"])
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use regex::Regex;

    use super::*;

    const MAX: Duration = Duration::from_secs(600);

    #[test]
    fn waits_read_as_their_units() {
        let read = |s| parse_wait(Some(s), MAX).expect(s).expect("some");
        assert_eq!(read("30"), Duration::from_secs(30));
        assert_eq!(read("500ms"), Duration::from_millis(500));
        assert_eq!(read("2m"), Duration::from_secs(120));
        assert_eq!(read("1h"), MAX);
        assert_eq!(read("99999999999999999999999s"), MAX);
        assert_eq!(parse_wait(None, MAX).expect("none"), None);
        for bad in ["", "s", "soon", "1 m", "-1", "1.5s", "2m30s", "1d", "３0"] {
            assert!(parse_wait(Some(bad), MAX).is_err(), "{bad:?} was taken");
        }
    }

    proptest! {
        /// The decoder takes exactly what the documented pattern allows,
        /// and never waits longer than `max`.
        #[test]
        fn wait_takes_exactly_its_pattern(text in "[0-9]{0,25}(ms|s|m|h|d|x|)|\\PC{0,12}") {
            let documented = Regex::new(WAIT_PATTERN).expect("pattern").is_match(&text);
            match parse_wait(Some(&text), MAX) {
                Ok(Some(wait)) => prop_assert!(documented && wait <= MAX, "{text:?}"),
                Ok(None) => prop_assert!(false, "a value read as none"),
                Err(e) => prop_assert!(!documented && e.status().is_client_error(), "{text:?}"),
            }
        }

        /// A flag takes exactly its documented values.
        #[test]
        fn flag_takes_exactly_its_values(text in "(|0|1|true|false|yes|TRUE)|\\PC{0,8}") {
            prop_assert_eq!(flag(Some(&text)).is_ok(), FLAG_VALUES.contains(&text.as_str()));
        }
    }
}
