//! Reload while serving: only what changed in the config changes. A real
//! `bosun serve` with four projects: one kept as it is, one with a changed
//! process env, one removed and one added; a key revoked and a plugin
//! replaced on disk; then broken configs that must change nothing, and the
//! three ways to ask (SIGHUP, `bosun reload`, the API) giving one result.

mod common;

use std::path::Path;
use std::time::Duration;

use bosun::jobs::{JobState, Store};
use common::load::Load;
use common::server::{ADMIN, BosunProcess, admin_config, hash};
use common::{guest_dir, until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

/// A `run` key on project a that the second config no longer has.
const OPS: &str = "bsk_test_ops";

const SLEEPER: &str = r#"command = "sh"
args = ["-c", "echo greeting=$GREETING; exec sleep 1000"]"#;

/// The config: `b_greeting` is project b's env; `second` drops key `ops`
/// and project c, and adds project d.
fn config(b_greeting: &str, second: bool) -> String {
    let hostile = guest_dir().join("fixture_hostile.wasm");
    let mut text = format!(
        r#"{head}
[projects.a]
dir = "a"
[projects.a.actions.probe]
path = "probe.wasm"
[[projects.a.processes]]
name = "web"
{SLEEPER}

[projects.b]
dir = "b"
[[projects.b.processes]]
name = "web"
instances = 2
{SLEEPER}
env = {{ GREETING = "{b_greeting}" }}
"#,
        head = admin_config(r#"shutdown_grace = "2s""#),
    );
    if second {
        text.push_str(&format!(
            "\n[projects.d]\ndir = \"d\"\n[[projects.d.processes]]\nname = \"new\"\n{SLEEPER}\n"
        ));
    } else {
        text.push_str(&format!(
            r#"
[[keys]]
name = "ops"
hash = "{ops}"
projects = ["a"]
role = "run"

[projects.c]
dir = "c"
[projects.c.actions.hostile]
path = "{hostile}"
[[projects.c.processes]]
name = "worker"
command = "sh"
args = ["-c", "echo left > /tmp/left-behind; exec sleep 1000"]
"#,
            ops = hash(OPS),
            hostile = hostile.display(),
        ));
    }
    text
}

fn setup(text: &str) -> TempDir {
    let root = TempDir::new().expect("temp dir");
    for project in ["a", "b", "c", "d"] {
        std::fs::create_dir_all(root.path().join(project)).expect("project dir");
    }
    std::fs::copy(
        guest_dir().join("fixture_hostile.wasm"),
        root.path().join("probe.wasm"),
    )
    .expect("probe plugin");
    std::fs::write(root.path().join("bosun.toml"), text).expect("config");
    root
}

/// Replace the config file whole, as an editor's save does.
fn write_config(root: &Path, text: &str) {
    let tmp = root.join("bosun.toml.new");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(tmp, root.join("bosun.toml")).expect("swap config");
}

/// The processes of `project` once every one has a pid and is running.
async fn running(bosun: &BosunProcess, project: &str) -> Vec<Value> {
    until(&format!("{project}'s processes running"), async || {
        let body = bosun
            .get_json(&format!("/v1/projects/{project}"), ADMIN)
            .await;
        let procs = body["processes"].as_array()?.clone();
        let all = !procs.is_empty()
            && procs
                .iter()
                .all(|p| p["state"] == "running" && p["pid"].is_u64());
        all.then_some(procs)
    })
    .await
}

fn pids(procs: &[Value]) -> Vec<u64> {
    procs.iter().filter_map(|p| p["pid"].as_u64()).collect()
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !matches!(
            s[s.rfind(')').map_or(0, |i| i + 2)..].chars().next(),
            Some('Z' | 'X')
        )
    })
}

async fn reload(bosun: &BosunProcess) -> (StatusCode, Value) {
    let resp = bosun.post("/v1/reload", ADMIN).await;
    let status = resp.status();
    (status, resp.json().await.expect("JSON"))
}

async fn submit(bosun: &BosunProcess, project: &str, action: &str, params: Value) -> String {
    let (status, job) = bosun.run(project, action, "", params, ADMIN).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    job["id"].as_str().expect("job id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_only_what_the_config_changed() {
    let root = setup(&config("one", false));
    let bosun = BosunProcess::start(root.path());
    let a = pids(&running(&bosun, "a").await);
    let b = pids(&running(&bosun, "b").await);
    let c = pids(&running(&bosun, "c").await);
    let c_cgroup = bosun.get_json("/v1/projects/c", ADMIN).await["confinement"]["cgroup"]
        .as_str()
        .map(std::path::PathBuf::from);
    assert!(c_cgroup.as_ref().is_none_or(|d| d.exists()));
    let left_behind = root.path().join("state/projects/c/tmp/left-behind");
    until("c wrote into its private tmp", async || {
        left_behind.exists().then_some(())
    })
    .await;
    // The key about to be revoked follows a log.
    let stream = bosun
        .req(
            Method::GET,
            "/v1/projects/a/processes/web/logs?follow=1",
            Some(OPS),
        )
        .send()
        .await
        .expect("follow");
    assert_eq!(stream.status(), StatusCode::OK);
    // c: one job running past the grace, one queued behind it.
    let long = submit(
        &bosun,
        "c",
        "hostile",
        json!({"mode": "slow", "count": "1200", "ms": "50"}),
    )
    .await;
    bosun.until_running(&long).await;
    let queued = submit(&bosun, "c", "hostile", json!({"mode": "noop"})).await;
    // a: a job on the plugin about to be replaced.
    let old_code = submit(
        &bosun,
        "a",
        "probe",
        json!({"mode": "slow", "count": "40", "ms": "50"}),
    )
    .await;
    bosun.until_running(&old_code).await;

    write_config(root.path(), &config("two", true));
    std::fs::copy(
        guest_dir().join("disk_usage.wasm"),
        root.path().join("probe.wasm"),
    )
    .expect("replace the plugin");
    let (status, report) = reload(&bosun).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["changed"], true);
    assert_eq!(
        report["projects"],
        json!({"added": ["d"], "removed": ["c"], "restarted": []})
    );
    assert_eq!(
        report["processes"],
        json!({"added": ["d/new-0"], "removed": ["c/worker-0"], "restarted": ["b/web-0", "b/web-1"], "failed": []})
    );
    assert_eq!(
        report["plugins"],
        json!({"added": [], "removed": ["c/hostile"], "replaced": ["a/probe"]})
    );
    assert_eq!(
        report["keys"],
        json!({"added": [], "removed": ["ops"], "changed": [], "project_keys": []})
    );
    assert_eq!(report["restart_needed"], json!([]));
    assert_eq!(report["failed"], json!([]));
    assert_eq!(report["warnings"], json!([]));
    assert_eq!(report["jobs_cancelled"], 1);

    // A: untouched.
    let a_now = running(&bosun, "a").await;
    assert_eq!(pids(&a_now), a);
    assert_eq!(a_now[0]["restarts"], 0);
    // B: both instances restarted, with the new env.
    let b_now = running(&bosun, "b").await;
    assert!(
        pids(&b_now).iter().all(|p| !b.contains(p)),
        "{b:?} → {b_now:?}"
    );
    assert!(b.iter().all(|p| !alive(*p)));
    until("b's new env in its log", async || {
        let log = bosun.get_text("/v1/projects/b/logs?lines=100", ADMIN).await;
        (log.matches("greeting=two").count() == 2).then_some(())
    })
    .await;
    // C: gone from the API, its process stopped, its jobs ended saying why.
    let resp = bosun
        .req(Method::GET, "/v1/projects/c", Some(ADMIN))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(c.iter().all(|p| !alive(*p)));
    // Nothing of it left behind: its cgroup, its private tmp's files.
    if let Some(dir) = c_cgroup {
        assert!(!dir.exists(), "{} is still there", dir.display());
    }
    let tmp = root.path().join("state/projects/c/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", tmp.display());
    // Its history stays in the store (the API no longer shows a project
    // that is not configured).
    assert_eq!(report["jobs_interrupted"], 1);
    let store = Store::open(&root.path().join("state")).expect("job store");
    for (id, state) in [
        (&queued, JobState::Cancelled),
        (&long, JobState::Interrupted),
    ] {
        let job = store.get(id).await.expect("read").expect("stored");
        assert_eq!(job.state, state, "{job:?}");
        let why = job.error.map(|e| e.message).unwrap_or_default();
        assert!(
            why.contains("project `c` was removed from the config"),
            "{why}"
        );
    }
    // D: running.
    running(&bosun, "d").await;
    // The job on the old plugin finished on it; a new one runs the new.
    let old = bosun.finished(&old_code).await;
    assert_eq!(old["state"], "succeeded", "{old}");
    assert!(old["result"].to_string().contains("printed"), "{old}");
    let (status, new) = bosun.run("a", "probe", "?wait=60s", json!({}), ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{new}");
    assert_eq!(new["state"], "succeeded", "{new}");
    assert!(!new["result"].to_string().contains("printed"), "{new}");
    // The revoked key: its stream ended, its next request is refused.
    let body = tokio::time::timeout(Duration::from_secs(30), stream.bytes()).await;
    assert!(body.is_ok(), "the revoked key's stream is still open");
    let resp = bosun
        .req(Method::GET, "/v1/projects/a", Some(OPS))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // The same config again: nothing changes.
    let (status, again) = reload(&bosun).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(pids(&running(&bosun, "b").await), pids(&b_now));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_changes_nothing_and_names_every_problem() {
    let good = config("one", false);
    let root = setup(&good);
    let bosun = BosunProcess::start(root.path());
    let before = pids(&running(&bosun, "b").await);
    let wrong = guest_dir().join("fixture_wrong_export.wasm");
    let broken = [
        (
            good.replace("[projects.b]", "[projects.b"),
            vec!["bosun.toml", "line"],
        ),
        (
            good.replace("instances = 2", "instances = 2\nrestrat = true"),
            vec!["bosun.toml", "restrat"],
        ),
        (
            format!(
                "{good}\n[projects.a.actions.wrong]\npath = \"{}\"\n[projects.a.actions.missing]\npath = \"nowhere.wasm\"\n",
                wrong.display()
            ),
            vec![
                "projects.a.actions.wrong",
                "projects.a.actions.missing",
                "bosun.toml:",
            ],
        ),
    ];
    for (text, wanted) in broken {
        write_config(root.path(), &text.replace("\"one\"", "\"changed\""));
        let (status, body) = reload(&bosun).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_config");
        let message = body["error"]["message"].as_str().unwrap_or("");
        for want in wanted {
            assert!(message.contains(want), "`{want}` not in: {message}");
        }
        assert_eq!(pids(&running(&bosun, "b").await), before, "{message}");
    }
    // Out-of-scope and non-admin keys may not reload.
    let resp = bosun.post("/v1/reload", OPS).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

/// Project b's log holds `greeting=<word>` from both instances.
async fn greeted(bosun: &BosunProcess, word: &str) {
    until(&format!("greeting={word}"), async || {
        let log = bosun.get_text("/v1/projects/b/logs?lines=100", ADMIN).await;
        (log.matches(&format!("greeting={word}")).count() == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_the_cli_and_the_api_reload_alike() {
    let root = setup(&config("one", false));
    let bosun = BosunProcess::start(root.path());
    let a = pids(&running(&bosun, "a").await);
    // SIGHUP.
    write_config(root.path(), &config("hup", false));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(bosun.pid()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    greeted(&bosun, "hup").await;
    // The CLI.
    write_config(root.path(), &config("cli", false));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
        .arg("reload")
        .env("BOSUN_URL", &bosun.url)
        .env("BOSUN_KEY", ADMIN)
        .output()
        .expect("bosun reload");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("processes restarted: b/web-0, b/web-1"),
        "{text}"
    );
    greeted(&bosun, "cli").await;
    // The API.
    write_config(root.path(), &config("api", false));
    let (status, report) = reload(&bosun).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        report["processes"]["restarted"],
        json!(["b/web-0", "b/web-1"])
    );
    greeted(&bosun, "api").await;
    // Each restarted b, and none touched a.
    let b = running(&bosun, "b").await;
    assert!(b.iter().all(|p| p["restarts"] == 3), "{b:?}");
    assert_eq!(pids(&running(&bosun, "a").await), a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_under_steady_load_all_succeed_through_reloads() {
    let root = setup(&config("one", false));
    let bosun = BosunProcess::start(root.path());
    running(&bosun, "a").await;
    let load = Load::start(
        &bosun.url,
        ["/v1/projects/a", "/v1/projects/b/logs?lines=5"],
    );
    for round in 0..6 {
        let second = round % 2 == 0;
        write_config(root.path(), &config(&format!("g{round}"), second));
        let (status, report) = reload(&bosun).await;
        assert_eq!(status, StatusCode::OK, "{report}");
    }
    load.none_failed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_block_a_reload_with_a_broken_plugin_in_its_dir() {
    let root = setup(&config("one", false));
    std::fs::write(root.path().join("a/own.wasm"), "not a component").expect("junk");
    let bosun = BosunProcess::start(root.path());
    running(&bosun, "b").await;
    let mut text = config("two", true);
    text.push_str("\n[projects.a.actions.own]\npath = \"a/own.wasm\"\n");
    write_config(root.path(), &text);
    let (status, report) = reload(&bosun).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("projects.a.actions.own"), "{report}");
    assert_eq!(report["keys"]["removed"], json!(["ops"]), "{report}");
    let resp = bosun
        .req(Method::GET, "/v1/projects/a", Some(OPS))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = bosun.run("a", "own", "", json!({}), ADMIN).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_project_key_ends_what_was_opened_with_the_old_one() {
    let with_key = |key: &str| {
        config("one", false).replace(
            "[projects.a]\ndir = \"a\"",
            &format!("[projects.a]\ndir = \"a\"\nkey_hash = \"{}\"", hash(key)),
        )
    };
    let root = setup(&with_key("old-project-key"));
    let bosun = BosunProcess::start(root.path());
    let stream = bosun
        .req(
            Method::GET,
            "/v1/projects/a/processes/web/logs?follow=1",
            Some(ADMIN),
        )
        .header("X-Project-Key", "old-project-key")
        .send()
        .await
        .expect("follow");
    assert_eq!(stream.status(), StatusCode::OK);
    write_config(root.path(), &with_key("new-project-key"));
    let (status, report) = reload(&bosun).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["keys"]["project_keys"], json!(["a"]), "{report}");
    let body = tokio::time::timeout(Duration::from_secs(30), stream.bytes()).await;
    assert!(
        body.is_ok(),
        "the stream opened with the old project key is still open"
    );
    let old = bosun
        .req(Method::GET, "/v1/projects/a", Some(ADMIN))
        .header("X-Project-Key", "old-project-key")
        .send()
        .await
        .expect("GET");
    assert_eq!(old.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_fails_stops_the_roll_and_the_next_reload_finishes_it() {
    let root = setup(&config("one", false));
    let bosun = BosunProcess::start(root.path());
    let before = pids(&running(&bosun, "b").await);
    let broken = config("two", false).replace(
        "instances = 2\ncommand = \"sh\"",
        "instances = 2\nrestart_at = []\ncommand = \"./missing-program\"",
    );
    write_config(root.path(), &broken);
    let (status, report) = reload(&bosun).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["processes"]["restarted"],
        json!(["b/web-0"]),
        "{report}"
    );
    assert!(report["failed"].to_string().contains("b/web-0"), "{report}");
    // The second instance was left running as it was.
    let now = bosun.get_json("/v1/projects/b", ADMIN).await;
    assert_eq!(
        now["processes"][1]["pid"].as_u64(),
        Some(before[1]),
        "{now}"
    );
    // The file fixed, the same reload finishes the job.
    write_config(root.path(), &config("three", false));
    let (status, report) = reload(&bosun).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["processes"]["restarted"],
        json!(["b/web-0", "b/web-1"]),
        "{report}"
    );
    greeted(&bosun, "three").await;
}
