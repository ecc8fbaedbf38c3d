//! Upgrade in place: the real `bosun serve`, started through a link as an
//! operator's release layout would, re-executes the binary the link names
//! in the same pid. Its processes keep running (same pids, same restart
//! counts), a writer logging through it loses no line and breaks none,
//! queued and running jobs all run, and requests under steady load all get
//! answers. A binary that fails its check changes nothing.

mod common;

use std::path::{Path, PathBuf};

use common::load::Load;
use common::server::{ADMIN, BosunProcess, admin_config};
use common::{guest_dir, until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Writes `line <n> part-a part-b`, each line in two writes 10 ms apart,
/// so a reader that stops between reads holds half a line.
const WRITER: &str = r#"command = "sh"
args = ["-c", "i=0; while true; do printf 'line %d part-a ' $i; sleep 0.01; printf 'part-b\\n'; i=$((i+1)); done"]"#;

fn setup() -> (TempDir, PathBuf) {
    let root = TempDir::new().expect("temp dir");
    std::fs::create_dir_all(root.path().join("app")).expect("project dir");
    std::fs::create_dir_all(root.path().join("bin")).expect("bin dir");
    let text = format!(
        r#"{head}
[projects.app]
dir = "app"
[projects.app.actions.hostile]
path = "{hostile}"

[[projects.app.processes]]
name = "writer"
{WRITER}

[[projects.app.processes]]
name = "web"
instances = 2
command = "sleep"
args = ["1000"]
"#,
        head = admin_config(r#"shutdown_grace = "2s""#),
        hostile = guest_dir().join("fixture_hostile.wasm").display(),
    );
    std::fs::write(root.path().join("bosun.toml"), text).expect("config");
    let link = root.path().join("bin/bosun");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bosun"), &link).expect("link");
    (root, link)
}

/// The project's processes once all run (but `once`, which runs once).
async fn running(bosun: &BosunProcess) -> Vec<Value> {
    until("every process running", async || {
        let body = bosun.get_json("/v1/projects/app", ADMIN).await;
        let procs: Vec<Value> = body["processes"]
            .as_array()?
            .iter()
            .filter(|p| p["name"] != "once")
            .cloned()
            .collect();
        procs
            .iter()
            .all(|p| p["state"] == "running" && p["pid"].is_u64())
            .then_some(procs)
    })
    .await
}

fn pids_and_restarts(procs: &[Value]) -> Vec<(u64, u64)> {
    procs
        .iter()
        .map(|p| {
            (
                p["pid"].as_u64().unwrap_or(0),
                p["restarts"].as_u64().unwrap_or(99),
            )
        })
        .collect()
}

fn writer_log(root: &Path) -> String {
    std::fs::read_to_string(root.join("state/logs/app/writer-0.log")).unwrap_or_default()
}

/// Wait until the writer's log says it was adopted `n` times, and a few
/// lines more were written after.
async fn adopted(root: &Path, n: usize) {
    until(&format!("adoption {n}"), async || {
        let log = writer_log(root);
        let at = log
            .match_indices("adopted from the previous bosun")
            .nth(n - 1)?
            .0;
        (log[at..].lines().count() > 20).then_some(())
    })
    .await;
}

/// Every line of the writer's log is whole, and the numbers run on with
/// no gap and no repeat.
fn check_writer_log(root: &Path) {
    let log = writer_log(root);
    let mut next = 0u64;
    for line in log.lines().filter(|l| !l.starts_with("[bosun]")) {
        let n: u64 = line
            .strip_prefix("line ")
            .and_then(|rest| rest.strip_suffix(" part-a part-b"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a broken line: {line:?}"));
        assert_eq!(n, next, "a line lost or repeated before {line:?}");
        next += 1;
    }
    assert!(next > 50, "the writer wrote {next} lines");
}

async fn upgrade(bosun: &BosunProcess) -> (StatusCode, Value) {
    let resp = bosun.post("/v1/upgrade", ADMIN).await;
    let status = resp.status();
    (status, resp.json().await.expect("JSON"))
}

async fn submit(bosun: &BosunProcess, params: Value) -> String {
    let (status, job) = bosun.run("app", "hostile", "", params, ADMIN).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    job["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_keeps_every_process_every_line_every_job_and_every_request() {
    let (root, link) = setup();
    let bosun = BosunProcess::start_bin(root.path(), &link);
    running(&bosun).await;
    // One restart, to see the count survive.
    let restart = submit(&bosun, json!({"mode": "restart", "name": "web"})).await;
    assert_eq!(bosun.finished(&restart).await["state"], "succeeded");
    let before = pids_and_restarts(&running(&bosun).await);
    assert_eq!(before[1].1, 1, "{before:?}");
    // Steady load: a new connection per request, as the issue measured.
    let load = Load::start(&bosun.url, ["/healthz", "/v1/projects/app"]);
    // A job running past the drain's grace, and one queued behind it.
    let long = submit(&bosun, json!({"mode": "slow", "count": "100", "ms": "50"})).await;
    bosun.until_running(&long).await;
    let queued = submit(&bosun, json!({"mode": "noop"})).await;

    let (status, report) = upgrade(&bosun).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{report}");
    assert_eq!(report["binary"], link.display().to_string());
    assert!(
        report["version"]
            .as_str()
            .unwrap_or("")
            .starts_with("bosun"),
        "{report}"
    );
    adopted(root.path(), 1).await;

    // The same bosun process, the same children, the same counts.
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(bosun.pid() as i32), None).is_ok());
    assert_eq!(pids_and_restarts(&running(&bosun).await), before);
    // Both jobs ran to the end: the long one again from the start.
    for id in [&long, &queued] {
        let job = bosun.finished(id).await;
        assert_eq!(job["state"], "succeeded", "{job}");
    }
    load.none_failed().await;
    check_writer_log(root.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_and_the_cli_upgrade_alike() {
    let (root, link) = setup();
    // A one-shot that has run and exited stays so through upgrades.
    let config = root.path().join("bosun.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(
        "\n[[projects.app.processes]]\nname = \"once\"\ncommand = \"sh\"\nargs = [\"-c\", \"echo ran-once\"]\nrestart_at = []\n",
    );
    // A tenant's broken plugin in its own dir vetoes no upgrade.
    text = text.replace(
        "[projects.app.actions.hostile]",
        "[projects.app.actions.own]\npath = \"app/own.wasm\"\n[projects.app.actions.hostile]",
    );
    std::fs::write(root.path().join("app/own.wasm"), "not a component").expect("junk");
    std::fs::write(&config, text).expect("config");
    let bosun = BosunProcess::start_bin(root.path(), &link);
    let before = pids_and_restarts(&running(&bosun).await);
    let pid = nix::unistd::Pid::from_raw(bosun.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2).expect("SIGUSR2");
    adopted(root.path(), 1).await;
    assert_eq!(pids_and_restarts(&running(&bosun).await), before);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
        .arg("upgrade")
        .env("BOSUN_URL", &bosun.url)
        .env("BOSUN_KEY", ADMIN)
        .output()
        .expect("bosun upgrade");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("upgrading to bosun"), "{text}");
    adopted(root.path(), 2).await;
    assert_eq!(pids_and_restarts(&running(&bosun).await), before);
    // SIGUSR2 again: the new image took the signal over.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2).expect("SIGUSR2");
    adopted(root.path(), 3).await;
    assert_eq!(pids_and_restarts(&running(&bosun).await), before);
    check_writer_log(root.path());
    let once =
        std::fs::read_to_string(root.path().join("state/logs/app/once-0.log")).expect("once's log");
    assert_eq!(once.matches("ran-once").count(), 1, "{once}");
    let body = bosun.get_json("/v1/projects/app", ADMIN).await;
    let state = body["processes"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "once"))
        .map(|p| p["state"].clone());
    assert_eq!(state, Some(json!("exited")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_that_fails_its_check_changes_nothing() {
    let (root, link) = setup();
    let bosun = BosunProcess::start_bin(root.path(), &link);
    let before = pids_and_restarts(&running(&bosun).await);
    // A config file with process changes no reload has applied: the new
    // image would adopt the old processes under it.
    let config = root.path().join("bosun.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("args = [\"1000\"]", "args = [\"2000\"]"),
    )
    .expect("edit");
    let (status, body) = upgrade(&bosun).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("reload"),
        "{body}"
    );
    std::fs::write(&config, text).expect("restore");
    // A binary that cannot check the config.
    std::fs::remove_file(&link).expect("unlink");
    std::fs::write(&link, "#!/bin/sh\necho \"bosun 9.9.9\"\n[ \"$1\" = check ] && { echo 'error: broken build' >&2; exit 2; }\nexit 0\n")
        .expect("script");
    std::fs::set_permissions(&link, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let (status, body) = upgrade(&bosun).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "upgrade_refused");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("broken build"),
        "{body}"
    );
    // No binary at all.
    std::fs::remove_file(&link).expect("unlink");
    let (status, body) = upgrade(&bosun).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Nothing changed, and bosun still serves.
    assert_eq!(pids_and_restarts(&running(&bosun).await), before);
    assert!(!writer_log(root.path()).contains("adopted"));
    let resp = bosun
        .req(Method::GET, "/healthz", None)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
}
