//! Restarts that drop no request. A real Python HTTP app under load from 4
//! clients (a new connection per request) is restarted through the stock
//! `restart` action:
//! - 2 instances sharing a socket bosun holds: rolled one at a time, each
//!   replaced by a new process that is ready before the old one stops;
//! - 1 instance with its socket handed over the same way;
//! - a replacement that exits at once: the restart fails and the old
//!   process serves on.
//!
//! - `deploy` of a good commit, of one whose app exits at once (rolled
//!   back) and of one whose build fails (never restarted onto).
//!
//! Also the order itself, read from the merged log: `rolling` stops an
//! instance only once the one before is ready again, `all-at-once` does
//! not wait. And the socket survives an upgrade of bosun.

mod common;

use std::path::Path;

use common::load::Load;
use common::server::{ADMIN, Bosun, BosunProcess, admin_config};
use common::shop::{APP, free_port, pids, serving};
use common::{git, until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

/// A config dir with project `shop` (a merged log, the `restart`
/// action) whose one process `web` is given by `web`, its table's lines.
fn shop_config(web: &str) -> TempDir {
    let root = TempDir::new().expect("temp dir");
    std::fs::create_dir_all(root.path().join("shop")).expect("project dir");
    let text = format!(
        r#"{head}
[projects.shop]
dir = "shop"
merged_log = "state/logs/shop.log"
[projects.shop.actions.restart]
[[projects.shop.processes]]
name = "web"
{web}
"#,
        head = admin_config("")
    );
    std::fs::write(root.path().join("bosun.toml"), text).expect("config");
    root
}

/// A config dir with project `shop` running the app on `port` as
/// `instances` instances, ready within `ready_timeout`.
fn setup(port: u16, instances: u32, ready_timeout: &str) -> TempDir {
    let root = shop_config(&format!(
        r#"command = "python3"
args = ["app.py"]
instances = {instances}
sockets = ["127.0.0.1:{port}"]
ready = {{ http = "/healthz", timeout = "{ready_timeout}" }}"#
    ));
    std::fs::write(root.path().join("shop/app.py"), APP).expect("app");
    root
}

/// Run `restart` and wait for its end.
async fn restart(api: &common::server::Api) -> Value {
    let (status, job) = api
        .run("shop", "restart", "?wait=120s", json!({}), ADMIN)
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    job
}

/// The app as `instances` instances under load: `restarts` restarts, each
/// with `result` as its job's state, after `before` (run first, e.g. to
/// break the next version). Fails if a request fails; returns the config
/// dir, the last job and the pids before and after.
async fn restarts_under_load(
    instances: usize,
    ready_timeout: &str,
    before: impl FnOnce(&Path),
    restarts: usize,
    result: &str,
) -> (TempDir, Value, Vec<u64>, Vec<u64>) {
    let port = free_port();
    let root = setup(port, instances as u32, ready_timeout);
    let bosun = Bosun::start_in(root.path()).await;
    let first = pids(&bosun, instances).await;

    let load = Load::start(&format!("http://127.0.0.1:{port}"), ["/", "/"]);
    load.answered(50).await;
    before(&root.path().join("shop"));
    let mut job = Value::Null;
    for _ in 0..restarts {
        job = restart(&bosun).await;
        assert_eq!(job["state"], result, "{job}");
    }
    load.answered(50).await;
    load.none_failed().await;
    let last = pids(&bosun, instances).await;
    bosun.stop().await;
    (root, job, first, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_two_instances_sharing_a_socket_fails_no_request() {
    let (root, _, before, after) = restarts_under_load(2, "20s", |_| {}, 2, "succeeded").await;
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} → {after:?}"
    );
    // Every process finished what it held: the 4 replaced, and the 2 last
    // ones at bosun's stop.
    let log = std::fs::read_to_string(root.path().join("state/logs/shop.log")).expect("log");
    assert_eq!(log.matches("stopped cleanly").count(), 6, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_one_instance_hands_its_socket_to_the_new_process_first() {
    let (root, _, before, after) = restarts_under_load(1, "20s", |_| {}, 1, "succeeded").await;
    assert_ne!(before, after);
    let log = std::fs::read_to_string(root.path().join("state/logs/shop.log")).expect("log");
    let replaced = format!(
        "replaced pid {} (stopped by SIGTERM) by pid {}",
        before[0], after[0]
    );
    assert!(log.contains(&replaced), "{log}");
}

/// The app's next start fails as the file `marker` in its dir says (see
/// [`APP`]): the restart fails with a message containing `why` and the old
/// pid, and the old pids serve on.
async fn a_failed_replacement(instances: usize, ready_timeout: &str, marker: &str, why: &str) {
    let make = |dir: &Path| std::fs::write(dir.join(marker), "").expect("marker file");
    let (_root, job, before, after) =
        restarts_under_load(instances, ready_timeout, make, 1, "failed").await;
    let message = job["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(why) && message.contains(&format!("pid {} keeps running", before[0])),
        "{job}"
    );
    assert_eq!(after, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_that_exits_at_once_leaves_the_old_process_serving() {
    a_failed_replacement(
        1,
        "20s",
        "crash",
        "did not become ready: exited with code 3",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_that_never_serves_is_not_taken_for_ready_by_the_old_ones_answers() {
    // The probe goes to the socket they all share: unless the old process
    // (and, with 2 instances, the other one) is kept from answering it, the
    // hung replacement would pass its check and the old one would stop.
    for instances in [1, 2] {
        a_failed_replacement(instances, "3s", "hang", "not ready within 3s").await;
    }
}

/// The lines of the merged log that say where each instance is, in order:
/// `(label, "stopped" | "ready")`.
fn steps(root: &Path) -> Vec<(String, &'static str)> {
    let log = std::fs::read_to_string(root.join("state/logs/shop.log")).expect("log");
    log.lines()
        .filter_map(|line| {
            let (label, text) = line.split_once(" | ")?;
            let step = if text.contains("[bosun] stopped by") {
                "stopped"
            } else if text.contains("[bosun] ready") {
                "ready"
            } else {
                return None;
            };
            Some((label.to_string(), step))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_waits_for_each_instance_and_all_at_once_does_not() {
    // Without sockets: each instance stops, then starts again, so the
    // order shows in the stop and ready notes.
    for (order, rolling) in [("rolling", true), ("all-at-once", false)] {
        let root = shop_config(&format!(
            r#"command = "sh"
args = ["-c", "sleep 0.5; echo up; exec sleep 1000"]
instances = 2
restart_order = "{order}"
ready = {{ log = "^up$", timeout = "20s" }}"#
        ));
        let bosun = Bosun::start_in(root.path()).await;
        pids(&bosun, 2).await;
        let job = restart(&bosun).await;
        assert_eq!(job["state"], "succeeded", "{job}");

        let steps = steps(root.path());
        let at = |label: &str, step: &str| {
            steps
                .iter()
                .rposition(|(l, s)| l == label && *s == step)
                .unwrap_or_else(|| panic!("no {step} of {label} in {steps:?}"))
        };
        let second_stopped = at("web-1", "stopped");
        let first_ready_again = at("web-0", "ready");
        assert_eq!(
            first_ready_again < second_stopped,
            rolling,
            "{order}: {steps:?}"
        );
        bosun.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_outlives_an_upgrade_and_a_restart_after_it() {
    let port = free_port();
    let root = setup(port, 1, "20s");
    let bosun = BosunProcess::start(root.path());
    let before = pids(&bosun, 1).await;

    let load = Load::start(&format!("http://127.0.0.1:{port}"), ["/", "/"]);
    load.answered(50).await;
    let resp = bosun.post("/v1/upgrade", ADMIN).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    until("the upgraded bosun adopted the app", async || {
        let body = bosun.get_json("/v1/projects/shop", ADMIN).await;
        let log = std::fs::read_to_string(root.path().join("state/logs/shop.log")).ok()?;
        (body["processes"][0]["state"] == "running" && log.contains("adopted from the previous"))
            .then_some(())
    })
    .await;
    assert_eq!(pids(&bosun, 1).await, before);
    let job = restart(&bosun).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    load.answered(50).await;
    load.none_failed().await;
    assert_ne!(pids(&bosun, 1).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_with_sockets_is_looked_up_on_its_own_path_and_a_missing_one_is_fatal() {
    let port = free_port();
    let root = setup(port, 1, "20s");
    let text = std::fs::read_to_string(root.path().join("bosun.toml")).expect("config");
    let text = text.replace(
        "command = \"python3\"",
        "command = \"python3\"\nenv = { PATH = \"/nowhere:/usr/bin:/bin\" }",
    ) + &format!(
        "\n[[projects.shop.processes]]\nname = \"ghost\"\ncommand = \"no-such-program\"\n\
         sockets = [\"127.0.0.1:{}\"]\n",
        free_port()
    );
    std::fs::write(root.path().join("bosun.toml"), text).expect("config");
    let bosun = Bosun::start_in(root.path()).await;
    let ghost = until("the missing program to be fatal", async || {
        let body = bosun.get_json("/v1/projects/shop", ADMIN).await;
        let ghost = body["processes"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "ghost")?
            .clone();
        (ghost["state"] == "fatal").then_some(ghost)
    })
    .await;
    assert!(
        ghost["message"]
            .as_str()
            .is_some_and(|m| m.contains("`no-such-program` not found")),
        "{ghost}"
    );
    // python3 found on its own PATH, past a dir that does not exist.
    until("web running", async || {
        let body = bosun.get_json("/v1/projects/shop", ADMIN).await;
        (body["processes"][0]["state"] == "running").then_some(())
    })
    .await;
    bosun.stop().await;
}

/// `deploy` under load: the project is a clone of a bare origin that a
/// developer's clone pushes to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_under_load_fail_no_request_and_a_bad_one_rolls_back() {
    let port = free_port();
    let root = TempDir::new().expect("temp dir");
    let r = root.path();
    git(r, &["init", "--quiet", "--bare", "origin.git"]);
    git(r, &["clone", "--quiet", "origin.git", "dev"]);
    let commit = |version: &str, app: &str| {
        let dev = r.join("dev");
        std::fs::write(dev.join("VERSION"), version).expect("version");
        std::fs::write(dev.join("app.py"), app).expect("app");
        git(&dev, &["add", "-A"]);
        git(&dev, &["commit", "--quiet", "-m", version]);
        git(&dev, &["push", "--quiet", "origin", "HEAD:main"]);
        git(&dev, &["rev-parse", "HEAD"])
    };
    commit("v1", APP);
    git(r, &["clone", "--quiet", "origin.git", "shop"]);
    let text = format!(
        r#"{head}
[projects.shop]
dir = "shop"
actions = ["deploy"]
[projects.shop.git]
remote = "./origin.git"
[projects.shop.commands]
allow = ["python3"]
[projects.shop.deploy]
build = [["python3", "-m", "py_compile", "app.py"]]
ready_timeout = "20s"
settle = "500ms"
[[projects.shop.processes]]
name = "web"
command = "python3"
args = ["app.py"]
instances = 2
sockets = ["127.0.0.1:{port}"]
ready = {{ http = "/healthz", timeout = "20s" }}
"#,
        head = admin_config("")
    );
    std::fs::write(r.join("bosun.toml"), text).expect("config");
    let bosun = Bosun::start_in(r).await;
    pids(&bosun, 2).await;
    let deploy = async || {
        let (status, job) = bosun
            .run("shop", "deploy", "?wait=120s", json!({}), ADMIN)
            .await;
        assert_eq!(status, StatusCode::OK, "{job}");
        job
    };

    let load = Load::start(&format!("http://127.0.0.1:{port}"), ["/", "/"]);
    load.answered(50).await;
    let v2 = commit("v2", APP);
    let job = deploy().await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["to"], v2);
    assert!(serving(port).await.ends_with(" v2"));

    std::fs::write(r.join("dev/crash"), "").expect("crash file");
    commit("v3", APP);
    let job = deploy().await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["detail"]["rolled_back"], true, "{job}");
    assert!(serving(port).await.ends_with(" v2"));
    std::fs::remove_file(r.join("dev/crash")).expect("crash file");

    commit("v4", "this is not python (");
    let job = deploy().await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["detail"]["rolled_back"], true, "{job}");
    load.answered(50).await;
    load.none_failed().await;
    assert!(serving(port).await.ends_with(" v2"));
    bosun.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_replaces_a_changed_socket_process_new_first_and_keeps_it_through_a_bad_change() {
    let port = free_port();
    let root = setup(port, 2, "20s");
    let config = root.path().join("bosun.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let bosun = Bosun::start_in(root.path()).await;
    let first = pids(&bosun, 2).await;
    let reload = async |env: &str| {
        let changed = text.replace(
            "args = [\"app.py\"]",
            &format!("args = [\"app.py\"]\nenv = {{ {env} }}"),
        );
        std::fs::write(&config, changed).expect("config");
        let resp = bosun.post("/v1/reload", ADMIN).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json::<Value>().await.expect("JSON")
    };

    let load = Load::start(&format!("http://127.0.0.1:{port}"), ["/", "/"]);
    load.answered(50).await;
    let report = reload("GREETING = \"two\"").await;
    assert_eq!(
        report["processes"]["restarted"],
        json!(["shop/web-0", "shop/web-1"]),
        "{report}"
    );
    let second = pids(&bosun, 2).await;
    assert!(
        second.iter().all(|p| !first.contains(p)),
        "{first:?} → {second:?}"
    );
    let log = std::fs::read_to_string(root.path().join("state/logs/shop.log")).expect("log");
    assert_eq!(log.matches("[bosun] replaced pid").count(), 2, "{log}");

    // A change whose processes exit at once: the first replacement fails,
    // both old processes serve on, and the report says so.
    let report = reload("CRASH = \"1\"").await;
    assert_eq!(report["processes"]["restarted"], json!([]), "{report}");
    assert!(
        report["failed"].to_string().contains("shop/web-0"),
        "{report}"
    );
    load.answered(50).await;
    load.none_failed().await;
    assert_eq!(pids(&bosun, 2).await, second);
    bosun.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_line_of_the_old_process_does_not_pass_the_replacements_check() {
    // The old process says "up" again and again; its replacement (a file
    // `hang` there) never does. Both write the same log.
    let root = shop_config(&format!(
        r#"command = "sh"
args = ["-c", "if [ -f hang ]; then exec sleep 1000; fi; while true; do echo up; sleep 0.1; done"]
sockets = ["127.0.0.1:{port}"]
ready = {{ log = "^up$", timeout = "2s" }}"#,
        port = free_port()
    ));
    let bosun = Bosun::start_in(root.path()).await;
    let before = pids(&bosun, 1).await;
    std::fs::write(root.path().join("shop/hang"), "").expect("hang file");
    let job = restart(&bosun).await;
    assert_eq!(job["state"], "failed", "{job}");
    let message = job["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not ready within 2s"), "{job}");
    assert_eq!(pids(&bosun, 1).await, before);
    bosun.stop().await;
}
