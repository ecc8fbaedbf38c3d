//! The supervisor's costs, measured on this machine:
//! - bosun's own RSS (`bosun serve`) while supervising 10 and 100 `sleep`s;
//! - crash-to-new-pid latency: SIGKILL a process, time until its replacement
//!   runs, confined (bosun's default as root) and unconfined, against a bare
//!   kill + reap + spawn with no supervisor;
//! - a 1M-line flood from a line-at-a-time writer (a flush per line): the
//!   writer's own wall time under bosun against writing straight to a file,
//!   and the time until the last line is in bosun's log file.
//!
//! Run with: cargo bench -p bosun --bench supervisor
//! (needs python3 for the flood writer)

mod common;

/// The tests' `/proc` reader: one parser of `stat` for tests and benches.
#[path = "../../tests/common/procfs.rs"]
#[allow(dead_code)] // the bench reads part of it
mod procfs;

use common::runtime;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use bosun::config::Config;
use bosun::confine::{Confinement, Role};
use bosun::supervisor::{State, Supervisor};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const CRASHES: usize = 100;
const FLOOD_LINES: usize = 1_000_000;
const WRITER: &str = "import sys, time\n\
t = time.perf_counter()\n\
w = sys.stdout.write; f = sys.stdout.flush\n\
for i in range(int(sys.argv[1])):\n    w('line %07d\\n' % i); f()\n\
sys.stderr.write('elapsed %.6f\\n' % (time.perf_counter() - t))\n";

fn main() {
    let rt = runtime();
    println!("| measure | result |\n|---|---|");
    for n in [10, 100] {
        println!(
            "| bosun serve RSS with {n} `sleep` processes | {:.1} MiB |",
            serve_rss(n)
        );
    }
    let bare = bare_latency();
    println!(
        "| crash → new pid, bare kill + reap + spawn (median / p95) | {} / {} |",
        ms(bare.0),
        ms(bare.1)
    );
    for (what, unconfined) in [("confined (the default)", false), ("unconfined", true)] {
        let sup = rt.block_on(crash_latency(unconfined));
        println!(
            "| crash → new pid running under bosun, {what} (median / p95) | {} / {} |",
            ms(sup.0),
            ms(sup.1)
        );
    }
    let (direct, under, on_disk) = rt.block_on(flood());
    println!("| 1M-line writer, stdout to a file | {direct:.2} s |");
    println!(
        "| 1M-line writer, under bosun | {under:.2} s ({:.2}x) |",
        under / direct
    );
    println!("| 1M lines: start → last line in bosun's log file | {on_disk:.2} s |");
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn config(dir: &Path, processes: &str) -> Config {
    std::fs::create_dir_all(dir.join("app")).expect("mkdir");
    let text = format!(
        "state_dir = \"state\"\n[server]\nlisten = \"127.0.0.1:0\"\n[projects.app]\ndir = \"app\"\n{processes}"
    );
    let path = dir.join("bosun.toml");
    std::fs::write(&path, text).expect("write config");
    Config::load(&path).expect("valid config")
}

fn live_children(ppid: u32) -> usize {
    procfs::pids()
        .into_iter()
        .filter(|pid| procfs::stat(*pid).is_some_and(|s| s.state != 'Z' && s.ppid == ppid))
        .count()
}

/// RSS of a real `bosun serve` once it supervises `n` sleeps.
fn serve_rss(n: usize) -> f64 {
    let dir = tempfile::TempDir::new().expect("temp");
    config(
        dir.path(),
        &format!(
            "[[projects.app.processes]]\nname = \"idle\"\ncommand = \"sleep\"\nargs = [\"1000\"]\ninstances = {n}\n"
        ),
    );
    let mut bosun = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["serve", "--config"])
        .arg(dir.path().join("bosun.toml"))
        .spawn()
        .expect("bosun serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    while live_children(bosun.id()) < n {
        assert!(
            Instant::now() < deadline,
            "bosun did not start {n} processes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    let status = std::fs::read_to_string(format!("/proc/{}/status", bosun.id())).expect("status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kill(Pid::from_raw(bosun.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    bosun.wait().expect("bosun exits");
    kib / 1024.0
}

/// A supervisor on `cfg`, confined as `bosun serve` would be.
async fn start(cfg: &Config) -> Supervisor {
    let confinement = Confinement::start(cfg, Role::Server)
        .await
        .expect("confinement");
    Supervisor::start(cfg, Arc::new(confinement))
        .await
        .expect("supervisor")
}

fn median_p95(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 95 / 100])
}

/// Kill, reap and spawn, with no supervisor: the floor.
fn bare_latency() -> (Duration, Duration) {
    let mut bare = Vec::new();
    let mut child = Command::new("sleep").arg("1000").spawn().expect("sleep");
    for _ in 0..CRASHES {
        let t = Instant::now();
        child.kill().expect("kill");
        child.wait().expect("reap");
        child = Command::new("sleep").arg("1000").spawn().expect("sleep");
        bare.push(t.elapsed());
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    median_p95(bare)
}

/// SIGKILL a supervised `sleep` until its replacement runs, `CRASHES`
/// times; confined as bosun does by default, or with `unconfined = true`.
async fn crash_latency(unconfined: bool) -> (Duration, Duration) {
    let dir = tempfile::TempDir::new().expect("temp");
    let cfg = config(
        dir.path(),
        &format!(
            "unconfined = {unconfined}\n[[projects.app.processes]]\nname = \"victim\"\ncommand = \"sleep\"\nargs = [\"1000\"]\nrestart_at = [\"1ms\"]\n"
        ),
    );
    let sup = start(&cfg).await;
    let app = sup.project("app").expect("app");
    let mut under = Vec::new();
    for _ in 0..CRASHES {
        let old = loop {
            let s = &app.list()[0];
            if let (State::Running, Some(pid)) = (s.state, s.pid) {
                break pid;
            }
            tokio::task::yield_now().await;
        };
        let t = Instant::now();
        kill(Pid::from_raw(old as i32), Signal::SIGKILL).expect("kill");
        loop {
            let s = &app.list()[0];
            if s.state == State::Running && s.pid.is_some_and(|p| p != old) {
                break;
            }
            tokio::task::yield_now().await;
        }
        under.push(t.elapsed());
    }
    sup.shutdown().await;
    median_p95(under)
}

fn elapsed_from(text: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix("elapsed "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the writer reports its elapsed time")
}

async fn flood() -> (f64, f64, f64) {
    let dir = tempfile::TempDir::new().expect("temp");
    let writer = dir.path().join("writer.py");
    std::fs::write(&writer, WRITER).expect("write writer");
    let out = std::fs::File::create(dir.path().join("direct.log")).expect("file");
    let direct = Command::new("python3")
        .arg(&writer)
        .arg(FLOOD_LINES.to_string())
        .stdout(out)
        .stderr(Stdio::piped())
        .output()
        .expect("python3");
    let direct = elapsed_from(&String::from_utf8_lossy(&direct.stderr));

    let cfg = config(
        dir.path(),
        &format!(
            "[[projects.app.processes]]\nname = \"flood\"\ncommand = \"python3\"\nargs = [\"writer.py\", \"{FLOOD_LINES}\"]\nrestart_at = []\nlog_max_size = \"1GiB\"\n"
        ),
    );
    std::fs::copy(&writer, dir.path().join("app/writer.py")).expect("copy writer");
    let started = Instant::now();
    let sup = start(&cfg).await;
    let log = dir.path().join("state/logs/app/flood-0.log");
    let last = format!("line {:07}\n", FLOOD_LINES - 1);
    // Read the file only once it is big enough to hold every line, so the
    // check does not compete with the writer it measures.
    let full = (FLOOD_LINES * last.len()) as u64;
    let on_disk = loop {
        if std::fs::metadata(&log).is_ok_and(|m| m.len() >= full) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(&last) && text.contains("elapsed ") {
                break (started.elapsed().as_secs_f64(), elapsed_from(&text));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sup.shutdown().await;
    (direct, on_disk.1, on_disk.0)
}
