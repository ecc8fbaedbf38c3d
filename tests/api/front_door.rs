//! The front door under hostile load, against the real `bosun serve` over
//! real TCP: silent, half-sent and idle connections are closed; connection
//! caps refuse new connections (overall and per address) while open ones
//! are served; one key saturating its waits and streams gets 429 while
//! other tenants are served; and under all of it at once, bosun's file
//! descriptors stay bounded and other tenants still get answers.
//!
//! Clients bind distinct loopback addresses (127.0.0.2, …: all of 127/8 is
//! loopback on Linux) to stand for distinct hosts.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::common::server::{
    ADMIN, BETA_PROJECT_KEY, BosunProcess, READ, RUN_ALPHA, RUN_BETA, TICKER, config_dir,
    config_text,
};
use crate::common::{until, until_ok};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// A connection to `server` from the loopback address `from`.
async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from.parse().expect("ip"), 0))
        .expect("bind a loopback address");
    socket.connect(server).await.expect("connect")
}

/// Everything the server sends until it closes the connection, or `None`
/// if it is still open after a minute.
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

/// One HTTP/1.1 request on an open connection; the answer's head.
async fn request(stream: &mut TcpStream, path: &str) -> String {
    try_request(stream, path).await.expect("an answer")
}

/// The same, or `None` if the connection was closed or reset instead (a
/// refused connection may be reset before the request is even sent).
async fn try_request(stream: &mut TcpStream, path: &str) -> Option<String> {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: bosun\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf))
        .await
        .expect("an answer or a close within a minute")
        .ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// bosun's open file descriptors.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// This test process's descriptors: as many as its hard limit allows.
fn raise_own_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    hard
}

fn serve(server: &str, extra: &str) -> (tempfile::TempDir, BosunProcess) {
    let root = config_dir(&format!("{}{extra}", config_text(server, "")));
    let bosun = BosunProcess::start(root.path());
    (root, bosun)
}

fn addr(b: &BosunProcess) -> SocketAddr {
    b.url
        .trim_start_matches("http://")
        .parse()
        .expect("the URL is an address")
}

/// An HTTP client whose connections come from the loopback address `from`.
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().expect("ip"))
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

async fn error_code(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    if status.is_success() {
        // An open stream: its body never ends.
        return (status, String::new());
    }
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_half_sent_and_idle_connections_are_closed_after_read_timeout() {
    let (_root, b) = serve("read_timeout = \"1s\"", "");
    let server = addr(&b);
    b.cgroups_made().await;
    let baseline = fds(b.pid());
    // An HTTP/2 connection with its preface and settings, and no stream.
    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let kinds: [(&str, &[u8]); 4] = [
        ("silent", b""),
        ("half an HTTP/2 preface", b"PRI * HTTP/2.0\r\n"),
        (
            "half a request",
            b"GET /healthz HTTP/1.1\r\nhost: bosun\r\n",
        ),
        ("an idle HTTP/2 connection", &h2),
    ];
    let mut conns = Vec::new();
    for (kind, sent) in kinds {
        for _ in 0..10 {
            let mut s = connect_from("127.0.0.2", server).await;
            s.write_all(sent).await.expect("send");
            conns.push((kind, s));
        }
    }
    // An HTTP/1.1 keep-alive connection, idle after one answer.
    let mut kept = connect_from("127.0.0.2", server).await;
    assert!(
        request(&mut kept, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    conns.push(("an idle keep-alive connection", kept));
    for (kind, s) in &mut conns {
        assert!(
            until_closed(s).await.is_some(),
            "{kind}: still open a minute after read_timeout"
        );
    }
    until_ok(
        "bosun's descriptors back to its baseline",
        async || match fds(b.pid()) {
            now if now <= baseline + 2 => Ok(()),
            now => Err(format!("bosun holds {now} descriptors, {baseline} before")),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_caps_new_connections_get_503_and_open_ones_are_served() {
    let (_root, b) = serve(
        "read_timeout = \"60s\"\nmax_connections = 12\nmax_connections_per_address = 8",
        "",
    );
    let server = addr(&b);
    let mut flood = Vec::new();
    for _ in 0..8 {
        flood.push(connect_from("127.0.0.2", server).await);
    }
    // Connections are accepted in order: the ninth from one address is over
    // its share.
    let mut ninth = connect_from("127.0.0.2", server).await;
    let refused = until_closed(&mut ninth).await.expect("closed at once");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );

    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(connect_from("127.0.0.3", server).await);
    }
    let mut over = connect_from("127.0.0.4", server).await;
    let refused = until_closed(&mut over).await.expect("closed at once");
    assert!(refused.contains("too_many_connections"), "{refused}");

    // The open ones are served.
    let answer = request(&mut flood[0], "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = request(&mut others[3], "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Once some close, new connections get in again.
    flood.truncate(2);
    until("a slot to come back", async || {
        let mut s = connect_from("127.0.0.4", server).await;
        try_request(&mut s, "/healthz")
            .await
            .filter(|answer| answer.starts_with("HTTP/1.1 200"))
    })
    .await;
}

/// Open a log follow; the response is the open stream.
async fn follow(client: &reqwest::Client, url: &str, path: &str, key: &str) -> reqwest::Response {
    client
        .get(format!("{url}{path}"))
        .bearer_auth(key)
        .header("X-Project-Key", BETA_PROJECT_KEY)
        .send()
        .await
        .expect("follow sent")
}

/// Project beta's own ticker, so its log can be followed.
const BETA_TICKER: &str = r#"
[[projects.beta.processes]]
name = "ticker"
command = "sh"
args = ["-c", "while true; do echo beta; sleep 0.1; done"]
"#;

async fn job_count(b: &BosunProcess) -> usize {
    let page = b.get_json("/v1/jobs?project=alpha", ADMIN).await;
    page["jobs"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_share_of_waits_and_streams_gets_429_while_others_are_served() {
    let (_root, b) = serve(
        "max_long_requests = 5\nmax_long_requests_per_key = 3",
        &format!("{TICKER}{BETA_TICKER}"),
    );
    let alpha_logs = "/v1/projects/alpha/logs?follow=1";
    let client = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let s = follow(&client, &b.url, alpha_logs, RUN_ALPHA).await;
        assert_eq!(s.status(), StatusCode::OK);
        streams.push(s);
    }
    let (status, code) = error_code(follow(&client, &b.url, alpha_logs, RUN_ALPHA).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_long_requests")
    );
    // A wait over the share is refused before its job exists.
    let before = job_count(&b).await;
    let (status, _) = b
        .run("alpha", "status", "?wait=30s", json!({}), RUN_ALPHA)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(job_count(&b).await, before, "a refused run left a job");
    // Without a wait, the same tenant's run is accepted.
    let (status, _) = b.run("alpha", "status", "", json!({}), RUN_ALPHA).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Another tenant is served: a wait, and a stream of its own.
    let (status, job) = b
        .run("beta", "status", "?wait=30s", json!({}), RUN_BETA)
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let beta = follow(&client, &b.url, "/v1/projects/beta/logs?follow=1", RUN_BETA).await;
    assert_eq!(beta.status(), StatusCode::OK);
    let admin = follow(&client, &b.url, alpha_logs, ADMIN).await;
    assert_eq!(admin.status(), StatusCode::OK);
    // Five open: the server is full for every key.
    let (status, code) = error_code(follow(&client, &b.url, alpha_logs, READ).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
    );

    // A stream closed by its client gives its place back.
    streams.pop();
    until("the place given back", async || {
        let s = follow(&client, &b.url, alpha_logs, RUN_ALPHA).await;
        (s.status() == StatusCode::OK).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_trickled_bodies_count_against_its_share_not_the_servers() {
    let (_root, b) = serve(
        "read_timeout = \"60s\"\nmax_long_requests = 5\nmax_long_requests_per_key = 3",
        "",
    );
    let server = addr(&b);
    // Four runs whose bodies never finish arriving, and nothing else of
    // their key: once slow, three hold the key's share and the fourth is
    // refused on its own connection.
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let mut trickles = Vec::new();
    for _ in 0..4 {
        let s = connect_from("127.0.0.2", server).await;
        let (mut read, mut write) = s.into_split();
        let head = format!(
            "POST /v1/projects/alpha/actions/status HTTP/1.1\r\nhost: bosun\r\n\
             authorization: Bearer {RUN_ALPHA}\r\ncontent-type: application/json\r\n\
             content-length: 100\r\n\r\n{{\"params\":"
        );
        write.write_all(head.as_bytes()).await.expect("send");
        let answers_tx = answers_tx.clone();
        trickles.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            if let Ok(n) = read.read(&mut buf).await {
                let _ = answers_tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            // Keep the writing half open until the test ends.
            drop(write);
        }));
    }
    let refused = tokio::time::timeout(Duration::from_secs(50), answers.recv())
        .await
        .expect("a trickle over the share is refused")
        .expect("an answer");
    assert!(
        refused.starts_with("HTTP/1.1 429") && refused.contains("too_many_long_requests"),
        "{refused}"
    );
    // The three hold the key's share: its waits are refused, while its
    // quick runs and other keys are served.
    let (status, answer) = b
        .run("alpha", "status", "?wait=30s", json!({}), RUN_ALPHA)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(
        answer["error"]["code"], "too_many_long_requests",
        "{answer}"
    );
    let (status, _) = b.run("alpha", "status", "", json!({}), RUN_ALPHA).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "a quick body is not held back"
    );
    let (status, job) = b
        .run("beta", "status", "?wait=30s", json!({}), RUN_BETA)
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    // The trickles go; the share comes back.
    for trickle in trickles {
        trickle.abort();
    }
    until("the share to come back", async || {
        let (status, _) = b
            .run("alpha", "status", "?wait=30s", json!({}), RUN_ALPHA)
            .await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_flood_of_connections_followers_and_waits_other_tenants_are_answered() {
    let budget = raise_own_fd_limit();
    // Thousands where this process may hold them.
    let per_kind = usize::try_from(budget.saturating_sub(600) / 2)
        .unwrap_or(usize::MAX)
        .min(1500);
    // A long job for the saturating tenant to wait on: it must outlast the
    // whole attack, however slow a loaded machine makes it.
    let long = format!(
        "[projects.alpha.actions.long]\npath = {:?}\ntimeout = \"10m\"\n",
        crate::common::guest_dir().join("fixture_hostile.wasm")
    );
    let (_root, b) = serve(
        "read_timeout = \"5s\"\nmax_connections = 800\nmax_connections_per_address = 200",
        &format!("{TICKER}{BETA_TICKER}{long}"),
    );
    let server = addr(&b);
    b.cgroups_made().await;
    let baseline = fds(b.pid());

    let (status, job) = b
        .run(
            "alpha",
            "long",
            "",
            json!({"mode": "slow", "count": "5000", "ms": "100"}),
            RUN_ALPHA,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().expect("id").to_string();

    let mut attack = Vec::new();
    for _ in 0..per_kind {
        attack.push(connect_from("127.0.0.2", server).await);
    }
    for _ in 0..per_kind {
        let mut s = connect_from("127.0.0.3", server).await;
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nhost: b").await;
        attack.push(s);
    }
    // Hundreds of followers from one key, and one tenant's waits.
    let followers = client_from("127.0.0.4");
    let mut streams = Vec::new();
    let mut refused_followers = 0;
    for _ in 0..200 {
        let s = follow(&followers, &b.url, "/v1/projects/alpha/logs?follow=1", READ).await;
        match s.status() {
            StatusCode::OK => streams.push(s),
            StatusCode::TOO_MANY_REQUESTS => refused_followers += 1,
            other => panic!("a follower got {other}"),
        }
    }
    assert!(refused_followers > 0, "no follower was refused");
    // One tenant's waits: past its share, refused at once; the rest wait.
    let waiter = client_from("127.0.0.5");
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..64 {
        let wait = waiter
            .get(format!("{}/v1/jobs/{id}?wait=10m", b.url))
            .bearer_auth(RUN_ALPHA)
            .send();
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let _ = done_tx.send(wait.await.expect("answered").status());
        });
    }
    for _ in 0..32 {
        let status = done.recv().await.expect("an answer");
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "a wait over the share"
        );
    }

    // Other tenants are answered, at once and every time.
    let tenant = client_from("127.0.0.1");
    for _ in 0..5 {
        let project = tenant
            .get(format!("{}/v1/projects/beta", b.url))
            .bearer_auth(RUN_BETA)
            .header("X-Project-Key", BETA_PROJECT_KEY)
            .send()
            .await
            .expect("project");
        assert_eq!(project.status(), StatusCode::OK);
        let run = tenant
            .post(format!(
                "{}/v1/projects/beta/actions/status?wait=30s",
                b.url
            ))
            .bearer_auth(RUN_BETA)
            .header("X-Project-Key", BETA_PROJECT_KEY)
            .send()
            .await
            .expect("run");
        assert_eq!(run.status(), StatusCode::OK);
    }
    let beta = follow(&tenant, &b.url, "/v1/projects/beta/logs?follow=1", RUN_BETA).await;
    assert_eq!(beta.status(), StatusCode::OK);
    let open = fds(b.pid());
    assert!(
        open <= baseline + 800 + 100,
        "bosun holds {open} descriptors ({baseline} at rest, 800 connections at most)"
    );

    // The silent and half-sent ones are let go; the followers stay.
    let most = baseline + streams.len() + 32 + 100;
    until_ok("the silent connections let go", async || {
        match fds(b.pid()) {
            now if now <= most => Ok(()),
            now => Err(format!("bosun still holds {now} descriptors")),
        }
    })
    .await;
    // The waits within the share were still waiting; they end with the job.
    let cancel = b.post(&format!("/v1/jobs/{id}/cancel"), ADMIN).await;
    assert!(cancel.status().is_success());
    for _ in 0..32 {
        assert_eq!(done.recv().await.expect("an answer"), StatusCode::OK);
    }
    drop(attack);
}
