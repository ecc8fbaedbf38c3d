//! The stock actions on real backends, over HTTP: a bare "origin" repo and
//! a clone in temp dirs, real git, a real supervised process that prints the
//! revision it runs, build steps through the allow-list, and deploys that
//! roll themselves back.
//!
//! Run with: cargo test --test actions

mod common;

use std::path::{Path, PathBuf};

use common::git;
use common::server::{ADMIN, Bosun, admin_config};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

fn write_exec(path: &Path, body: &str) {
    std::fs::write(path, body).expect("write");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
}

/// A developer's clone that pushes to origin, and the project's clone that
/// bosun serves.
struct Repos {
    root: TempDir,
}

impl Repos {
    fn new() -> Self {
        let root = TempDir::new().expect("temp");
        let r = Self { root };
        git(r.root.path(), &["init", "--quiet", "--bare", "origin.git"]);
        git(r.root.path(), &["clone", "--quiet", "origin.git", "dev"]);
        r.commit(
            "v1",
            "echo \"serving $(cat VERSION) built $(cat BUILT 2>/dev/null)\"\nexec sleep 1000\n",
            "cat VERSION > BUILT\n",
        );
        git(r.root.path(), &["clone", "--quiet", "origin.git", "app"]);
        r
    }

    fn dev(&self) -> PathBuf {
        self.root.path().join("dev")
    }

    fn app(&self) -> PathBuf {
        self.root.path().join("app")
    }

    /// Commit `VERSION`, `app.sh` and `build.sh` in dev and push; returns the revision.
    fn commit(&self, version: &str, app: &str, build: &str) -> String {
        let dev = self.dev();
        std::fs::write(dev.join("VERSION"), version).expect("write");
        write_exec(&dev.join("app.sh"), &format!("#!/bin/sh\n{app}"));
        write_exec(&dev.join("build.sh"), &format!("#!/bin/sh\n{build}"));
        std::fs::write(dev.join(".gitignore"), "BUILT\n").expect("write");
        git(&dev, &["add", "-A"]);
        git(
            &dev,
            &["commit", "--quiet", "-m", &format!("release {version}")],
        );
        git(&dev, &["push", "--quiet", "origin", "HEAD:main"]);
        git(&dev, &["rev-parse", "HEAD"])
    }

    /// The config: project `app` with a supervised `web` that is ready once
    /// it prints `serving`, and project `other` with the hostile fixture.
    fn config(&self) -> String {
        let hostile = common::guest_dir().join("fixture_hostile.wasm");
        std::fs::create_dir_all(self.root.path().join("other")).expect("mkdir");
        std::fs::create_dir_all(self.dev().join("nested")).expect("mkdir");
        format!(
            r#"{head}
[projects.app]
dir = "app"
actions = ["status", "start", "stop", "restart", "update", "deploy"]
[projects.app.git]
remote = "./origin.git"
[projects.app.commands]
allow = ["sh"]
[projects.app.deploy]
build = [["sh", "build.sh"]]
ready_timeout = "3s"
settle = "500ms"
[[projects.app.processes]]
name = "web"
command = "./app.sh"
ready = {{ log = "^serving", timeout = "3s" }}
restart_at = ["100ms"]
kill_timeout = "1s"

[projects.nested]
dir = "dev/nested"
actions = ["update"]

[projects.other]
dir = "other"
[projects.other.commands]
allow = ["sh"]
[projects.other.actions.hostile]
path = {hostile:?}
"#,
            head = admin_config("")
        )
    }

    async fn serve(&self) -> Bosun {
        std::fs::write(self.root.path().join("bosun.toml"), self.config()).expect("config");
        let b = Bosun::start_in(self.root.path()).await;
        wait_for_log(&b, "serving v1").await;
        b
    }
}

/// Run `action` on project app with `params`, waiting for the job.
async fn act(b: &Bosun, action: &str, params: Value) -> Value {
    act_in(b, "app", action, params).await
}

/// Run `action` on `project` with `params`, waiting for the job.
async fn act_in(b: &Bosun, project: &str, action: &str, params: Value) -> Value {
    let (status, job) = b.run(project, action, "?wait=60s", params, ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    job
}

/// A failed job's error message.
fn error_of(job: &Value) -> &str {
    job["error"]["message"].as_str().expect("an error message")
}

async fn web(b: &Bosun) -> Value {
    b.get_json("/v1/projects/app", ADMIN).await["processes"][0].clone()
}

/// Wait until the web process's latest `serving` line is `want`.
async fn wait_for_log(b: &Bosun, want: &str) {
    common::until_ok(&format!("`{want}` served"), async || {
        let logs = b
            .get_text("/v1/projects/app/processes/web/logs?lines=200", ADMIN)
            .await;
        let last = logs
            .lines()
            .rfind(|l| l.contains("| serving"))
            .unwrap_or("");
        if last.contains(want) {
            Ok(())
        } else {
            Err(logs)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_moves_to_a_new_commit_and_then_reports_no_change() {
    let repos = Repos::new();
    let b = repos.serve().await;
    let before = git(&repos.app(), &["rev-parse", "HEAD"]);
    let pid = web(&b).await["pid"].clone();
    let v2 = repos.commit("v2", "echo serving v2\nexec sleep 1000\n", "true\n");

    let job = act(&b, "update", json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        job["result"],
        json!({"from": before, "to": v2, "changed": true})
    );
    assert_eq!(git(&repos.app(), &["rev-parse", "HEAD"]), v2);

    let again = act(&b, "update", json!({})).await;
    assert_eq!(again["result"]["changed"], false, "{again}");
    assert_eq!(web(&b).await["pid"], pid, "update restarts nothing");

    let status = act(&b, "status", json!({})).await;
    assert_eq!(status["result"]["git"]["revision"], v2);
    assert_eq!(status["result"]["git"]["branch"], "main");
    assert_eq!(status["result"]["git"]["subject"], "release v2");
    assert_eq!(status["result"]["git"]["dirty"], false);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_refuses_local_changes_and_a_diverged_history() {
    let repos = Repos::new();
    let b = repos.serve().await;
    std::fs::write(repos.app().join("VERSION"), "edited on the server").expect("edit");
    repos.commit("v2", "exec sleep 1000\n", "true\n");
    let job = act(&b, "update", json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    let message = error_of(&job);
    assert!(
        message.contains("local changes") && message.contains("VERSION"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(repos.app().join("VERSION")).expect("read"),
        "edited on the server",
        "nothing was thrown away"
    );

    // Committed on the server while origin moved on: diverged.
    git(
        &repos.app(),
        &[
            "-c",
            "user.name=x",
            "-c",
            "user.email=x@x",
            "commit",
            "--quiet",
            "-am",
            "hotfix on the server",
        ],
    );
    let job = act(&b, "update", json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(error_of(&job).contains("diverged"), "{job}");

    // A project dir inside another repository never drives that repository.
    let dev_head = git(&repos.dev(), &["rev-parse", "HEAD"]);
    std::fs::write(repos.dev().join("VERSION"), "uncommitted work").expect("edit");
    let (_, job) = b
        .run(
            "nested",
            "update",
            "?wait=30s",
            json!({"force": true}),
            ADMIN,
        )
        .await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        error_of(&job).contains("no `.git` directory of its own"),
        "{job}"
    );
    assert_eq!(git(&repos.dev(), &["rev-parse", "HEAD"]), dev_head);
    assert_eq!(
        std::fs::read_to_string(repos.dev().join("VERSION")).expect("read"),
        "uncommitted work"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_runs_the_new_code_and_rolls_back_what_does_not_come_up() {
    let repos = Repos::new();
    let b = repos.serve().await;

    // A good commit: built, restarted, and the new code is what runs.
    let app = "echo \"serving $(cat VERSION) built $(cat BUILT)\"\nexec sleep 1000\n";
    let v2 = repos.commit("v2", app, "cat VERSION > BUILT\n");
    let job = act(&b, "deploy", json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["to"], v2);
    assert_eq!(job["result"]["rolled_back"], false);
    wait_for_log(&b, "serving v2 built v2").await;
    let log = b
        .get_text(
            &format!("/v1/jobs/{}/log", job["id"].as_str().expect("id")),
            ADMIN,
        )
        .await;
    assert!(log.contains("build: sh build.sh"), "{log}");

    // Nothing new: no build, no restart.
    let pid = web(&b).await["pid"].clone();
    let job = act(&b, "deploy", json!({})).await;
    assert_eq!(job["result"]["changed"], false, "{job}");
    assert_eq!(web(&b).await["pid"], pid);

    // A commit whose process exits at once: rolled back, v2 running again.
    repos.commit("v3", "echo crashing\nexit 1\n", "cat VERSION > BUILT\n");
    let job = act(&b, "deploy", json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    let detail = &job["error"]["detail"];
    assert_eq!(detail["rolled_back"], true, "{job}");
    assert_eq!(detail["restored_revision"], v2);
    assert!(
        detail["reason"].as_str().expect("reason").contains("ready"),
        "{detail}"
    );
    assert_eq!(git(&repos.app(), &["rev-parse", "HEAD"]), v2);
    wait_for_log(&b, "serving v2 built v2").await;
    assert_eq!(web(&b).await["state"], "running");

    // A commit whose build fails: never restarted onto, rolled back.
    repos.commit("v4", app, "echo compile error >&2\nexit 3\n");
    let job = act(&b, "deploy", json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["detail"]["rolled_back"], true);
    assert!(
        job["error"]["detail"]["reason"]
            .as_str()
            .expect("reason")
            .contains("exited with 3"),
        "{job}"
    );
    assert_eq!(git(&repos.app(), &["rev-parse", "HEAD"]), v2);
    wait_for_log(&b, "serving v2 built v2").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_stop_act_on_one_process_or_all() {
    let repos = Repos::new();
    let b = repos.serve().await;
    let job = act(&b, "stop", json!({"name": "web"})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(web(&b).await["state"], "stopped");
    let job = act(&b, "start", json!({"name": "web"})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(["starting", "running"].contains(&web(&b).await["state"].as_str().expect("state")));
    act(&b, "stop", json!({})).await;
    assert_eq!(web(&b).await["state"], "stopped");
    act(&b, "start", json!({})).await;
    let job = act(&b, "restart", json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(web(&b).await["state"], "running");
    let missing = act(&b, "stop", json!({"name": "nope"})).await;
    assert_eq!(missing["state"], "failed");
    assert!(error_of(&missing).contains("not found"), "{missing}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_only_allowed_programs_inside_the_project() {
    let repos = Repos::new();
    std::fs::create_dir_all(repos.root.path().join("other/sub")).expect("mkdir");
    std::fs::write(repos.root.path().join("other/.env"), "FROM_DOTENV=dot\n").expect("env");
    let b = repos.serve().await;
    let run = |params: Value| {
        let b = &b;
        async move {
            let (status, job) = b.run("other", "hostile", "?wait=30s", params, ADMIN).await;
            assert_eq!(status, StatusCode::OK, "{job}");
            job
        }
    };
    let job = run(json!({"mode": "run", "program": "sh", "args": r#"["-c", "pwd; echo $FROM_DOTENV $FROM_PLUGIN; echo oops >&2; exit 4"]"#, "cwd": "sub"})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let out = &job["result"];
    assert_eq!(out["status"], 4);
    let stdout = out["stdout_tail"].as_str().expect("stdout");
    assert!(stdout.ends_with("/other/sub\ndot yes\n"), "{stdout}");
    assert_eq!(out["stderr_tail"], "oops\n");
    let log = b
        .get_text(
            &format!("/v1/jobs/{}/log", job["id"].as_str().expect("id")),
            ADMIN,
        )
        .await;
    assert!(
        log.contains("dot yes") && log.contains("oops"),
        "output streams into the job log: {log}"
    );

    // A build step that leaves a daemon holding its stdout is done when it
    // exits (not at the commands timeout), and the daemon goes with it.
    let daemon =
        run(json!({"mode": "run", "program": "sh", "args": r#"["-c", "sleep 4242 & echo done"]"#}))
            .await;
    assert_eq!(daemon["state"], "succeeded", "{daemon}");
    assert_eq!(daemon["result"]["status"], 0, "{daemon}");
    assert_eq!(daemon["result"]["stdout_tail"], "done\n", "{daemon}");
    common::eventually("the daemon it left is gone", || {
        !common::tenants::running("sleep 4242")
    })
    .await;

    let denied =
        run(json!({"mode": "run", "program": "curl", "args": r#"["http://127.0.0.1"]"#})).await;
    assert_eq!(denied["state"], "failed");
    let message = error_of(&denied);
    assert!(
        message.starts_with("denied:") && message.contains("`curl`"),
        "{message}"
    );
    let path = run(json!({"mode": "run", "program": "/bin/sh", "args": r#"["-c", "true"]"#})).await;
    assert!(error_of(&path).starts_with("denied:"), "{path}");
    let outside =
        run(json!({"mode": "run", "program": "sh", "args": r#"["-c", "pwd"]"#, "cwd": "../app"}))
            .await;
    let message = error_of(&outside);
    assert!(
        message.starts_with("denied:") && message.contains("outside"),
        "{message}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_reach_another_projects_processes() {
    let repos = Repos::new();
    let b = repos.serve().await;
    let pid = web(&b).await["pid"].clone();
    // The hostile plugin of project `other` tries to start "web".
    let (_, job) = b
        .run(
            "other",
            "hostile",
            "?wait=30s",
            json!({"mode": "processes"}),
            ADMIN,
        )
        .await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(error_of(&job).starts_with("not found:"), "{job}");
    let web = web(&b).await;
    assert_eq!(web["pid"], pid, "app's process is untouched");
    assert_eq!(web["restarts"], 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_clones_missing_projects_and_a_failed_clone_spares_the_others() {
    let repos = Repos::new();
    git(&repos.dev(), &["push", "--quiet", "origin", "HEAD:next"]);
    repos.commit("v2", "echo serving v2\nexec sleep 1000\n", "true\n");
    let root = repos.root.path();
    std::fs::create_dir_all(root.join("empty")).expect("mkdir");
    let config = format!(
        r#"{head}
[projects.fresh]
dir = "deploy/fresh"
actions = ["status"]
[projects.fresh.git]
clone = "./origin.git"
branch = "next"
[[projects.fresh.processes]]
name = "web"
command = "./app.sh"

[projects.empty]
dir = "empty"
actions = ["status"]
[projects.empty.git]
clone = "./origin.git"

[projects.broken]
dir = "broken"
[projects.broken.git]
clone = "./no-such-repo.git"
[[projects.broken.processes]]
name = "web"
command = "./app.sh"
"#,
        head = admin_config("")
    );
    std::fs::write(root.join("bosun.toml"), config).expect("config");
    let b = Bosun::start_in(root).await;

    // Clones run in the background; a project's processes wait for its own.
    b.settled_project("fresh", "running").await;
    let fresh = root.join("deploy/fresh");
    assert_eq!(git(&fresh, &["rev-parse", "--abbrev-ref", "HEAD"]), "next");
    assert_eq!(
        std::fs::read_to_string(fresh.join("VERSION")).expect("VERSION"),
        "v1"
    );
    let status = act_in(&b, "fresh", "status", json!({})).await;
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["result"]["git"]["subject"], "release v1", "{status}");
    let empty = act_in(&b, "empty", "status", json!({})).await;
    assert_eq!(empty["state"], "succeeded", "{empty}");
    assert_eq!(empty["result"]["git"]["branch"], "main", "{empty}");
    assert_eq!(empty["result"]["git"]["subject"], "release v2", "{empty}");

    let broken = b.settled_project("broken", "fatal").await;
    let web = &broken["processes"][0];
    assert!(
        web["message"]
            .as_str()
            .is_some_and(|m| m.contains("not usable")),
        "{broken}"
    );
    assert!(
        !root.join("broken").exists(),
        "a failed clone leaves no dir"
    );
    assert!(
        !root.join(".broken.bosun-clone").exists(),
        "nor a half-made one"
    );
    b.stop().await;

    // A later start leaves an existing checkout alone, even if it is behind.
    std::fs::write(fresh.join("LOCAL"), "kept").expect("write");
    let b = Bosun::start_in(root).await;
    assert_eq!(
        std::fs::read_to_string(fresh.join("LOCAL")).expect("LOCAL"),
        "kept"
    );
    assert_eq!(git(&fresh, &["rev-parse", "--abbrev-ref", "HEAD"]), "next");
    b.stop().await;
}

/// One tenant's remote that accepts and never answers: the server, the
/// other projects and their jobs go on at once; that project's processes
/// and jobs wait for its clone, which ends at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_clone_holds_back_only_its_own_project() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a silent remote");
    let port = silent.local_addr().expect("addr").port();
    let repos = Repos::new();
    let root = repos.root.path();
    std::fs::create_dir_all(root.join("other")).expect("mkdir");
    let config = format!(
        r#"{head}
[projects.slow]
dir = "slow"
actions = ["status"]
[projects.slow.git]
clone = "http://127.0.0.1:{port}/repo.git"
timeout = "10m"
[[projects.slow.processes]]
name = "web"
command = "./app.sh"

[projects.other]
dir = "other"
actions = ["status"]
[[projects.other.processes]]
name = "web"
command = "sleep"
args = ["1000"]
"#,
        head = admin_config("")
    );
    std::fs::write(root.join("bosun.toml"), config).expect("config");
    let b = Bosun::start_in(root).await;
    b.settled_project("other", "running").await;
    let other = act_in(&b, "other", "status", json!({})).await;
    assert_eq!(other["state"], "succeeded", "{other}");
    let slow = b.get_json("/v1/projects/slow", ADMIN).await;
    assert_eq!(slow["processes"][0]["state"], "starting", "{slow}");
    assert!(
        slow["processes"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("checkout")),
        "{slow}"
    );
    let (status, job) = b.run("slow", "status", "", json!({}), ADMIN).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(
        job["state"], "queued",
        "a job waits for the checkout: {job}"
    );
    // The remote goes away (its queued connection is reset), so the clone
    // fails; then the job runs and the process cannot start.
    drop(silent);
    let web = b.settled_project("slow", "fatal").await;
    assert!(
        web["processes"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not usable")),
        "{web}"
    );
    let job = b.finished(job["id"].as_str().expect("id")).await;
    assert_ne!(job["state"], "queued", "{job}");
    b.stop().await;
}
