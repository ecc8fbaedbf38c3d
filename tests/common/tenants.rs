//! Two tenants side by side for the confinement tests: `a` (the attacker)
//! and `b` (the victim, with a secret file, a secret in its `.env` and a
//! running process), and the helpers those tests share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

use super::git;
use super::server::{ADMIN, Bosun, admin_config};

pub const SECRET: &str = "b-secret-7f3a";

pub fn write_exec(path: &Path, body: &str) {
    std::fs::write(path, body).expect("write");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
}

/// Two tenants in one temp dir: `a` is a clone of `origin.git` with a
/// supervised `web` (`app.sh`), `b` has a secret, a `.env`, a git repo of
/// its own and a supervised `db`. `outside` is a world-writable dir no
/// project should ever write to.
pub struct Tenants {
    /// The temp dir holding everything.
    pub root: TempDir,
}

impl Tenants {
    pub fn new() -> Self {
        let root = TempDir::new().expect("temp");
        let t = Self { root };
        let r = t.root.path();
        git(r, &["init", "--quiet", "--bare", "origin.git"]);
        git(r, &["clone", "--quiet", "origin.git", "dev"]);
        t.commit("v1", "echo serving\nexec sleep 1000\n");
        git(r, &["clone", "--quiet", "origin.git", "a"]);
        std::fs::create_dir_all(r.join("b")).expect("mkdir");
        std::fs::write(r.join("b/secret.txt"), SECRET).expect("write");
        std::fs::write(r.join("b/.env"), format!("B_SECRET={SECRET}\n")).expect("write");
        git(&r.join("b"), &["init", "--quiet"]);
        git(&r.join("b"), &["add", "-A"]);
        git(
            &r.join("b"),
            &[
                "-c",
                "user.name=b",
                "-c",
                "user.email=b@b",
                "commit",
                "-qm",
                "b",
            ],
        );
        let outside = r.join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::set_permissions(
            &outside,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        std::fs::set_permissions(r, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        t
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Commit `VERSION`, `app.sh` and an executable `hook.sh` in dev, push.
    pub fn commit(&self, version: &str, app: &str) -> String {
        let dev = self.path("dev");
        std::fs::write(dev.join("VERSION"), version).expect("write");
        write_exec(&dev.join("app.sh"), &format!("#!/bin/sh\n{app}"));
        write_exec(&dev.join("hook.sh"), "#!/bin/sh\ntrue\n");
        git(&dev, &["add", "-A"]);
        git(
            &dev,
            &["commit", "--quiet", "-m", &format!("release {version}")],
        );
        git(&dev, &["push", "--quiet", "origin", "HEAD:main"]);
        git(&dev, &["rev-parse", "HEAD"])
    }

    pub fn config(&self, extra: &str) -> String {
        let hostile = super::guest_dir().join("fixture_hostile.wasm");
        self.config_with(
            extra,
            &format!("[projects.a.actions.hostile]\npath = {hostile:?}"),
        )
    }

    /// The config, with `plugin` as the lines of project a's own action.
    pub fn config_with(&self, extra: &str, plugin: &str) -> String {
        format!(
            r#"{head}
[projects.a]
dir = "a"
[projects.a.actions.stop]
[projects.a.actions.start]
[projects.a.actions.restart]
[projects.a.git]
remote = "./origin.git"
[projects.a.commands]
allow = ["sh", "python3"]
{plugin}
[[projects.a.processes]]
name = "web"
command = "./app.sh"
restart_at = ["100ms"]
kill_timeout = "1s"

[projects.b]
dir = "b"
[[projects.b.processes]]
name = "db"
command = "sleep"
args = ["1000"]
{extra}"#,
            head = admin_config(r#"shutdown_grace = "1s""#)
        )
    }

    pub async fn serve(&self, extra: &str) -> Bosun {
        std::fs::write(self.path("bosun.toml"), self.config(extra)).expect("config");
        let b = Bosun::start_in(self.root.path()).await;
        b.settled_project("a", "running").await;
        b.settled_project("b", "running").await;
        b
    }
}

/// Run the hostile fixture on project `a` with `params`; wait for the job.
pub async fn hostile(b: &Bosun, params: Value) -> Value {
    let (status, job) = b.run("a", "hostile", "?wait=60s", params, ADMIN).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{job}");
    job
}

pub async fn act(b: &Bosun, action: &str, params: Value) -> Value {
    let (status, job) = b.run("a", action, "?wait=60s", params, ADMIN).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{job}");
    job
}

pub async fn pid_of(b: &Bosun, project: &str) -> u64 {
    b.get_json(&format!("/v1/projects/{project}"), ADMIN).await["processes"][0]["pid"]
        .as_u64()
        .expect("a pid")
}

pub async fn uid_of(b: &Bosun, project: &str) -> u64 {
    let body = b.get_json(&format!("/v1/projects/{project}"), ADMIN).await;
    body["confinement"]["identity"]["uid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no identity: {body}"))
}

/// Every file under `dir` (links as their targets' text), for "untouched".
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            if meta.is_dir() {
                todo.push(path);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("readlink");
                out.insert(path, target.into_os_string().into_encoded_bytes());
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.insert(path, bytes);
            }
        }
    }
    out
}

/// Wait until `process` of `project` has logged a line containing `want`;
/// return the whole log.
pub async fn log_with(b: &Bosun, project: &str, process: &str, want: &str) -> String {
    let path = format!("/v1/projects/{project}/processes/{process}/logs?lines=500");
    super::until_ok(&format!("`{want}` in the log"), async || {
        let logs = b.get_text(&path, ADMIN).await;
        if logs.contains(want) {
            Ok(logs)
        } else {
            Err(logs)
        }
    })
    .await
}

/// The `attempt <name>: yes|no` lines of `text`.
pub fn attempts(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once("attempt ")?.1.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Whether `pid` is a live process.
pub fn alive(pid: u64) -> bool {
    u32::try_from(pid).is_ok_and(super::procfs::alive)
}

/// Whether a live process runs exactly `cmdline` (its arguments joined by
/// spaces).
pub fn running(cmdline: &str) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.filter_map(Result::ok).any(|p| {
        let pid = p.file_name().to_string_lossy().parse::<u64>().ok();
        let args = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = args
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        pid.is_some_and(alive) && args.join(" ") == cmdline
    })
}
