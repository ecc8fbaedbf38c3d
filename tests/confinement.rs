//! Hostile tenants: what a plugin, or a project's own processes, try in
//! order to reach beyond their project, and the confinement that stops
//! each try. Two projects side by side, `a` (the attacker) and `b` (the
//! victim, with a secret file, a secret in its `.env` and a running
//! process), real git, real processes, the real hostile fixture, real HTTP.
//!
//! These run as root with Landlock, like CI; bosun then confines every
//! project without any config.
//!
//! Run with: cargo test --test confinement

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::git;
use common::server::{ADMIN, Bosun, BosunProcess, hash};
use serde_json::{Value, json};
use tempfile::TempDir;

const SECRET: &str = "b-secret-7f3a";

fn write_exec(path: &Path, body: &str) {
    std::fs::write(path, body).expect("write");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
}

/// Two tenants in one temp dir: `a` is a clone of `origin.git` with a
/// supervised `web` (`app.sh`), `b` has a secret, a `.env`, a git repo of
/// its own and a supervised `db`. `outside` is a world-writable dir no
/// project should ever write to.
struct Tenants {
    root: TempDir,
}

impl Tenants {
    fn new() -> Self {
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

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Commit `VERSION`, `app.sh` and an executable `hook.sh` in dev, push.
    fn commit(&self, version: &str, app: &str) -> String {
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

    fn config(&self, extra: &str) -> String {
        let hostile = common::guest_dir().join("fixture_hostile.wasm");
        self.config_with(
            extra,
            &format!("[projects.a.actions.hostile]\npath = {hostile:?}"),
        )
    }

    /// The config, with `plugin` as the lines of project a's own action.
    fn config_with(&self, extra: &str, plugin: &str) -> String {
        format!(
            r#"state_dir = "state"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "1s"
[[keys]]
name = "admin"
hash = "{admin}"
projects = "*"
role = "admin"

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
            admin = hash(ADMIN)
        )
    }

    async fn serve(&self, extra: &str) -> Bosun {
        std::fs::write(self.path("bosun.toml"), self.config(extra)).expect("config");
        let b = Bosun::start_in(self.root.path()).await;
        b.settled_project("a", "running").await;
        b.settled_project("b", "running").await;
        b
    }
}

/// Run the hostile fixture on project `a` with `params`; wait for the job.
async fn hostile(b: &Bosun, params: Value) -> Value {
    let (status, job) = b.run("a", "hostile", "?wait=60s", params, ADMIN).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{job}");
    job
}

async fn act(b: &Bosun, action: &str, params: Value) -> Value {
    let (status, job) = b.run("a", action, "?wait=60s", params, ADMIN).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{job}");
    job
}

async fn pid_of(b: &Bosun, project: &str) -> u64 {
    b.get_json(&format!("/v1/projects/{project}"), ADMIN).await["processes"][0]["pid"]
        .as_u64()
        .expect("a pid")
}

async fn uid_of(b: &Bosun, project: &str) -> u64 {
    let body = b.get_json(&format!("/v1/projects/{project}"), ADMIN).await;
    body["confinement"]["identity"]["uid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no identity: {body}"))
}

/// Every file under `dir` (links as their targets' text), for "untouched".
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
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
async fn log_with(b: &Bosun, project: &str, process: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = b
            .get_text(
                &format!("/v1/projects/{project}/processes/{process}/logs?lines=500"),
                ADMIN,
            )
            .await;
        if logs.contains(want) {
            return logs;
        }
        assert!(Instant::now() < deadline, "no `{want}` in:\n{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `attempt <name>: yes|no` lines of `text`.
fn attempts(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once("attempt ")?.1.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Whether `pid` is a live process.
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_a_plugin_configures_runs_nothing_outside_its_project() {
    let t = Tenants::new();
    let b = t.serve("").await;
    let uid = uid_of(&b, "a").await;
    let (a, outside) = (t.path("a"), t.path("outside"));
    let b_before = snapshot(&t.path("b"));
    t.commit("v2", "echo serving v2\nexec sleep 1000\n");
    let out = outside.display();
    let evil = format!(
        "\n[core]\n\
         \tfsmonitor = \"sh -c 'id -u > fsmonitor-ran-as; echo pwned > {out}/fsmonitor'\"\n\
         \tsshCommand = \"sh -c 'echo pwned > {out}/ssh'\"\n\
         [filter \"evil\"]\n\
         \tsmudge = \"sh -c 'id -u > smudge-ran-as; echo pwned > {out}/smudge; cat'\"\n\
         \tclean = cat\n"
    );
    let hook = format!("#!/bin/sh\nid -u > hook-ran-as\necho pwned > {out}/hook\n");
    let job = hostile(
        &b,
        json!({
            "mode": "write",
            "renames": json!({"hook.sh": ".git/hooks/post-checkout"}).to_string(),
            "append": json!({".git/config": evil}).to_string(),
            "files": json!({
                ".gitattributes": "* filter=evil\n",
                ".git/hooks/post-checkout": hook,
            })
            .to_string(),
        }),
    )
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");

    let job = hostile(&b, json!({"mode": "git"})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let r = &job["result"];
    assert!(r["info"]["ok"].is_string(), "{r}");
    assert!(
        r["fetch"]["ok"].is_string(),
        "fetching from the mirror works: {r}"
    );
    assert!(r["update"]["ok"].is_string(), "{r}");
    assert_eq!(
        std::fs::read_to_string(a.join("VERSION")).expect("VERSION"),
        "v2",
        "the update still happened"
    );
    assert_eq!(
        std::fs::read_dir(&outside).expect("outside").count(),
        0,
        "nothing git ran wrote outside the project"
    );
    for marker in ["fsmonitor-ran-as", "smudge-ran-as", "hook-ran-as"] {
        if let Ok(who) = std::fs::read_to_string(a.join(marker)) {
            assert_eq!(who.trim(), uid.to_string(), "{marker} ran as the project");
        }
    }
    assert!(
        !a.join("fsmonitor-ran-as").exists() && !a.join("hook-ran-as").exists(),
        "git was told never to run the fsmonitor or hooks"
    );
    assert_eq!(snapshot(&t.path("b")), b_before, "b is untouched");

    // The tenant's config allows a protocol and rewrites the mirror's fd
    // transport to it: bosun's own settings win, and the fetch is refused.
    let redirect = format!(
        "\n[protocol \"file\"]\n\tallow = always\n[url \"file://{}/evil.git\"]\n\tinsteadOf = fd::3\n",
        a.display()
    );
    hostile(
        &b,
        json!({"mode": "write", "append": json!({".git/config": redirect}).to_string()}),
    )
    .await;
    let job = hostile(&b, json!({"mode": "git"})).await;
    let fetch = job["result"]["fetch"]["err"].as_str().unwrap_or_default();
    assert!(fetch.contains("not allowed"), "{job}");

    // A config that includes another project's: git cannot read it
    // (Landlock), so what it says never takes effect.
    let b_config = t.path("b/.git/config");
    let mut text = std::fs::read_to_string(&b_config).expect("b's config");
    text.push_str(
        "[branch \"main\"]\n\tremote = from-b\n[remote \"from-b\"]\n\turl = /b-was-read\n",
    );
    std::fs::write(&b_config, text).expect("b's config");
    let b_before = snapshot(&t.path("b"));
    let include = format!("\n[include]\n\tpath = {}\n", b_config.display());
    hostile(
        &b,
        json!({"mode": "write", "append": json!({".git/config": include}).to_string()}),
    )
    .await;
    let job = hostile(&b, json!({"mode": "git"})).await;
    let info = job["result"]["info"]["ok"].as_str().expect("info");
    assert!(
        info.contains("origin.git") && !info.contains("b-was-read"),
        "{job}"
    );
    assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
    assert_eq!(snapshot(&t.path("b")), b_before, "b is untouched");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitfile_pointing_at_another_project_is_refused() {
    let t = Tenants::new();
    let b = t.serve("").await;
    let b_before = snapshot(&t.path("b"));
    let job = hostile(
        &b,
        json!({
            "mode": "write",
            "renames": json!({".git": ".git-real"}).to_string(),
            "files": json!({".git": "gitdir: ../b/.git\n"}).to_string(),
        }),
    )
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let job = hostile(&b, json!({"mode": "git"})).await;
    for call in ["info", "fetch", "update", "reset"] {
        let err = job["result"][call]["err"].as_str().unwrap_or_default();
        assert!(
            err.starts_with("denied:") && err.contains("not a plain directory"),
            "{call}: {job}"
        );
    }
    assert_eq!(snapshot(&t.path("b")), b_before, "b is untouched");
    b.stop().await;
}

/// The attempts a rewritten app (or a program a plugin runs) makes, as
/// shell lines printing `attempt <name>: yes|no`.
fn attack_script(t: &Tenants, b_pid: u64, marker: &str) -> String {
    let (b, state, out) = (
        t.path("b").display().to_string(),
        t.path("state").display().to_string(),
        t.path("outside").display().to_string(),
    );
    let config = t.path("bosun.toml").display().to_string();
    let bosun = std::process::id();
    format!(
        r#"#!/bin/sh
try() {{ what=$1; shift; if "$@" >/dev/null 2>&1; then echo "attempt $what: yes"; else echo "attempt $what: no"; fi; }}
try read-b-secret cat {b}/secret.txt
try list-b ls {b}
try read-config cat {config}
try read-jobs-db cat {state}/jobs.db
try read-cache-key cat {state}/cache/key
try read-identities cat {state}/identities.json
try read-b-environ cat /proc/{b_pid}/environ
try see-b-cmdline test -e /proc/{b_pid}/cmdline
try see-bosun test -e /proc/{bosun}/cmdline
try read-bosun-environ cat /proc/{bosun}/environ
try signal-b kill -0 {b_pid}
try signal-bosun kill -0 {bosun}
try write-outside sh -c 'echo x > {out}/from-app'
try write-tmp sh -c 'echo x > /tmp/{marker}'
try write-tty sh -c 'echo x > /dev/tty'
try write-own sh -c 'echo ok > own.txt'
echo "attempts done"
exec sleep 1000
"#
    )
}

/// Check the attempts of [`attack_script`]: everything beyond the project
/// refused, its own dir writable, its /tmp private.
fn check_attempts(t: &Tenants, text: &str, marker: &str) {
    let got = attempts(text);
    assert_eq!(got.len(), 16, "{text}");
    for (what, result) in &got {
        let want = if what == "write-own" || what == "write-tmp" {
            "yes"
        } else {
            "no"
        };
        assert_eq!(result, want, "attempt {what}:\n{text}");
    }
    assert!(
        !Path::new("/tmp").join(marker).exists(),
        "the project's /tmp is not the host's"
    );
    assert!(
        t.path("state/projects/a/tmp").join(marker).exists(),
        "it is the project's private one"
    );
    assert_eq!(
        std::fs::read_dir(t.path("outside"))
            .expect("outside")
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_to_string(t.path("a/own.txt")).expect("own write"),
        "ok\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_app_reaches_nothing_beyond_its_project() {
    let t = Tenants::new();
    let b = t.serve("").await;
    let b_pid = pid_of(&b, "b").await;
    let marker = format!("bosun-escape-{}", std::process::id());
    let job = hostile(
        &b,
        json!({"mode": "write", "files": json!({"app.sh": attack_script(&t, b_pid, &marker)}).to_string()}),
    )
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let job = hostile(&b, json!({"mode": "restart", "name": "web"})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let logs = log_with(&b, "a", "web", "attempts done").await;
    check_attempts(&t, &logs, &marker);
    assert!(alive(b_pid), "b's process lives on");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_confined_and_refuse_loader_variables() {
    let t = Tenants::new();
    let b = t.serve("").await;
    let b_pid = pid_of(&b, "b").await;
    let marker = format!("bosun-escape-cmd-{}", std::process::id());
    let script = attack_script(&t, b_pid, &marker).replace("exec sleep 1000\n", "");
    // `python3 -c`: an allowed interpreter runs whatever it is given.
    let code = format!("import subprocess\nsubprocess.run(['sh', '-c', {script:?}])\n");
    let job = hostile(
        &b,
        json!({"mode": "run", "program": "python3", "args": json!(["-c", code]).to_string()}),
    )
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let stdout = job["result"]["stdout_tail"].as_str().expect("stdout");
    check_attempts(&t, stdout, &marker);

    for var in ["LD_PRELOAD", "PYTHONPATH", "BASH_ENV", "GIT_CONFIG_COUNT"] {
        let job = hostile(
            &b,
            json!({"mode": "run", "program": "sh", "args": r#"["-c", "true"]"#,
                   "env": json!({var: "./evil.so"}).to_string()}),
        )
        .await;
        assert_eq!(job["state"], "failed", "{job}");
        let message = job["error"]["message"].as_str().expect("message");
        assert!(
            message.starts_with("denied:") && message.contains(var),
            "{message}"
        );
    }

    // Nothing of bosun's own environment reaches a program.
    let job = hostile(
        &b,
        json!({"mode": "run", "program": "sh", "args": r#"["-c", "env | sort"]"#}),
    )
    .await;
    let env = job["result"]["stdout_tail"].as_str().expect("stdout");
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    for name in &names {
        assert!(
            [
                "PATH",
                "HOME",
                "USER",
                "LOGNAME",
                "LANG",
                "TMPDIR",
                "FROM_PLUGIN",
                "PWD",
                "SHLVL",
                "_"
            ]
            .contains(name),
            "unexpected variable {name} in:\n{env}"
        );
    }

    // A `.env` naming bosun's own variables gets nothing of them.
    hostile(
        &b,
        json!({"mode": "write", "files": json!({".env": "STOLEN=${PATH}\nALSO=$CARGO_PKG_NAME\n"}).to_string()}),
    )
    .await;
    let job = hostile(
        &b,
        json!({"mode": "run", "program": "sh", "args": r#"["-c", "echo \"stolen=[$STOLEN] also=[$ALSO]\""]"#}),
    )
    .await;
    assert_eq!(job["result"]["stdout_tail"], "stolen=[] also=[]\n", "{job}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dotenv_link_to_another_project_is_refused_without_a_byte_of_it() {
    let t = Tenants::new();
    let b = t.serve("").await;
    let job = hostile(
        &b,
        json!({"mode": "write", "links": json!({".env": "../b/.env"}).to_string()}),
    )
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(
        std::fs::symlink_metadata(t.path("a/.env"))
            .expect("the link")
            .file_type()
            .is_symlink()
    );

    let restart = hostile(&b, json!({"mode": "restart", "name": "web"})).await;
    let project = b.get_json("/v1/projects/a", ADMIN).await;
    let web = &project["processes"][0];
    assert_eq!(web["state"], "fatal", "{project}");
    let message = web["message"].as_str().expect("message");
    assert!(
        message.contains("`.env`") && message.contains("outside"),
        "{message}"
    );

    let run = hostile(
        &b,
        json!({"mode": "run", "program": "sh", "args": r#"["-c", "env"]"#}),
    )
    .await;
    assert_eq!(run["state"], "failed", "{run}");
    let logs = b
        .get_text("/v1/projects/a/processes/web/logs?lines=500", ADMIN)
        .await;
    for text in [
        restart.to_string(),
        project.to_string(),
        run.to_string(),
        logs,
    ] {
        assert!(!text.contains(SECRET), "b's secret leaked: {text}");
    }
    b.stop().await;
}

/// A process whose grandchild leaves the group and the session, and
/// re-executes with an empty environment (no marker for a sweep to find);
/// the grandchild's pid is in `escapee.pid`.
const ESCAPER: &str = r#"
[[projects.a.processes]]
name = "escaper"
command = "python3"
args = ["-c", """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open('escapee.tmp', 'w') as f:
            f.write(str(os.getpid()))
        os.rename('escapee.tmp', 'escapee.pid')
        os.execve('/bin/sleep', ['sleep', '1000'], {})
    os._exit(0)
time.sleep(1000)
"""]
kill_timeout = "1s"
"#;

fn escapee(t: &Tenants) -> Option<u64> {
    std::fs::read_to_string(t.path("a/escapee.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn wait_escapee(t: &Tenants) -> u64 {
    eventually("an escapee", || escapee(t).is_some_and(alive)).await;
    let pid = escapee(t).expect("escapee");
    std::fs::remove_file(t.path("a/escapee.pid")).expect("rm");
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escaped_grandchild_dies_with_stop_and_restart() {
    let t = Tenants::new();
    let b = t.serve(ESCAPER).await;
    let first = wait_escapee(&t).await;
    assert_eq!(
        act(&b, "stop", json!({"name": "escaper"})).await["state"],
        "succeeded"
    );
    eventually("the escapee died with the stop", || !alive(first)).await;
    act(&b, "start", json!({"name": "escaper"})).await;
    let second = wait_escapee(&t).await;
    act(&b, "restart", json!({"name": "escaper"})).await;
    eventually("the escapee died with the restart", || !alive(second)).await;
    let third = wait_escapee(&t).await;
    b.stop().await;
    eventually("the escapee died with bosun's stop", || !alive(third)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escaped_grandchild_of_a_killed_bosun_dies_at_the_next_boot() {
    let t = Tenants::new();
    std::fs::write(t.path("bosun.toml"), t.config(ESCAPER)).expect("config");
    let mut first = BosunProcess::start(t.root.path());
    let pid = wait_escapee(&t).await;
    first.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(alive(pid), "bosun's SIGKILL alone does not reach it");
    let mut second = BosunProcess::start(t.root.path());
    eventually("the next boot stopped it", || !alive(pid)).await;
    assert!(second.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_and_a_memory_hog_are_held_by_their_projects_limits() {
    let t = Tenants::new();
    for dir in ["bomb", "hog", "web"] {
        std::fs::create_dir_all(t.path(dir)).expect("mkdir");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let extra = format!(
        r#"
[projects.bomb]
dir = "bomb"
limits = {{ pids = 32 }}
[[projects.bomb.processes]]
name = "bomb"
command = "python3"
restart_at = []
args = ["-c", """
import os, time
n = 0
while True:
    try:
        if os.fork() == 0:
            time.sleep(1000)
            os._exit(0)
        n += 1
    except OSError as e:
        print('fork failed after', n, flush=True)
        break
time.sleep(1000)
"""]

[projects.hog]
dir = "hog"
limits = {{ memory = "64MiB" }}
[[projects.hog.processes]]
name = "hog"
command = "python3"
restart_at = []
args = ["-c", "hoard = b'x' * (512 << 20)\nprint('survived', flush=True)"]

[projects.web]
dir = "web"
[[projects.web.processes]]
name = "web"
command = "python3"
args = ["-m", "http.server", "{port}", "--bind", "127.0.0.1"]
ready = {{ port = {port}, timeout = "20s" }}
"#
    );
    let b = t.serve(&extra).await;
    let logs = log_with(&b, "bomb", "bomb", "fork failed after").await;
    let forks: u32 = logs
        .split("fork failed after ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(forks < 32, "{logs}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let hog = loop {
        let hog = b.get_json("/v1/projects/hog", ADMIN).await["processes"][0].clone();
        if hog["state"] == "exited" {
            break hog;
        }
        assert!(Instant::now() < deadline, "{hog}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(hog["exit_signal"], 9, "killed by its cgroup's OOM: {hog}");
    assert!(
        !b.get_text("/v1/projects/hog/processes/hog/logs", ADMIN)
            .await
            .contains("survived")
    );
    b.settled_project("web", "running").await;
    let page = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .expect("the other project still serves");
    assert!(page.status().is_success());
    let health = b.get_text("/healthz", ADMIN).await;
    assert!(health.contains("ok"), "{health}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_runs_as_its_project_with_no_capabilities_and_its_limits() {
    let t = Tenants::new();
    std::fs::create_dir_all(t.path("legacy")).expect("mkdir");
    let show = "echo ids $(id -u) $(id -g) $(id -G); \
                grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status; \
                grep -E '^Max open files' /proc/self/limits; echo shown; exec sleep 1000";
    let extra = format!(
        r#"
[projects.a.limits]
nofile = 777
[[projects.a.processes]]
name = "show"
command = "sh"
args = ["-c", "{show}"]

[projects.legacy]
dir = "legacy"
unconfined = true
[[projects.legacy.processes]]
name = "show"
command = "sh"
args = ["-c", "echo ids $(id -u); echo shown; exec sleep 1000"]
"#
    );
    let b = t.serve(&extra).await;
    let uid = uid_of(&b, "a").await;
    let logs = log_with(&b, "a", "show", "shown").await;
    assert!(logs.contains(&format!("ids {uid} {uid} {uid}\n")), "{logs}");
    assert!(logs.contains("CapEff:\t0000000000000000"), "{logs}");
    assert!(logs.contains("CapBnd:\t0000000000000000"), "{logs}");
    assert!(logs.contains("NoNewPrivs:\t1"), "{logs}");
    assert!(
        logs.lines().any(|l| l.contains("Max open files")
            && l.split_whitespace().filter(|w| *w == "777").count() == 2),
        "{logs}"
    );
    let a = b.get_json("/v1/projects/a", ADMIN).await;
    let report = &a["confinement"];
    assert_eq!(report["mode"], "confined", "{report}");
    assert_eq!(report["identity"]["allocated"], true);
    let abi = report["landlock_abi"].as_i64().expect("abi");
    assert_eq!(
        report["landlock"],
        if abi >= 6 { "full" } else { "partial" }
    );
    assert_eq!(report["private_tmp"], true);
    assert_eq!(report["limits"]["nofile"], "777 (rlimit)");
    assert_ne!(uid_of(&b, "b").await, uid, "each project has its own id");
    let meta = std::fs::metadata(t.path("a")).expect("a");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        u64::from(meta.uid()),
        uid,
        "the project dir is the project's"
    );
    assert_eq!(meta.mode() & 0o007, 0, "and closed to other users");

    let legacy = b.get_json("/v1/projects/legacy", ADMIN).await;
    assert_eq!(legacy["confinement"]["mode"], "unconfined", "{legacy}");
    let logs = log_with(&b, "legacy", "show", "shown").await;
    assert!(logs.contains("ids 0\n"), "unconfined runs as bosun: {logs}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprivileged_bosun_still_confines_with_landlock() {
    const UID: u32 = 1_899_999_990;
    let t = Tenants::new();
    let extra = r#"
[[projects.a.processes]]
name = "peek"
command = "sh"
args = ["-c", """
for f in ../b/secret.txt ../bosun.toml ../state/jobs.db; do
  if cat $f >/dev/null 2>&1; then echo "attempt $f: yes"; else echo "attempt $f: no"; fi
done
if cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -q B_SECRET; then
  echo 'attempt environ: yes'; else echo 'attempt environ: no'; fi
if kill -0 $PPID 2>/dev/null; then echo 'attempt signal-bosun: yes'; else echo 'attempt signal-bosun: no'; fi
if echo ok > own.txt; then echo 'attempt own: yes'; fi
echo peeked
exec sleep 1000
"""]
"#;
    // No custom plugin: the build's own dir may not be readable by UID.
    std::fs::write(t.path("bosun.toml"), t.config_with(extra, "")).expect("config");
    let bin = t.path("bosun-bin");
    std::fs::copy(env!("CARGO_BIN_EXE_bosun"), &bin).expect("copy the binary");
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{UID}:{UID}")])
        .arg(t.root.path())
        .status()
        .expect("chown");
    assert!(chown.success());
    let mut server = BosunProcess::start_as(t.root.path(), &bin, UID);
    server.settled_project("a", "running").await;
    let a = server.get_json("/v1/projects/a", ADMIN).await;
    let report = &a["confinement"];
    assert!(report["identity"].is_null(), "{report}");
    assert_eq!(report["private_tmp"], false);
    assert_ne!(report["landlock"], "none", "{report}");
    assert!(
        report["missing"]
            .as_array()
            .expect("missing")
            .iter()
            .any(|m| m.as_str().unwrap_or("").contains("not root")),
        "{report}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs = loop {
        let logs = server
            .get_text("/v1/projects/a/processes/peek/logs?lines=100", ADMIN)
            .await;
        if logs.contains("peeked") {
            break logs;
        }
        assert!(Instant::now() < deadline, "{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let got = attempts(&logs);
    assert_eq!(got.get("own").map(String::as_str), Some("yes"), "{logs}");
    for what in [
        "../b/secret.txt",
        "../bosun.toml",
        "../state/jobs.db",
        "environ",
        "signal-bosun",
    ] {
        assert_eq!(
            got.get(what).map(String::as_str),
            Some("no"),
            "same uid, but Landlock refuses {what}:\n{logs}"
        );
    }
    assert!(server.terminate().success());
}

/// A static HTTP server for a bare repo (git's dumb protocol) that wants
/// basic auth (given in its environment, `UPSTREAM_AUTH`) and answers
/// `info/refs` slowly, so the fetch runs long enough to look at every
/// command line.
const UPSTREAM: &str = r#"
import http.server, os, sys, time
os.chdir(sys.argv[1])
want = "Basic " + os.environ["UPSTREAM_AUTH"]
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != want:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        if "info/refs" in self.path:
            time.sleep(1.5)
        return super().do_GET()
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_git_credentials_never_reach_a_command_line() {
    use std::io::BufRead as _;
    let t = Tenants::new();
    t.commit("v2", "echo serving v2\nexec sleep 1000\n");
    git(&t.path("origin.git"), &["update-server-info"]);
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // base64 of `bot:s3cret-upstream`, the credentials in the URL below.
    let mut server = Server(
        std::process::Command::new("python3")
            .args(["-c", UPSTREAM])
            .arg(t.root.path())
            .env("UPSTREAM_AUTH", "Ym90OnMzY3JldC11cHN0cmVhbQ==")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("upstream server"),
    );
    let mut port = String::new();
    std::io::BufReader::new(server.0.stdout.take().expect("stdout"))
        .read_line(&mut port)
        .expect("port");
    let url = format!(
        "http://bot:s3cret-upstream@127.0.0.1:{}/origin.git",
        port.trim()
    );
    let config = t
        .config("")
        .replace("remote = \"./origin.git\"", &format!("remote = {url:?}"));
    std::fs::write(t.path("bosun.toml"), config).expect("config");
    let b = Bosun::start_in(t.root.path()).await;
    let fetch = {
        let api = (*b).clone();
        tokio::spawn(async move {
            api.run("a", "hostile", "?wait=60s", json!({"mode": "git"}), ADMIN)
                .await
        })
    };
    let mut seen = 0;
    while !fetch.is_finished() {
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                assert!(
                    !cmdline.contains("s3cret-upstream"),
                    "on a command line: {cmdline}"
                );
                if cmdline.contains("remote-http") {
                    seen += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, job) = fetch.await.expect("the fetch task");
    drop(server);
    assert!(
        job["result"]["fetch"]["ok"].is_string(),
        "the credentials worked: {job}"
    );
    assert!(seen > 0, "git's http helper was running while looked at");
    assert!(!job.to_string().contains("s3cret"), "{job}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosun_exec_beside_a_running_server_changes_no_identity() {
    let t = Tenants::new();
    let b = t.serve("").await;
    let ids = std::fs::read(t.path("state/identities.json")).expect("identities");
    use std::os::unix::fs::MetadataExt as _;
    let owner = std::fs::metadata(t.path("a")).expect("a").uid();
    let pid = pid_of(&b, "a").await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["exec", "--config"])
        .arg(t.path("bosun.toml"))
        .args(["a", "hostile", "mode=git"])
        .output()
        .await
        .expect("bosun exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        result["info"]["ok"].is_string(),
        "git ran as the project: {result}"
    );
    assert_eq!(
        std::fs::read(t.path("state/identities.json")).expect("identities"),
        ids,
        "no project got a new id"
    );
    assert_eq!(std::fs::metadata(t.path("a")).expect("a").uid(), owner);
    assert_eq!(pid_of(&b, "a").await, pid, "the server's process runs on");
    b.stop().await;
}
