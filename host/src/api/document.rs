//! The OpenAPI document as served: utoipa's, with what a per-endpoint
//! annotation cannot say.
//!
//! - **Answers every endpoint can give.** Load shedding (503) happens
//!   before any handler; the auth brake (429) and an internal error (500)
//!   before or beside any keyed handler; a malformed path (400) wherever
//!   there are path parameters. Writing them on every handler would be
//!   copied text that drifts; they are added here, once.
//! - **Links in camel case.** utoipa 5 writes a Link object's fields in
//!   snake case (`operation_id`); the specification and every client that
//!   follows links (schemathesis's stateful phase among them) read
//!   `operationId`.

use serde_json::{Map, Value, json};

/// The document, as `GET /openapi.json` serves it.
pub fn openapi_json() -> Value {
    let mut doc = serde_json::to_value(super::routes().1).unwrap_or_default();
    let operations = doc
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|operations| operations.values_mut())
        .filter_map(Value::as_object_mut);
    for operation in operations {
        add_shared_answers(operation);
        let responses = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut);
        for response in responses.into_iter().flat_map(|r| r.values_mut()) {
            camel_case_links(response);
        }
    }
    doc
}

fn add_shared_answers(operation: &mut Map<String, Value>) {
    let keyed = operation.contains_key("security");
    let has_path_params = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "path"));
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut add = |status: &str, description: &str| {
        responses.entry(status).or_insert_with(|| {
            json!({
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            })
        });
    };
    add(
        "503",
        "Over `max_concurrent_requests` (`overloaded`), or shutting down",
    );
    if has_path_params {
        add("400", "A malformed path (`invalid_path`)");
    }
    if keyed {
        add(
            "429",
            "Too many failed authentications from this address (`too_many_auth_failures`)",
        );
        add(
            "500",
            "A bosun bug or a broken state dir; the details are in bosun's log",
        );
    }
}

fn camel_case_links(response: &mut Value) {
    let links = response.get_mut("links").and_then(Value::as_object_mut);
    for link in links.into_iter().flat_map(|l| l.values_mut()) {
        let Some(link) = link.as_object_mut() else {
            continue;
        };
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.to_string(), value);
            }
        }
    }
}
