//! The body of `POST …/actions/{a}`: read within the size and time limits,
//! parsed, and its params checked against what the action declares, so a
//! caller's mistake is a 4xx naming every problem instead of a failed job.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::StatusCode;
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::ApiError;
use crate::plugins::bindings::ActionMeta;
use crate::plugins::{self, Given};

/// The request body; it may also be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// The action's parameters; values may be strings, numbers or booleans.
    #[serde(default)]
    #[schema(schema_with = param_values)]
    pub params: Map<String, Value>,
}

/// An object of strings, numbers and booleans. Which names an action takes
/// is the action's own (see `GET …/actions`): a name it does not declare
/// is a 422, which no schema of this one endpoint can say in advance.
fn param_values() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
    let value = ObjectBuilder::new().schema_type(SchemaType::from_iter([
        Type::String,
        Type::Number,
        Type::Boolean,
    ]));
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The action's parameters, by the names it declares; values may be strings, \
                 numbers or booleans.",
            ))
            .additional_properties(Some(value))
            .build(),
    )
}

/// How long a body may take before it counts as a long request.
const QUICK_BODY: Duration = Duration::from_millis(500);

/// Read and parse the body: 413 past `limit` bytes, 408 past `timeout`,
/// 400 for malformed JSON. A body still arriving after `QUICK_BODY` holds
/// what `slow` gives (a place among its key's long requests) until it is
/// in, or is refused with `slow`'s error: one key's trickled bodies cannot
/// take every request slot of the server, and quick ones cost nothing.
pub async fn read_body<H>(
    body: Body,
    limit: usize,
    timeout: Duration,
    slow: impl FnOnce() -> Result<H, ApiError>,
) -> Result<RunBody, ApiError> {
    let bytes = read_bytes(body, limit, timeout, slow).await?;
    json_object(&bytes, "{\"params\":{…}}")
}

/// A body that is empty (the default) or one JSON object of the form
/// `shape`. serde's derived structs also take a JSON array (their fields by
/// position, `[]` as all defaults), which no schema of ours allows.
pub fn json_object<T: DeserializeOwned + Default>(
    bytes: &[u8],
    shape: &str,
) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let invalid = |e: &dyn std::fmt::Display| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON of the form {shape}: {e}"),
        )
    };
    let object: Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| invalid(&e))?;
    serde_json::from_value(Value::Object(object)).map_err(|e| invalid(&e))
}

/// [`read_body`] without the parsing: the bytes as they came.
pub async fn read_bytes<H>(
    body: Body,
    limit: usize,
    timeout: Duration,
    slow: impl FnOnce() -> Result<H, ApiError>,
) -> Result<axum::body::Bytes, ApiError> {
    let too_slow = || {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request body did not arrive within {timeout:?}"),
        )
    };
    let read = to_bytes(body, limit);
    tokio::pin!(read);
    let started = tokio::time::Instant::now();
    let read = match tokio::time::timeout(QUICK_BODY.min(timeout), &mut read).await {
        Ok(read) => read,
        Err(_) if timeout <= QUICK_BODY => return Err(too_slow()),
        Err(_) => {
            let _held = slow()?;
            tokio::time::timeout_at(started + timeout, read)
                .await
                .map_err(|_| too_slow())?
        }
    };
    read.map_err(|_| too_large(limit))
}

/// A body of at most `limit` bytes, within `timeout`. Past the limit, the
/// rest is read and dropped (up to `drain` bytes in all, in the same time)
/// before the 413: a client still sending would otherwise see its
/// connection reset instead of the answer (outside tools send a whole
/// webhook or component before they read).
pub async fn read_drained(
    body: Body,
    limit: usize,
    drain: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    loop {
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => {
                seen = seen.saturating_add(chunk.len());
                if seen <= limit {
                    bytes.extend_from_slice(&chunk);
                } else {
                    bytes = Vec::new();
                    if seen > drain {
                        return Err(too_large(limit));
                    }
                }
            }
            Ok(Some(Err(_))) => {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    "the request body could not be read",
                ));
            }
            Err(_) if seen > limit => return Err(too_large(limit)),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!("the request body did not arrive within {timeout:?}"),
                ));
            }
        }
    }
    match seen > limit {
        true => Err(too_large(limit)),
        false => Ok(bytes),
    }
}

/// 413: a body over `limit` bytes.
pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is over the limit of {limit} bytes"),
    )
}

/// Check `given` against `meta`'s declared params (`plugins::check_params`,
/// the same check `bosun exec` makes); 422 names every problem. Returns the
/// params as strings, in the declared order.
pub fn check_params(
    action: &str,
    meta: &ActionMeta,
    given: &Map<String, Value>,
) -> Result<Vec<(String, String)>, ApiError> {
    let given = given
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(s) => Given::Text(s.clone()),
                Value::Number(_) | Value::Bool(_) => Given::Text(value.to_string()),
                _ => Given::Unusable,
            };
            (name.clone(), value)
        })
        .collect();
    plugins::check_params(action, meta, given).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            e.to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::plugins::bindings::ParamSpec;

    fn meta(declared: &BTreeMap<String, bool>) -> ActionMeta {
        ActionMeta {
            name: "act".into(),
            summary: String::new(),
            params: declared
                .iter()
                .map(|(name, required)| ParamSpec {
                    name: name.clone(),
                    summary: String::new(),
                    required: *required,
                    default: None,
                })
                .collect(),
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON numbers are finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,10}".prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 6, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("\\PC{0,4}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    proptest! {
        /// Params are taken exactly when every name is declared, every
        /// required one is there and every value is a string, number or
        /// boolean; then they come back as strings in the declared order.
        /// Otherwise the 422 names each name it did not take.
        #[test]
        fn params_are_taken_exactly_when_they_fit(
            declared in prop::collection::btree_map("[a-z]{1,3}", any::<bool>(), 0..4),
            given in prop::collection::btree_map("[a-z]{1,3}|\\PC{0,4}", json_value(), 0..5),
        ) {
            let given: Map<String, Value> = given.into_iter().collect();
            let unknown: Vec<&String> = given.keys().filter(|k| !declared.contains_key(*k)).collect();
            let fits = unknown.is_empty()
                && declared.iter().all(|(name, required)| !required || given.contains_key(name))
                && given.values().all(|v| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)));
            match check_params("act", &meta(&declared), &given) {
                Ok(params) => {
                    prop_assert!(fits);
                    let expected: Vec<(String, String)> = declared
                        .keys()
                        .filter_map(|name| {
                            let value = match given.get(name)? {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            Some((name.clone(), value))
                        })
                        .collect();
                    prop_assert_eq!(params, expected);
                }
                Err(e) => {
                    prop_assert!(!fits);
                    prop_assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
                    for name in unknown {
                        let named = format!("unknown param `{name}`");
                        prop_assert!(e.message().contains(&named), "{} misses {name:?}", e.message());
                    }
                }
            }
        }

        /// Any bytes under the limit are a body or a 400; never a panic.
        #[test]
        fn any_bytes_are_a_body_or_a_400(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let got = block_on(read_body(Body::from(bytes), 1024, Duration::from_secs(60), || Ok(())));
            if let Err(e) = got {
                prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            }
        }

        /// A body of params reads back as the same params; past the limit,
        /// the same body is a 413.
        #[test]
        fn a_body_reads_back_or_is_too_large(params in prop::collection::btree_map("\\PC{0,6}", json_value(), 0..6)) {
            let params: Map<String, Value> = params.into_iter().collect();
            let bytes = serde_json::to_vec(&serde_json::json!({ "params": params })).expect("JSON");
            let limit = bytes.len();
            let body = block_on(read_body(Body::from(bytes.clone()), limit, Duration::from_secs(60), || Ok(())))
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(body.params, params);
            let refused = block_on(read_body(Body::from(bytes), limit - 1, Duration::from_secs(60), || Ok(())));
            prop_assert_eq!(refused.map(|_| ()).map_err(|e| e.status()), Err(StatusCode::PAYLOAD_TOO_LARGE));
        }
    }
}
