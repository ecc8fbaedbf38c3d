//! Live operations, measured on the real `bosun serve`:
//! - a reload of a 100-project config (one `sleep` each) with one process's
//!   env changed: the time `POST /v1/reload` takes, and with nothing
//!   changed;
//! - requests failed during reloads and during upgrades in place, under a
//!   steady load of 4 clients opening a new connection per request, and
//!   the slowest answer each saw (the pause);
//! - how long an upgrade takes, from `POST /v1/upgrade` until the new
//!   image has adopted the processes.
//!
//! Run with: cargo bench -p bosun --bench live

mod common;

use common::runtime;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const KEY: &str = "bsk_bench_admin";
const PROJECTS: usize = 100;
const RELOADS: usize = 20;
const UPGRADES: usize = 5;

fn config(greeting: &str) -> String {
    let mut text = format!(
        "state_dir = \"state\"\n[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"2s\"\n\
         [[keys]]\nname = \"admin\"\nhash = \"sha256:{}\"\nprojects = \"*\"\nrole = \"admin\"\n",
        hex::encode(Sha256::digest(KEY))
    );
    for p in 0..PROJECTS {
        let env = if p == 0 {
            format!("env = {{ GREETING = \"{greeting}\" }}\n")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "[projects.p{p}]\ndir = \"p{p}\"\n[[projects.p{p}.processes]]\nname = \"web\"\n\
             command = \"sleep\"\nargs = [\"1000\"]\n{env}"
        ));
    }
    text
}

struct Serve(Child, String);

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

fn serve(root: &Path) -> Serve {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["serve", "--config"])
        .arg(root.join("bosun.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bosun serve");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let url = line.trim().rsplit(' ').next().expect("url").to_string();
    Serve(child, url)
}

fn main() {
    let rt = runtime();
    let root = tempfile::TempDir::new().expect("temp");
    for p in 0..PROJECTS {
        std::fs::create_dir_all(root.path().join(format!("p{p}"))).expect("dir");
    }
    std::fs::write(root.path().join("bosun.toml"), config("g0")).expect("config");
    let bosun = serve(root.path());
    rt.block_on(async {
        let http = reqwest::Client::new();
        wait_running(&http, &bosun.1).await;
        println!("| measure | result |\n|---|---|");
        let mut changed = Vec::new();
        let mut unchanged = Vec::new();
        let load = Load::start(&bosun.1);
        for i in 1..=RELOADS {
            std::fs::write(root.path().join("bosun.toml"), config(&format!("g{i}"))).expect("config");
            changed.push(reload(&http, &bosun.1).await);
            unchanged.push(reload(&http, &bosun.1).await);
        }
        let (ok, failed, slowest) = load.stop().await;
        println!(
            "| reload of {PROJECTS} projects, one process's env changed (median / p95 of {RELOADS}) | {} / {} |",
            ms(&mut changed, 50),
            ms(&mut changed, 95)
        );
        println!(
            "| reload of {PROJECTS} projects, nothing changed (median / p95) | {} / {} |",
            ms(&mut unchanged, 50),
            ms(&mut unchanged, 95)
        );
        println!(
            "| requests failed during {} reloads under load | {failed} of {} (slowest answer {:.1} ms) |",
            RELOADS * 2,
            ok + failed,
            slowest.as_secs_f64() * 1e3
        );
        let log = root.path().join("state/logs/p1/web-0.log");
        let load = Load::start(&bosun.1);
        let mut took = Vec::new();
        for n in 1..=UPGRADES {
            let began = Instant::now();
            let resp = http
                .post(format!("{}/v1/upgrade", bosun.1))
                .bearer_auth(KEY)
                .send()
                .await
                .expect("upgrade");
            assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap_or_default());
            while std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("adopted from the previous bosun")
                .count()
                < n
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            took.push(began.elapsed());
        }
        let (ok, failed, slowest) = load.stop().await;
        println!(
            "| upgrade in place, {PROJECTS} processes: until adopted (median / p95 of {UPGRADES}) | {} / {} |",
            ms(&mut took, 50),
            ms(&mut took, 95)
        );
        println!(
            "| requests failed during {UPGRADES} upgrades under load | {failed} of {} (slowest answer {:.1} ms) |",
            ok + failed,
            slowest.as_secs_f64() * 1e3
        );
    });
}

async fn wait_running(http: &reqwest::Client, url: &str) {
    loop {
        let body: serde_json::Value = match http
            .get(format!("{url}/v1/projects/p{}", PROJECTS - 1))
            .bearer_auth(KEY)
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        if body["processes"][0]["state"] == "running" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reload(http: &reqwest::Client, url: &str) -> Duration {
    let began = Instant::now();
    let resp = http
        .post(format!("{url}/v1/reload"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("reload");
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    began.elapsed()
}

/// 4 clients, a new connection per request, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<(u64, u64, Duration)>>,
}

impl Load {
    fn start(url: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..4)
            .map(|i| {
                let (stop, url) = (stop.clone(), url.to_string());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .pool_max_idle_per_host(0)
                        .build()
                        .expect("client");
                    let path = if i % 2 == 0 {
                        "/healthz"
                    } else {
                        "/v1/projects/p1"
                    };
                    let (mut ok, mut failed, mut slowest) = (0, 0, Duration::ZERO);
                    while !stop.load(Ordering::Relaxed) {
                        let began = Instant::now();
                        match http
                            .get(format!("{url}{path}"))
                            .bearer_auth(KEY)
                            .send()
                            .await
                        {
                            Ok(r) if r.status().is_success() => ok += 1,
                            _ => failed += 1,
                        }
                        slowest = slowest.max(began.elapsed());
                    }
                    (ok, failed, slowest)
                })
            })
            .collect();
        Self { stop, clients }
    }

    async fn stop(self) -> (u64, u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = (0, 0, Duration::ZERO);
        for c in self.clients {
            let (ok, failed, slowest) = c.await.expect("client");
            all = (all.0 + ok, all.1 + failed, all.2.max(slowest));
        }
        all
    }
}

fn ms(v: &mut [Duration], pct: usize) -> String {
    v.sort();
    let i = ((v.len() * pct).div_ceil(100))
        .saturating_sub(1)
        .min(v.len() - 1);
    format!("{:.1} ms", v[i].as_secs_f64() * 1e3)
}
