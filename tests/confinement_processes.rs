//! Hostile tenants, as processes: what a project's own programs try (to
//! outlive a stop, to exhaust the host, to be more than their project's
//! user) and what an unprivileged bosun still holds. See `confinement.rs`
//! for the same two tenants attacked through plugins.
//!
//! Run with: cargo test --test confinement_processes

mod common;

use std::time::Duration;

use common::eventually;
use common::server::{ADMIN, BosunProcess};
use common::tenants::{Tenants, act, alive, attempts, log_with, uid_of};
use serde_json::json;

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
    let hog = common::until_ok("the hog to exit", async || {
        let hog = b.get_json("/v1/projects/hog", ADMIN).await["processes"][0].clone();
        if hog["state"] == "exited" {
            Ok(hog)
        } else {
            Err(hog.to_string())
        }
    })
    .await;
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
                grep -E '^Max open files' /proc/self/limits; \
                v1=$(sed -n 's/^[0-9]*:pids://p' /proc/self/cgroup); \
                v2=$(sed -n 's/^0:://p' /proc/self/cgroup); \
                case $v1 in /*) f=/sys/fs/cgroup/pids$v1;; *) f=/sys/fs/cgroup$(dirname $v2);; esac; \
                echo own-pids-max $(cat $f/pids.max 2>&1); echo shown; exec sleep 1000";
    let extra = format!(
        r#"
[projects.a.limits]
nofile = 777
pids = 64
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
    // Its cgroups were made as it started (not with bosun), and it reads
    // its own limit there, as a runtime sizing itself would.
    let pids = report["limits"]["pids"].as_str().unwrap_or_default();
    if pids.ends_with("(cgroup v1)") || pids.ends_with("(cgroup v2)") {
        assert!(logs.contains("own-pids-max 64\n"), "{report} {logs}");
    }
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
    let logs = common::until_ok("`peeked` in the log", async || {
        let logs = server
            .get_text("/v1/projects/a/processes/peek/logs?lines=100", ADMIN)
            .await;
        if logs.contains("peeked") {
            Ok(logs)
        } else {
            Err(logs)
        }
    })
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosuns_own_files_are_its_own_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = Tenants::new();
    let b = t.serve("").await;
    log_with(&b, "a", "web", "serving").await;
    let mode = |rel: &str| {
        std::fs::metadata(t.path(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("state"), 0o700);
    assert_eq!(mode("state/jobs.db"), 0o600);
    assert_eq!(mode("state/logs/a"), 0o700);
    eventually("the log file", || t.path("state/logs/a/web-0.log").exists()).await;
    assert_eq!(mode("state/logs/a/web-0.log"), 0o600);
    b.stop().await;
}

/// A git that times out is killed with its whole group: here the tenant's
/// own `core.sshCommand` leaves a grandchild. An unprivileged bosun has no
/// cgroup leaves to sweep it up, so only the group kill reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_that_times_out_goes_with_its_helpers() {
    const UID: u32 = 1_899_999_989;
    let t = Tenants::new();
    let b = t.path("b");
    let branch = common::git(&b, &["symbolic-ref", "--short", "HEAD"]);
    common::git(
        &b,
        &["remote", "add", "origin", "ssh://nowhere.invalid/repo.git"],
    );
    common::git(
        &b,
        &["config", &format!("branch.{branch}.remote"), "origin"],
    );
    common::git(
        &b,
        &["config", "core.sshCommand", "sleep 4343 & sleep 4344 #"],
    );
    let extra = "[projects.b.actions.update]\n[projects.b.git]\ntimeout = \"3s\"\n";
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
    server.settled_project("b", "running").await;
    let project = server.get_json("/v1/projects/b", ADMIN).await;
    assert!(
        project["confinement"]["cgroup"].is_null(),
        "this bosun has no cgroups: {project}"
    );
    let (_, job) = server
        .run("b", "update", "?wait=60s", json!({}), ADMIN)
        .await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("longer than")),
        "{job}"
    );
    eventually("the helper's grandchild is gone", || {
        !common::tenants::running("sleep 4343")
    })
    .await;
    assert!(server.terminate().success());
}
