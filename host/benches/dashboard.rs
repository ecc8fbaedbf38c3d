//! What the dashboard costs: its pages rendered for 100 projects of 5
//! process instances each (500 rows), a session's lookup beside a bearer
//! key's, and the CPU the live process feed takes while browsers watch.
//!
//! - pages: `GET /` (every project), one project's page, the jobs page
//!   (50 jobs), one job's page, each fetched one at a time over a
//!   keep-alive connection with the session cookie.
//! - `GET /v1/projects` with a bearer key, then with the session cookie.
//! - the live feed: bosun's CPU time over 10 s with no feed open, then
//!   with 10 feeds of all 500 rows open (one frame a second each).
//!
//! Run with: cargo bench -p bosun --bench dashboard
//! (BENCH_REQUESTS, default 200 per row)

mod common;

use common::{env_count, runtime};

use std::time::{Duration, Instant};

use bosun::config::Config;
use bosun::daemon::Daemon;
use futures_util::StreamExt as _;
use sha2::{Digest, Sha256};

const KEY: &str = "bsk_bench_dashboard";
const PROJECTS: usize = 100;
const INSTANCES: usize = 5;

fn config(root: &std::path::Path) -> Config {
    let mut text = format!(
        "state_dir = \"state\"\n[server]\nlisten = \"127.0.0.1:0\"\n\
         [[keys]]\nname = \"bench\"\nhash = \"sha256:{}\"\nprojects = \"*\"\nrole = \"admin\"\n",
        hex::encode(Sha256::digest(KEY.as_bytes()))
    );
    for p in 0..PROJECTS {
        std::fs::create_dir_all(root.join(format!("p{p}"))).expect("project dir");
        text.push_str(&format!(
            "[projects.p{p}]\ndir = \"p{p}\"\nactions = [\"status\", \"restart\"]\n\
             [[projects.p{p}.processes]]\nname = \"web\"\ncommand = \"sleep\"\n\
             args = [\"1000\"]\ninstances = {INSTANCES}\n"
        ));
    }
    std::fs::write(root.join("bosun.toml"), text).expect("config");
    Config::load(&root.join("bosun.toml")).expect("valid config")
}

/// bosun's own CPU time so far (this process: the daemon runs in it).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

async fn time(n: usize, mut get: impl AsyncFnMut() -> usize) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let started = Instant::now();
        size = get().await;
        times.push(started.elapsed());
    }
    times.sort();
    (times, size)
}

fn main() {
    let n: usize = env_count("BENCH_REQUESTS", 200);
    let runtime = runtime();
    runtime.block_on(async {
        let root = tempfile::tempdir().expect("temp dir");
        let daemon = Daemon::start(&config(root.path()))
            .await
            .expect("bosun starts");
        let url = daemon.url().to_string();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let signin = client
            .post(format!("{url}/ui/signin"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("key={KEY}"))
            .send()
            .await
            .expect("sign in");
        let cookie = signin.headers()["set-cookie"]
            .to_str()
            .expect("ascii")
            .split(';')
            .next()
            .expect("cookie")
            .to_string();
        let mut job = String::new();
        for _ in 0..50 {
            let resp: serde_json::Value = client
                .post(format!("{url}/v1/projects/p0/actions/status?wait=30s"))
                .bearer_auth(KEY)
                .send()
                .await
                .expect("run")
                .json()
                .await
                .expect("job");
            job = resp["id"].as_str().expect("id").to_string();
        }
        let get = async |path: &str, by_cookie: bool| {
            let req = client.get(format!("{url}{path}"));
            let req = if by_cookie {
                req.header("Cookie", &cookie)
            } else {
                req.bearer_auth(KEY)
            };
            let resp = req.send().await.expect("get");
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
            resp.bytes().await.expect("body").len()
        };
        println!("| request | median | p99 | size |");
        println!("|---|---|---|---|");
        let job_page = format!("/ui/jobs/{job}");
        for (what, path, by_cookie) in [
            ("`GET /` (100 projects, 500 rows)", "/", true),
            ("one project's page", "/ui/projects/p1", true),
            ("the jobs page (50 jobs)", "/ui/jobs", true),
            ("one job's page", job_page.as_str(), true),
            ("`GET /v1/projects`, bearer key", "/v1/projects", false),
            ("`GET /v1/projects`, session cookie", "/v1/projects", true),
        ] {
            let (times, size) = time(n, async || get(path, by_cookie).await).await;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "| {what} | {:.2} ms | {:.2} ms | {:.1} KB |",
                ms(times[times.len() / 2]),
                ms(times[times.len() * 99 / 100]),
                size as f64 / 1e3,
            );
        }

        let window = Duration::from_secs(10);
        let before = cpu();
        tokio::time::sleep(window).await;
        let idle = cpu() - before;
        let mut feeds = Vec::new();
        let mut frame = 0;
        for _ in 0..10 {
            let resp = client
                .get(format!("{url}/ui/live"))
                .header("Cookie", &cookie)
                .send()
                .await
                .expect("feed");
            let mut body = resp.bytes_stream();
            let mut first = Vec::new();
            while !first.ends_with(b"\n\n") {
                first.extend_from_slice(&body.next().await.expect("a frame").expect("bytes"));
            }
            frame = first.len();
            feeds.push(tokio::spawn(
                async move { while body.next().await.is_some() {} },
            ));
        }
        let before = cpu();
        tokio::time::sleep(window).await;
        let watched = cpu() - before;
        for feed in feeds {
            feed.abort();
        }
        println!();
        println!(
            "bosun's CPU over {window:?}: {idle:?} idle (500 processes), {watched:?} with 10 live \
             feeds open; a frame of 500 rows is {:.1} KB",
            frame as f64 / 1e3
        );
        daemon.stop().await;
    });
}
