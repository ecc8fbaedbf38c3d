//! The HTTP API's front door, over real HTTP on 127.0.0.1:0: who gets in,
//! what every kind of bad input gets back, slow and greedy clients, the
//! OpenAPI document against the router, metrics, and TLS.

use std::time::Duration;

use crate::common::server::{
    ADMIN, ADMIN_ALPHA, ALPHA_STATUS_ONLY, Api, BETA_PROJECT_KEY, Bosun, READ, RUN_ALPHA,
};
use crate::common::{until, until_ok};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send and return status, the error code (if any) and the raw headers.
async fn call(
    req: reqwest::RequestBuilder,
) -> (
    StatusCode,
    Option<String>,
    reqwest::header::HeaderMap,
    String,
) {
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string));
    (status, code, headers, text)
}

fn assert_error(
    got: &(
        StatusCode,
        Option<String>,
        reqwest::header::HeaderMap,
        String,
    ),
    status: u16,
    code: &str,
) {
    assert_eq!(got.0.as_u16(), status, "body: {}", got.3);
    assert_eq!(got.1.as_deref(), Some(code), "body: {}", got.3);
    let body: Value = serde_json::from_str(&got.3).expect("error bodies are JSON");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {}",
        got.3
    );
}

async fn project_names(b: &Bosun, key: &str) -> Vec<String> {
    let v: Value = b
        .req(Method::GET, "/v1/projects", Some(key))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect()
}

const NOOP: &str = "/v1/projects/alpha/actions/hostile?wait=30s";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_matrix_gives_each_caller_its_exact_answer() {
    let (_root, b) = Bosun::start("", "").await;
    let body = json!({"params": {"mode": "noop"}});

    let no_key = call(b.req(Method::POST, NOOP, None).json(&body)).await;
    assert_error(&no_key, 401, "unauthorized");
    assert_eq!(no_key.2["www-authenticate"], "Bearer realm=\"bosun\"");

    let wrong = call(b.req(Method::POST, NOOP, Some("bsk_wrong")).json(&body)).await;
    assert_error(&wrong, 401, "unauthorized");
    assert!(wrong.2.contains_key("www-authenticate"));
    assert!(
        !wrong.3.contains("bsk_wrong"),
        "the key is echoed: {}",
        wrong.3
    );

    let other_project = call(
        b.req(
            Method::POST,
            "/v1/projects/beta/actions/hostile",
            Some(RUN_ALPHA),
        )
        .header("X-Project-Key", BETA_PROJECT_KEY)
        .json(&body),
    )
    .await;
    assert_error(&other_project, 403, "forbidden");

    // Out of scope looks the same whether the project exists or not.
    let probe = call(b.req(Method::GET, "/v1/projects/no-such-project", Some(RUN_ALPHA))).await;
    assert_error(&probe, 403, "forbidden");
    let probe = call(b.req(Method::GET, "/v1/projects/no-such-project", None)).await;
    assert_error(&probe, 401, "unauthorized");
    let exists = call(b.req(Method::GET, "/v1/projects/no-such-project", Some(ADMIN))).await;
    assert_error(&exists, 404, "not_found");

    let other_action = call(
        b.req(Method::POST, NOOP, Some(ALPHA_STATUS_ONLY))
            .json(&body),
    )
    .await;
    assert_error(&other_action, 403, "forbidden");
    let allowed = call(b.req(
        Method::POST,
        "/v1/projects/alpha/actions/status?wait=30s",
        Some(ALPHA_STATUS_ONLY),
    ))
    .await;
    assert_eq!(allowed.0, StatusCode::OK, "{}", allowed.3);

    let read_post = call(b.req(Method::POST, NOOP, Some(READ)).json(&body)).await;
    assert_error(&read_post, 403, "forbidden");
    let read_get = call(b.req(Method::GET, "/v1/projects/alpha", Some(READ))).await;
    assert_eq!(read_get.0, StatusCode::OK);

    // Without its project key, beta answers as a project that does not
    // exist: a "*" key cannot tell which projects are there.
    let beta = "/v1/projects/beta/actions/hostile?wait=30s";
    let nowhere = "/v1/projects/nowhere/actions/hostile?wait=30s";
    let missing = call(b.req(Method::POST, beta, Some(ADMIN)).json(&body)).await;
    let unknown = call(b.req(Method::POST, nowhere, Some(ADMIN)).json(&body)).await;
    assert_error(&missing, 404, "not_found");
    assert_eq!(missing.3.replace("beta", "nowhere"), unknown.3);
    let wrong_pk = call(
        b.req(Method::POST, beta, Some(ADMIN))
            .header("X-Project-Key", "not-it")
            .json(&body),
    )
    .await;
    let wrong_unknown = call(
        b.req(Method::POST, nowhere, Some(ADMIN))
            .header("X-Project-Key", "not-it")
            .json(&body),
    )
    .await;
    assert_error(&wrong_pk, 404, "not_found");
    assert_eq!(wrong_pk.3.replace("beta", "nowhere"), wrong_unknown.3);
    let right = call(
        b.req(Method::POST, beta, Some(ADMIN))
            .header("X-Project-Key", BETA_PROJECT_KEY)
            .json(&body),
    )
    .await;
    assert_eq!(right.0, StatusCode::OK, "{}", right.3);
    let job: Value = serde_json::from_str(&right.3).expect("job");
    assert_eq!(
        job["requested_by"], "admin",
        "the job records the key's name"
    );
    assert!(
        !right.3.contains(ADMIN),
        "the key is in the job: {}",
        right.3
    );

    // A listing shows only what the key reaches; beta needs its project key.
    assert_eq!(project_names(&b, RUN_ALPHA).await, ["alpha"]);
    assert_eq!(
        project_names(&b, ADMIN).await,
        ["alpha"],
        "beta is hidden without its project key"
    );

    // Another tenant's job is not found, not forbidden: ids do not leak.
    let id = job["id"].as_str().expect("id");
    let foreign = call(b.req(Method::GET, &format!("/v1/jobs/{id}"), Some(RUN_ALPHA))).await;
    assert_error(&foreign, 404, "not_found");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_from_one_address_are_braked() {
    let (_root, b) = Bosun::start("auth_fail_limit = 3\nauth_fail_window = \"1m\"", "").await;
    for _ in 0..3 {
        let r = call(b.req(Method::GET, "/v1/projects", Some("bsk_guess"))).await;
        assert_error(&r, 401, "unauthorized");
    }
    let braked = call(b.req(Method::GET, "/v1/projects", Some("bsk_guess"))).await;
    assert_error(&braked, 429, "too_many_auth_failures");
    let retry: u64 = braked.2["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Even a right key waits out the window: guessing gains nothing.
    let good = call(b.req(Method::GET, "/v1/projects", Some(ADMIN))).await;
    assert_error(&good, 429, "too_many_auth_failures");
    // Health needs no key and is never braked.
    let health = call(b.req(Method::GET, "/healthz", None)).await;
    assert_eq!(health.0, StatusCode::OK);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_status_and_code() {
    let (_root, b) = Bosun::start("max_body = \"2KiB\"", "").await;
    let post = |path: &str| b.req(Method::POST, path, Some(ADMIN));

    let malformed = call(
        post(NOOP)
            .header("content-type", "application/json")
            .body("{\"params\": "),
    )
    .await;
    assert_error(&malformed, 400, "invalid_json");
    // serde's derived structs take an array as their fields by position.
    for not_object in ["[1,2]", "[]", "[{\"mode\": \"noop\"}]", "\"x\"", "null"] {
        let resp = call(post(NOOP).body(not_object)).await;
        assert_error(&resp, 400, "invalid_json");
    }
    let extra_field =
        call(post(NOOP).json(&json!({"params": {"mode": "noop"}, "parms": {}}))).await;
    assert_error(&extra_field, 400, "invalid_json");

    let unknown =
        call(post(NOOP).json(&json!({"params": {"mode": "noop", "colour": "red", "size": 1}})))
            .await;
    assert_error(&unknown, 422, "invalid_params");
    assert!(
        unknown.3.contains("`colour`") && unknown.3.contains("`size`"),
        "{}",
        unknown.3
    );
    let missing = call(post(NOOP).json(&json!({"params": {}}))).await;
    assert_error(&missing, 422, "invalid_params");
    assert!(
        missing.3.contains("missing required param `mode`"),
        "{}",
        missing.3
    );
    let wrong_type =
        call(post(NOOP).json(&json!({"params": {"mode": ["noop"], "count": {"n": 1}}}))).await;
    assert_error(&wrong_type, 422, "invalid_params");
    assert!(
        wrong_type.3.contains("`mode`") && wrong_type.3.contains("`count`"),
        "{}",
        wrong_type.3
    );
    let typed =
        call(post(NOOP).json(&json!({"params": {"mode": "slow", "count": 1, "ms": 1}}))).await;
    assert_eq!(
        typed.0,
        StatusCode::OK,
        "numbers are accepted as params: {}",
        typed.3
    );

    let no_action = call(post("/v1/projects/alpha/actions/deploy")).await;
    assert_error(&no_action, 404, "not_found");
    let no_job = call(b.req(Method::GET, "/v1/jobs/0000-none", Some(ADMIN))).await;
    assert_error(&no_job, 404, "not_found");
    let no_route = call(b.req(Method::GET, "/v2/everything", Some(ADMIN))).await;
    assert_error(&no_route, 404, "no_route");
    let method = call(b.req(Method::DELETE, "/v1/jobs", Some(ADMIN))).await;
    assert_error(&method, 405, "method_not_allowed");
    let method = call(b.req(
        Method::GET,
        "/v1/projects/alpha/actions/hostile",
        Some(ADMIN),
    ))
    .await;
    assert_error(&method, 405, "method_not_allowed");

    let big = json!({"params": {"mode": "x".repeat(4096)}});
    let too_big = call(post(NOOP).json(&big)).await;
    assert_error(&too_big, 413, "payload_too_large");

    let bad_wait = call(
        post("/v1/projects/alpha/actions/hostile?wait=soon")
            .json(&json!({"params": {"mode": "noop"}})),
    )
    .await;
    assert_error(&bad_wait, 400, "invalid_query");
    let bad_state = call(b.req(Method::GET, "/v1/jobs?state=happy", Some(ADMIN))).await;
    assert_error(&bad_state, 400, "invalid_query");
    let bad_limit = call(b.req(Method::GET, "/v1/jobs?limit=0", Some(ADMIN))).await;
    assert_error(&bad_limit, 400, "invalid_query");
    let unknown_query = call(b.req(Method::GET, "/v1/jobs?colour=red", Some(ADMIN))).await;
    assert_error(&unknown_query, 400, "invalid_query");

    // Nothing above created a job: refused input is not half-accepted.
    let jobs = b.get_json("/v1/jobs", ADMIN).await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{jobs}");

    // The one good job ran the plugin with the numbers as strings.
    assert_eq!(
        jobs["jobs"][0]["params"],
        json!({"mode": "slow", "count": "1", "ms": "1"})
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_time_out() {
    let (_root, b) = Bosun::start("read_timeout = \"500ms\"", "").await;
    let addr = b.daemon.as_ref().expect("running").addr();

    // Headers that never finish: the connection is closed.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept a header-less connection open for 30 s"
    );

    // A body that never finishes: 408 with the JSON error.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/projects/alpha/actions/hostile HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"params\":"
    );
    slow.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut buf))
        .await
        .expect("answered within 30 s")
        .expect("read");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_past_the_concurrency_limit_is_shed_not_queued() {
    let (_root, b) = Bosun::start("max_concurrent_requests = 2", "").await;
    let slow = json!({"mode": "slow", "count": 30, "ms": 50});
    let held: Vec<_> = ["alpha", "beta"]
        .into_iter()
        .map(|project| {
            let (api, slow) = (Api::clone(&b), slow.clone());
            tokio::spawn(async move { api.run(project, "hostile", "?wait=60s", slow, ADMIN).await })
        })
        .collect();
    // Wait until both slow jobs are running, so both requests hold a slot.
    let shed = until("a third request shed while two were held", async || {
        let r = call(b.req(Method::GET, "/healthz", None)).await;
        (r.0 == StatusCode::SERVICE_UNAVAILABLE).then_some(r)
    })
    .await;
    assert_error(&shed, 503, "overloaded");
    assert!(shed.2.contains_key("retry-after"));
    for h in held {
        let (status, job) = h.await.expect("task");
        assert_eq!(status, StatusCode::OK, "{job}");
        assert_eq!(job["state"], "succeeded");
    }
    // The server gives a place back as it answers; the client may read the
    // answer first, so this waits for the place rather than racing it.
    until("capacity back once they end", async || {
        (call(b.req(Method::GET, "/healthz", None)).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let metrics = b
        .req(Method::GET, "/metrics", Some(ADMIN))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("bosun_http_requests_total{status=\"503\"}"),
        "shed requests are counted:\n{metrics}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_hangs_up_on_a_quiet_process_leaves_nothing_behind() {
    const QUIET: &str = r#"
[[projects.alpha.processes]]
name = "quiet"
command = "sleep"
args = ["100000"]
instances = 4
"#;
    // Room for followers the server has yet to see go, however slowly.
    let room = "max_long_requests = 1000\nmax_long_requests_per_key = 1000";
    let (_root, b) = Bosun::start(room, QUIET).await;
    b.settled_project("alpha", "running").await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let follow_and_hang_up = || async {
        let resp = b
            .req(
                Method::GET,
                "/v1/projects/alpha/processes/quiet/logs?follow=1",
                Some(READ),
            )
            .send()
            .await
            .expect("follow");
        assert_eq!(resp.status(), StatusCode::OK);
    };
    follow_and_hang_up().await;
    let before = tasks();
    // Each follow of 4 quiet instances started 4 forwarders; none may stay
    // once its follower is gone, though no line ever comes.
    for _ in 0..50 {
        follow_and_hang_up().await;
    }
    until_ok("the followers' tasks to end", async || match tasks() {
        now if now <= before + 20 => Ok(()),
        now => Err(format!(
            "{now} tasks alive, {before} before 50 followers came and went"
        )),
    })
    .await;
    b.stop().await;
}

/// Fill a path template's `{param}`s with something plausible.
fn fill(path: &str) -> String {
    path.replace("{project}", "alpha")
        .replace("{action}", "status")
        .replace("{name}", "web")
        .replace("{id}", "00000000-0000-0000-0000-000000000000")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_router() {
    let (_root, b) = Bosun::start("", "").await;
    let doc: Value = b
        .req(Method::GET, "/openapi.json", None)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let r = call(b.req(m.clone(), &fill(path), Some(ADMIN))).await;
            assert_ne!(
                r.1.as_deref(),
                Some("no_route"),
                "{method} {path} is documented but not routed"
            );
            assert_ne!(
                r.0,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 20, "every route is documented once");
    let operations: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let links: Vec<&Value> = paths
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .filter_map(|op| op["responses"].as_object())
        .flat_map(|responses| responses.values())
        .filter_map(|response| response["links"].as_object())
        .flat_map(|links| links.values())
        .collect();
    assert!(
        links.len() >= 6,
        "a job's answer links to its job, log and cancel"
    );
    for link in links {
        let target = link["operationId"]
            .as_str()
            .expect("a link names its operationId");
        assert!(
            operations.contains(&target),
            "a link to no operation: {link}"
        );
    }
    for required in [
        "/v1/projects/{project}/actions/{action}",
        "/v1/jobs/{id}/log",
        "/v1/jobs/{id}/cancel",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(required),
            "{required} missing from the document"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_job_outcomes_for_admins_only() {
    let (_root, b) = Bosun::start("", "").await;
    let (status, _) = b.hostile("?wait=30s", json!({"mode": "noop"}), ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = b
        .hostile("?wait=30s", json!({"mode": "error"}), ADMIN)
        .await;
    assert_eq!(status, StatusCode::OK);
    let denied = call(b.req(Method::GET, "/metrics", Some(RUN_ALPHA))).await;
    assert_error(&denied, 403, "forbidden");
    let text = b.get_text("/metrics", ADMIN).await;
    for needle in [
        "bosun_jobs_total{project=\"alpha\",action=\"hostile\",state=\"succeeded\"} 1",
        "bosun_jobs_total{project=\"alpha\",action=\"hostile\",state=\"failed\"} 1",
        "bosun_job_run_seconds_count{project=\"alpha\",action=\"hostile\"} 2",
        "bosun_queue_depth{project=\"alpha\"} 0",
        "bosun_http_requests_total{status=\"403\"} 1",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    assert!(
        !text.contains("beta"),
        "beta is shown without its project key:\n{text}"
    );

    // Each admin sees the projects it reaches, and server-wide series only
    // when it reaches every project.
    let (status, _) = b.run("beta", "status", "?wait=30s", json!({}), ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    let with_key = b
        .req(Method::GET, "/metrics", Some(ADMIN))
        .header("X-Project-Key", BETA_PROJECT_KEY)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    assert!(
        with_key
            .contains("bosun_jobs_total{project=\"beta\",action=\"status\",state=\"succeeded\"} 1"),
        "{with_key}"
    );
    let alpha_only = b.get_text("/metrics", ADMIN_ALPHA).await;
    assert!(
        alpha_only.contains("bosun_queue_depth{project=\"alpha\"} 0"),
        "{alpha_only}"
    );
    assert!(!alpha_only.contains("beta"), "{alpha_only}");
    assert!(
        !alpha_only.contains("bosun_http_requests_total{"),
        "{alpha_only}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_with_the_configured_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let dir = tempfile::TempDir::new().expect("temp");
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).expect("write cert");
    std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).expect("write key");
    let tls = format!(
        "tls = {{ cert = {:?}, key = {:?} }}",
        dir.path().join("cert.pem"),
        dir.path().join("key.pem")
    );
    let (_root, b) = Bosun::start(&tls, "").await;
    assert!(b.url.starts_with("https://"), "{}", b.url);
    let addr = b.daemon.as_ref().expect("running").addr();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("trust the cert");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let exchange = async |request: String| {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
        tls.write_all(request.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.expect("read");
        String::from_utf8_lossy(&buf).into_owned()
    };
    let text =
        exchange("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into())
            .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("{\"status\":\"ok\"}"), "{text}");

    // The dashboard's session cookie is a Secure `__Host-` cookie under TLS.
    let form = format!("key={ADMIN}");
    let text = exchange(format!(
        "POST /ui/signin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    ))
    .await;
    let cookie = text
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: __host-bosun_session=")
        })
        .unwrap_or_else(|| panic!("a session cookie: {text}"));
    assert!(
        cookie.contains("; HttpOnly; SameSite=Strict") && cookie.trim_end().ends_with("; Secure"),
        "{cookie}"
    );

    // Plain HTTP on the TLS port gets nothing useful.
    let plain = reqwest::get(format!("http://{addr}/healthz")).await;
    assert!(plain.is_err() || !plain.expect("resp").status().is_success());
    b.stop().await;
}
