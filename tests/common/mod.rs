//! Shared helpers for the end-to-end tests: the guest components that
//! `host/build.rs` built from `plugins/`, engines on temp state dirs, and a
//! log collector.
#![allow(dead_code)] // each test binary uses its own subset

pub mod load;
pub mod procfs;
pub mod server;
pub mod shop;
pub mod tenants;

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bosun::plugins::{Engine, EngineConfig, LogSink, ProjectScope, RunLimits, RunRequest, Stream};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// The folder holding every guest component built from `plugins/`.
pub fn guest_dir() -> PathBuf {
    PathBuf::from(env!("BOSUN_GUEST_DIR"))
}

/// The bytes of the guest component `name` (its crate name, with underscores).
pub fn guest(name: &str) -> Vec<u8> {
    let path = guest_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One state dir for the whole test binary, so its tests share the compiled
/// component cache (the cache is safe to share: entries are renamed into place).
pub fn shared_state_dir() -> &'static Path {
    static DIR: LazyLock<TempDir> = LazyLock::new(|| TempDir::new().expect("temp state dir"));
    DIR.path()
}

/// An engine on `state_dir`.
pub fn engine_in(state_dir: &Path, pooling: bool) -> Engine {
    Engine::new(&EngineConfig {
        state_dir: state_dir.to_path_buf(),
        max_concurrent_runs: 4,
        max_memory: 1 << 30,
        pooling,
        compiler: None,
    })
    .expect("engine starts")
}

/// A pooling engine on the shared state dir.
pub fn engine() -> Engine {
    engine_in(shared_state_dir(), true)
}

/// Generous limits for runs that are not testing a limit.
pub fn limits() -> RunLimits {
    RunLimits {
        timeout: Duration::from_secs(60),
        memory: 64 << 20,
        max_output: 1 << 20,
    }
}

/// Collects a run's log lines.
#[derive(Clone, Default)]
pub struct Log {
    lines: Arc<Mutex<Vec<(Stream, String)>>>,
}

impl Log {
    /// A sink that appends to this log.
    pub fn sink(&self) -> LogSink {
        let lines = self.lines.clone();
        Arc::new(move |stream, line| {
            lines
                .lock()
                .expect("log lock")
                .push((stream, line.to_string()))
        })
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<(Stream, String)> {
        self.lines.lock().expect("log lock").clone()
    }

    /// The lines of one stream.
    pub fn of(&self, stream: Stream) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| l)
            .collect()
    }
}

/// A project dir in a fresh temp dir, with one file in it.
pub fn project_dir() -> TempDir {
    let dir = TempDir::new().expect("temp project dir");
    std::fs::write(dir.path().join("app.txt"), "the app\n").expect("write app.txt");
    dir
}

/// A request to run `action` on `scope` with `params`.
pub fn request(scope: ProjectScope, params: &[(&str, &str)], log: &Log) -> RunRequest {
    RunRequest {
        scope,
        action: "hostile".to_string(),
        job_id: "job-1".to_string(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        limits: limits(),
        log: log.sink(),
        cancel: CancellationToken::new(),
    }
}

/// Run git in `dir`, as a test user, and return its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=bosun test",
            "-c",
            "user.email=test@bosun.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "advice.detachedHead=false",
            // Project dirs belong to their projects' users, not the test's.
            "-c",
            "safe.directory=*",
        ])
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Write `text` to `path`, readable by its owner only (a secret file).
pub fn write_private(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("secret file");
}

/// How long a test waits for a condition before it fails: generous, for a
/// loaded CI machine. A condition that holds ends the wait at once, so
/// this is never a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(90);
/// How often a waited-for condition is tried again.
const POLL: Duration = Duration::from_millis(20);

/// Poll `check` until it gives `Ok`; fail after [`PATIENCE`], naming
/// `what` was awaited and what the last try found (`Err`).
pub async fn until_ok<T>(what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let found = match check().await {
            Ok(v) => return v,
            Err(found) => found,
        };
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}{}",
            if found.is_empty() {
                String::new()
            } else {
                format!("; the last try found:\n{found}")
            }
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Poll `check` until it gives a value; see [`until_ok`].
pub async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    until_ok(what, async || check().await.ok_or_else(String::new)).await
}

/// Poll `cond` until it holds; see [`until_ok`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    until(what, async || cond().then_some(())).await;
}
