//! The API end to end: `POST /v1/projects/{p}/actions/noop?wait=10s` over
//! HTTP/1.1 keep-alive, spread over 16 projects, each job stored, queued,
//! run in the sandbox and answered finished. The load generator is a
//! minimal keep-alive client in the same process, so it shares the machine's
//! cores with the server (as wrk on the same host would).
//!
//! Also measured: `GET /healthz`, the cost of HTTP alone.
//!
//! Run with: cargo bench -p bosun --bench api
//! (BENCH_REQUESTS, default 20000; BENCH_CONNECTIONS, default 32)

mod common;

use common::{env_count, runtime};

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bosun::config::Config;
use bosun::daemon::Daemon;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const PROJECTS: usize = 16;

/// Builds the i-th request of a load run.
type MakeRequest = fn(usize) -> Vec<u8>;
const KEY: &str = "bsk_bench";

fn config(root: &std::path::Path) -> Config {
    let hostile = std::path::Path::new(env!("BOSUN_GUEST_DIR")).join("fixture_hostile.wasm");
    let mut text = format!(
        "state_dir = \"state\"\n[server]\nlisten = \"127.0.0.1:0\"\nmax_concurrent_requests = 4096\n\
         [jobs]\nqueue_depth = 1024\n[plugins]\nmax_concurrent_runs = 16\n\
         [[keys]]\nname = \"bench\"\nhash = \"sha256:{}\"\nprojects = \"*\"\nrole = \"run\"\n",
        hex::encode(Sha256::digest(KEY))
    );
    for p in 0..PROJECTS {
        std::fs::create_dir_all(root.join(format!("p{p}"))).expect("project dir");
        let _ = write!(
            text,
            "[projects.p{p}]\ndir = \"p{p}\"\n[projects.p{p}.actions.noop]\npath = {hostile:?}\n"
        );
    }
    std::fs::write(root.join("bosun.toml"), &text).expect("config");
    Config::load(&root.join("bosun.toml")).expect("valid config")
}

/// One keep-alive connection: send a request, read one whole response.
struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream: BufReader::new(stream),
        }
    }

    /// Send `request`; return the status code.
    async fn call(&mut self, request: &[u8]) -> u16 {
        self.stream
            .get_mut()
            .write_all(request)
            .await
            .expect("write");
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("status");
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.expect("body");
        status
    }
}

struct Report {
    median: Duration,
    p99: Duration,
    per_second: f64,
}

/// `total` requests over `connections` connections; `make(i)` builds the i-th.
async fn load(
    addr: SocketAddr,
    total: usize,
    connections: usize,
    make: impl Fn(usize) -> Vec<u8> + Clone + Send + 'static,
    want: u16,
) -> Report {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(300);
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let make = make.clone();
            tokio::spawn(async move {
                let mut conn = Conn::open(addr).await;
                let mut times = Vec::new();
                let mut i = c;
                while i < total && Instant::now() < deadline {
                    let request = make(i);
                    let t = Instant::now();
                    let status = conn.call(&request).await;
                    times.push(t.elapsed());
                    assert_eq!(status, want, "request {i}");
                    i += connections;
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.expect("load task"));
    }
    let elapsed = start.elapsed();
    times.sort();
    Report {
        median: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
        per_second: times.len() as f64 / elapsed.as_secs_f64(),
    }
}

fn action_request(i: usize) -> Vec<u8> {
    let body = "{\"params\":{\"mode\":\"noop\"}}";
    format!(
        "POST /v1/projects/p{}/actions/noop?wait=10s HTTP/1.1\r\nHost: bench\r\n\
         Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        i % PROJECTS,
        body.len()
    )
    .into_bytes()
}

fn health_request(_: usize) -> Vec<u8> {
    b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec()
}

fn main() {
    let total = env_count("BENCH_REQUESTS", 20_000);
    let connections = env_count("BENCH_CONNECTIONS", 32);
    let rt = runtime();
    let root = tempfile::TempDir::new().expect("temp dir");
    let config = config(root.path());
    rt.block_on(async {
        let daemon = Daemon::start(&config).await.expect("bosun starts");
        let addr = daemon.addr();
        // Warm-up: compile caches, connection setup, SQLite pages.
        load(addr, 2_000, connections, action_request, 200).await;
        println!(
            "{total} requests over {connections} keep-alive connections, {PROJECTS} projects\n"
        );
        println!("| request | median | p99 | requests/s |");
        println!("|---|---|---|---|");
        let rows: [(&str, MakeRequest); 2] = [
            (
                "POST no-op action `?wait` (stored, queued, run, answered)",
                action_request,
            ),
            ("GET /healthz (HTTP alone)", health_request),
        ];
        for (name, make) in rows {
            let r = load(addr, total, connections, make, 200).await;
            println!(
                "| {name} | {:.2} ms | {:.2} ms | {:.0} |",
                r.median.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3,
                r.per_second
            );
        }
        println!("\n1 connection, one request at a time:\n");
        println!("| request | median | p99 | requests/s |");
        println!("|---|---|---|---|");
        let r = load(addr, total / 4, 1, action_request, 200).await;
        println!(
            "| POST no-op action `?wait` | {:.2} ms | {:.2} ms | {:.0} |",
            r.median.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.per_second
        );
        daemon.stop().await;
    });
}
