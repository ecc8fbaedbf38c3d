//! How fast a forge gets its answer: signed GitHub deliveries to
//! `POST /hooks/shop`, one at a time over a keep-alive connection, each
//! with its own delivery id and payload, against a project whose work tree
//! is a real git repository (so "is this commit deployed?" runs the
//! project's confined git).
//!
//! - `ignored (tag)`: verified, parsed, checked against the deliveries
//!   seen, logged; no job.
//! - `accepted`: the same, plus the confined `git rev-parse HEAD` (the
//!   project is idle) and the job stored and queued; the queued job each
//!   push replaces ends `cancelled`. The action (`update` to a commit the
//!   repository does not have) fails quickly in the background; while it
//!   runs, the project is busy and the git check is skipped, so the
//!   numbers mix both paths, as a burst of real pushes would.
//!
//! Run with: cargo bench -p bosun --bench webhooks
//! (BENCH_DELIVERIES, default 500 of each)

mod common;

use common::{env_count, runtime};

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use bosun::config::Config;
use bosun::daemon::Daemon;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const SECRET: &str = "bench-secret-0123456789abcdef";

fn git(dir: &std::path::Path, args: &[&str]) {
    let ok = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .status()
        .expect("git")
        .success();
    assert!(ok, "git {args:?}");
}

fn config(root: &std::path::Path) -> Config {
    let shop = root.join("shop");
    std::fs::create_dir_all(&shop).expect("shop");
    git(&shop, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(shop.join("README"), "bench\n").expect("file");
    git(&shop, &["add", "-A"]);
    git(&shop, &["commit", "--quiet", "-m", "bench"]);
    let secret = root.join("shop.secret");
    std::fs::write(&secret, SECRET).expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = "state_dir = \"state\"\n[server]\nlisten = \"127.0.0.1:0\"\n\
                [jobs]\nqueue_depth = 16\n\
                [projects.shop]\ndir = \"shop\"\nactions = [\"update\"]\n\
                [projects.shop.webhook]\nsecret_file = \"shop.secret\"\n\
                branches = [\"main\"]\naction = \"update\"\n";
    std::fs::write(root.join("bosun.toml"), text).expect("config");
    Config::load(&root.join("bosun.toml")).expect("valid config")
}

/// A signed push of `git_ref` to commit number `i` (a made-up id).
fn delivery(i: usize, git_ref: &str) -> (String, Vec<u8>) {
    let after = hex::encode(&Sha256::digest(i.to_le_bytes())[..20]);
    let body = format!(
        r#"{{"ref":"{git_ref}","before":"{}","after":"{after}","repository":{{"full_name":"acme/shop"}}}}"#,
        "0".repeat(40)
    )
    .into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(&body);
    (hex::encode(mac.finalize().into_bytes()), body)
}

async fn run(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    git_ref: &str,
    want: u16,
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let (sig, body) = delivery(i + n * usize::from(git_ref.contains("tags")), git_ref);
        let started = Instant::now();
        let resp = client
            .post(format!("{url}/hooks/shop"))
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", format!("{git_ref}-{i}"))
            .header("X-Hub-Signature-256", format!("sha256={sig}"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("delivery");
        let status = resp.status().as_u16();
        resp.bytes().await.expect("answer");
        times.push(started.elapsed());
        assert_eq!(status, want, "delivery {i} to {git_ref}");
    }
    times.sort();
    times
}

fn main() {
    let n: usize = env_count("BENCH_DELIVERIES", 500);
    let runtime = runtime();
    runtime.block_on(async {
        let root = tempfile::tempdir().expect("temp dir");
        let daemon = Daemon::start(&config(root.path()))
            .await
            .expect("bosun starts");
        let url = daemon.url().to_string();
        let client = reqwest::Client::new();
        println!("| delivery | median | p99 | max |");
        println!("|---|---|---|---|");
        for (what, git_ref, want) in [
            ("ignored (tag)", "refs/tags/v1", 202),
            ("accepted", "refs/heads/main", 202),
        ] {
            let times = run(&client, &url, n, git_ref, want).await;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "| {what} | {:.2} ms | {:.2} ms | {:.2} ms |",
                ms(times[times.len() / 2]),
                ms(times[times.len() * 99 / 100]),
                ms(times[times.len() - 1]),
            );
        }
        daemon.stop().await;
    });
}
