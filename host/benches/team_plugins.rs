//! What a team's plugin costs, for the Rust, Python and JavaScript
//! examples: an upload (`PUT …/actions/{name}` with the component: read,
//! compiled in the budgeted child, linked, described, stored, swapped),
//! the same component uploaded again (found in service: compiled nothing),
//! a restart that loads it from the cache, and a run through the API.
//!
//! The Python and JavaScript examples are built by
//! `plugins/toolchains/build`, which installs the pinned toolchains into
//! `target/toolchains` on first use.
//!
//! Run with: cargo bench -p bosun --bench team_plugins
//! (BENCH_RUNS, default 50 runs of each; 3 cold uploads of each)

mod common;

use common::env_count;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bosun::config::Config;
use bosun::daemon::Daemon;

const KEY: &str = "bsk_bench_team_plugins";
const COLD: usize = 3;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
}

/// The example's component: the Rust one from the guest build, the others
/// built with the project's toolchains.
fn component(name: &str) -> Vec<u8> {
    let path = match name {
        "disk-usage" => PathBuf::from(env!("BOSUN_GUEST_DIR")).join("disk_usage.wasm"),
        _ => {
            let out = std::env::temp_dir().join(format!("bosun-bench-{name}.wasm"));
            let ok = std::process::Command::new(repo().join("plugins/toolchains/build"))
                .arg(repo().join("plugins/examples").join(name))
                .arg(&out)
                .status()
                .expect("the build script")
                .success();
            assert!(ok, "building {name}");
            out
        }
    };
    std::fs::read(&path).expect("the component")
}

fn config(root: &Path) -> Config {
    std::fs::create_dir_all(root.join("app")).expect("app");
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(KEY.as_bytes()));
    let text = format!(
        "state_dir = \"state\"\n[server]\nlisten = \"127.0.0.1:0\"\nread_timeout = \"60s\"\n\
         [[keys]]\nname = \"bench\"\nhash = \"sha256:{hash}\"\nprojects = \"*\"\nrole = \"admin\"\n\
         [projects.app]\ndir = \"app\"\nallow_uploads = true\n\
         [[projects.app.processes]]\nname = \"web\"\ncommand = \"sleep\"\nargs = [\"1000\"]\n"
    );
    std::fs::write(root.join("bosun.toml"), text).expect("config");
    Config::load(&root.join("bosun.toml")).expect("valid config")
}

async fn start(config: &Config) -> Daemon {
    Daemon::start_compiling_with(config, env!("CARGO_BIN_EXE_bosun").into())
        .await
        .expect("bosun starts")
}

async fn upload(client: &reqwest::Client, url: &str, wasm: &[u8], want: u16) -> Duration {
    let began = Instant::now();
    let resp = client
        .put(format!("{url}/v1/projects/app/actions/tool"))
        .bearer_auth(KEY)
        .header("content-type", "application/wasm")
        .body(wasm.to_vec())
        .send()
        .await
        .expect("PUT");
    let took = began.elapsed();
    assert_eq!(
        resp.status().as_u16(),
        want,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    took
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = env_count("BENCH_RUNS", 50);
    let client = reqwest::Client::new();
    println!(
        "| example | size | upload, compiling | upload again | restart, from the cache (over none) | run median | run p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for name in ["disk-usage", "python-report", "js-uptime"] {
        let wasm = component(name);
        let (mut cold, mut again, mut restarts, mut run_times) = (vec![], vec![], vec![], vec![]);
        for _ in 0..COLD {
            let root = tempfile::TempDir::new().expect("root");
            let cfg = config(root.path());
            let bare = Instant::now();
            let daemon = start(&cfg).await;
            let bare = bare.elapsed();
            let url = daemon.url().to_string();
            cold.push(upload(&client, &url, &wasm, 201).await);
            again.push(upload(&client, &url, &wasm, 200).await);
            daemon.stop().await;
            let began = Instant::now();
            let daemon = start(&cfg).await;
            restarts.push(began.elapsed().saturating_sub(bare));
            if run_times.is_empty() {
                let url = daemon.url().to_string();
                for _ in 0..runs {
                    let began = Instant::now();
                    let resp = client
                        .post(format!("{url}/v1/projects/app/actions/tool?wait=60s"))
                        .bearer_auth(KEY)
                        .json(&serde_json::json!({"params": {}}))
                        .send()
                        .await
                        .expect("POST");
                    assert_eq!(resp.status().as_u16(), 200);
                    run_times.push(began.elapsed());
                }
            }
            daemon.stop().await;
        }
        run_times.sort();
        let p99 = run_times[(run_times.len() * 99 / 100).min(run_times.len() - 1)];
        println!(
            "| {name} | {:.1} MB | {} | {} | {} | {} | {} |",
            wasm.len() as f64 / 1e6,
            ms(median(cold)),
            ms(median(again)),
            ms(median(restarts)),
            ms(median(run_times.clone())),
            ms(p99),
        );
    }
}
