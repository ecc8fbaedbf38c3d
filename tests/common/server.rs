//! A real bosun for API tests: a config in a temp dir with two projects,
//! `alpha` and `beta` (beta also needs a project key), the hostile fixture
//! and the stock `status` as actions, and a set of keys with different
//! scopes, served in-process on 127.0.0.1:0 or as the real binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bosun::config::Config;
use bosun::daemon::Daemon;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Admin of every project.
pub const ADMIN: &str = "bsk_test_admin";
/// `run` on project alpha only.
pub const RUN_ALPHA: &str = "bsk_test_run_alpha";
/// `run` on project beta only.
pub const RUN_BETA: &str = "bsk_test_run_beta";
/// `read` on every project.
pub const READ: &str = "bsk_test_read";
/// `run` on alpha, but only the `status` action.
pub const ALPHA_STATUS_ONLY: &str = "bsk_test_alpha_status_only";
/// The project key of beta.
/// An admin of project alpha alone.
pub const ADMIN_ALPHA: &str = "bsk_test_admin_alpha";
pub const BETA_PROJECT_KEY: &str = "beta-project-secret";

/// `sha256:<hex>` of `key`.
pub fn hash(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// The head of a test config: the state dir, the API on a free port with
/// `server` as the rest of `[server]`, and the key [`ADMIN`] for every
/// project.
pub fn admin_config(server: &str) -> String {
    format!(
        "state_dir = \"state\"\n[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\
         [[keys]]\nname = \"admin\"\nhash = \"{}\"\nprojects = \"*\"\nrole = \"admin\"\n",
        hash(ADMIN)
    )
}

/// The test config. `server` and `jobs` are extra lines for those tables.
/// Project alpha's `quick` is the hostile fixture with a 1 s timeout.
pub fn config_text(server: &str, jobs: &str) -> String {
    let hostile = super::guest_dir().join("fixture_hostile.wasm");
    format!(
        r#"state_dir = "state"

[server]
listen = "127.0.0.1:0"
shutdown_grace = "1s"
{server}

[jobs]
{jobs}

[plugins]
max_concurrent_runs = 4
max_memory = "256MiB"
memory = "64MiB"

[[keys]]
name = "admin"
hash = "{admin}"
projects = "*"
role = "admin"

[[keys]]
name = "admin-alpha"
hash = "{admin_alpha}"
projects = ["alpha"]
role = "admin"

[[keys]]
name = "run-alpha"
hash = "{run_alpha}"
projects = ["alpha"]
role = "run"

[[keys]]
name = "run-beta"
hash = "{run_beta}"
projects = ["beta"]
role = "run"

[[keys]]
name = "read"
hash = "{read}"
projects = "*"
role = "read"

[[keys]]
name = "alpha-status-only"
hash = "{status_only}"
projects = ["alpha"]
actions = ["status"]
role = "run"

[projects.alpha]
dir = "alpha"
[projects.alpha.actions.status]
[projects.alpha.actions.hostile]
path = {hostile:?}
timeout = "60s"
[projects.alpha.actions.quick]
path = {hostile:?}
timeout = "1s"

[projects.beta]
dir = "beta"
key_hash = "{beta_key}"
[projects.beta.actions.status]
[projects.beta.actions.hostile]
path = {hostile:?}
timeout = "60s"
"#,
        admin = hash(ADMIN),
        admin_alpha = hash(ADMIN_ALPHA),
        run_alpha = hash(RUN_ALPHA),
        run_beta = hash(RUN_BETA),
        read = hash(READ),
        status_only = hash(ALPHA_STATUS_ONLY),
        beta_key = hash(BETA_PROJECT_KEY),
    )
}

/// A supervised process for project alpha that prints `tick N` every 0.1 s.
pub const TICKER: &str = r#"
[[projects.alpha.processes]]
name = "ticker"
command = "sh"
args = ["-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"]
"#;

/// A config dir holding `text` as bosun.toml and the project dirs.
pub fn config_dir(text: &str) -> TempDir {
    let root = TempDir::new().expect("temp dir");
    for project in ["alpha", "beta"] {
        std::fs::create_dir_all(root.path().join(project)).expect("project dir");
    }
    std::fs::write(root.path().join("bosun.toml"), text).expect("write config");
    root
}

/// A client of one running bosun. Both [`Bosun`] and [`BosunProcess`]
/// dereference to it.
#[derive(Clone)]
pub struct Api {
    /// The server's base URL.
    pub url: String,
    /// The HTTP client.
    pub http: reqwest::Client,
}

impl Api {
    fn new(url: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        Self { url, http }
    }

    /// A request to `path` with `key` as the bearer key.
    pub fn req(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.url));
        match key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// Ask for `action` on `project` with `params` (beta gets its project
    /// key); returns the status and the body.
    pub async fn run(
        &self,
        project: &str,
        action: &str,
        query: &str,
        params: Value,
        key: &str,
    ) -> (StatusCode, Value) {
        let path = format!("/v1/projects/{project}/actions/{action}{query}");
        let mut req = self
            .req(Method::POST, &path, Some(key))
            .json(&serde_json::json!({ "params": params }));
        if project == "beta" {
            req = req.header("X-Project-Key", BETA_PROJECT_KEY);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        (status, resp.json().await.expect("JSON body"))
    }

    /// Run the hostile fixture on project alpha.
    pub async fn hostile(&self, query: &str, params: Value, key: &str) -> (StatusCode, Value) {
        self.run("alpha", "hostile", query, params, key).await
    }

    /// `POST path` with no body.
    pub async fn post(&self, path: &str, key: &str) -> reqwest::Response {
        self.req(Method::POST, path, Some(key))
            .send()
            .await
            .expect("POST")
    }

    /// `GET path` as JSON, with beta's project key.
    pub async fn get_json(&self, path: &str, key: &str) -> Value {
        self.req(Method::GET, path, Some(key))
            .header("X-Project-Key", BETA_PROJECT_KEY)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    /// `GET path` as text.
    pub async fn get_text(&self, path: &str, key: &str) -> String {
        self.req(Method::GET, path, Some(key))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("text")
    }

    /// Poll the job (as admin) until `done(state)`; 60 s at most.
    async fn poll(&self, id: &str, done: impl Fn(&str) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job = self.get_json(&format!("/v1/jobs/{id}"), ADMIN).await;
            let state = job["state"].as_str().unwrap_or("").to_string();
            if done(&state) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} still {state} after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait (30 s at most) until `project`'s first process leaves
    /// `starting`, and return the project; it must then be in `want`.
    /// The server answers while the supervisor may still be spawning.
    pub async fn settled_project(&self, project: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let body = self
                .get_json(&format!("/v1/projects/{project}"), ADMIN)
                .await;
            let state = body["processes"][0]["state"].as_str().unwrap_or("");
            if state != "starting" {
                assert_eq!(state, want, "{body}");
                return body;
            }
            assert!(Instant::now() < deadline, "still starting: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until every confined project's cgroups are made, as its report
    /// says: bosun makes them just after it starts to serve, and they hold
    /// descriptors. Without cgroup2 (the report names it missing), or for
    /// a project whose setup failed, there is nothing to wait for. An
    /// unconfined project's report does not say whether the host has
    /// cgroup2, so it is not waited for.
    pub async fn cgroups_made(&self) {
        super::until("every project's cgroups made", async || {
            let projects = self.get_json("/v1/projects", ADMIN).await;
            for project in projects.as_array().expect("projects") {
                let name = project["name"].as_str().expect("a name");
                let report =
                    &self.get_json(&format!("/v1/projects/{name}"), ADMIN).await["confinement"];
                let without = report["missing"].as_array().is_some_and(|m| {
                    m.iter()
                        .any(|m| m.as_str().is_some_and(|m| m.starts_with("no cgroup2")))
                });
                if report["cgroup"].is_null() && !without && report["mode"] == "confined" {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }

    /// Wait until the job is running.
    pub async fn until_running(&self, id: &str) {
        self.poll(id, |s| s == "running").await;
    }

    /// Wait until the job is over, and return it.
    pub async fn finished(&self, id: &str) -> Value {
        self.poll(id, |s| !["queued", "running"].contains(&s)).await
    }
}

/// A bosun served in-process.
pub struct Bosun {
    /// The server; `None` once stopped.
    pub daemon: Option<Daemon>,
    api: Api,
}

impl std::ops::Deref for Bosun {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Bosun {
    /// A fresh config dir (see [`config_text`]) served in-process.
    pub async fn start(server: &str, jobs: &str) -> (TempDir, Self) {
        let root = config_dir(&config_text(server, jobs));
        let bosun = Self::start_in(root.path()).await;
        (root, bosun)
    }

    /// Serve the config in `root` in-process.
    pub async fn start_in(root: &Path) -> Self {
        let config = Config::load(&root.join("bosun.toml")).expect("valid test config");
        // Teams' plugins compile in a child, as under `bosun serve`.
        let daemon = Daemon::start_compiling_with(&config, env!("CARGO_BIN_EXE_bosun").into())
            .await
            .expect("bosun starts");
        let api = Api::new(daemon.url().to_string());
        Self {
            daemon: Some(daemon),
            api,
        }
    }

    /// Stop the server, in order.
    pub async fn stop(mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
    }
}

/// The real `bosun serve` binary on a config dir. Stopped on drop, so a
/// failing test leaves nothing running.
pub struct BosunProcess {
    child: Child,
    api: Api,
}

impl std::ops::Deref for BosunProcess {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl BosunProcess {
    /// Start `bosun serve --config <root>/bosun.toml` and wait for its URL.
    pub fn start(root: &Path) -> Self {
        Self::spawn(
            Command::new(env!("CARGO_BIN_EXE_bosun")),
            &root.join("bosun.toml"),
        )
    }

    /// The same from `root`, as `bosun serve --config bosun.toml`: a
    /// relative config path.
    pub fn start_relative(root: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bosun"));
        cmd.current_dir(root);
        Self::spawn(cmd, Path::new("bosun.toml"))
    }

    /// The same with the binary at `bin` (a link to bosun, say), which an
    /// upgrade executes again.
    pub fn start_bin(root: &Path, bin: &Path) -> Self {
        Self::spawn(Command::new(bin), &root.join("bosun.toml"))
    }

    /// The same with the binary `bin`, run as `uid` (its gid the same).
    pub fn start_as(root: &Path, bin: &Path, uid: u32) -> Self {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = Command::new(bin);
        cmd.uid(uid).gid(uid).current_dir(root);
        Self::spawn(cmd, &root.join("bosun.toml"))
    }

    fn spawn(mut cmd: Command, config: &Path) -> Self {
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // A binary the test has just copied can be "busy" for a moment: a
        // child another test thread forked meanwhile holds the copy's write
        // fd until its own exec closes it.
        let mut tries = 0;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                spawned => break spawned.expect("spawn bosun"),
            }
        };
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read bosun's first line");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http"))
            .unwrap_or_else(|| panic!("no URL in bosun's first line: {line:?}"))
            .to_string();
        Self {
            child,
            api: Api::new(url),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL it, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM it and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.child.wait().expect("wait for bosun")
    }
}

impl Drop for BosunProcess {
    /// A graceful stop (10 s at most, then SIGKILL), so a failing test
    /// leaves no supervised process behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }
}
