//! The `bosun` client subcommands, as the real binary, against a real
//! server: output, `--json`, and exit codes for every way a job can end.

use crate::common::server::{ADMIN, Bosun, TICKER, config_dir, config_text};
use serde_json::Value;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run `bosun args…` against `b` with the admin key.
async fn bosun(b: &Bosun, args: &[&str]) -> Out {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .env("BOSUN_URL", &b.url)
        .env("BOSUN_KEY", ADMIN)
        .env("BOSUN_CLIENT_CONFIG", "/nonexistent/client.toml")
        .output()
        .await
        .expect("run bosun");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_the_result_and_exits_with_the_jobs_outcome() {
    let (_root, b) = Bosun::start("", "").await;
    let ok = bosun(
        &b,
        &["run", "alpha", "hostile", "mode=slow", "count=2", "ms=1"],
    )
    .await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let result: Value = serde_json::from_str(&ok.stdout).expect("the result, as JSON");
    assert_eq!(result["printed"], 2);

    let json = bosun(&b, &["run", "alpha", "hostile", "mode=noop", "--json"]).await;
    let job: Value = serde_json::from_str(&json.stdout).expect("--json prints the job");
    assert_eq!(job["state"], "succeeded");

    let failed = bosun(&b, &["run", "alpha", "hostile", "mode=error"]).await;
    assert_eq!(failed.code, 1, "plugin_error");
    assert!(failed.stderr.contains("failed"), "{}", failed.stderr);

    let timed_out = bosun(&b, &["run", "alpha", "quick", "mode=loop"]).await;
    assert_eq!(timed_out.code, 3, "timed_out: {}", timed_out.stderr);
    let trapped = bosun(&b, &["run", "alpha", "hostile", "mode=panic"]).await;
    assert_eq!(trapped.code, 6, "trap: {}", trapped.stderr);

    let followed = bosun(
        &b,
        &[
            "run",
            "alpha",
            "hostile",
            "mode=slow",
            "count=3",
            "ms=50",
            "--follow",
        ],
    )
    .await;
    assert_eq!(followed.code, 0);
    assert!(
        followed.stderr.contains("line 0\nline 1\nline 2\n"),
        "{}",
        followed.stderr
    );
    assert!(
        followed.stdout.contains("\"printed\": 3"),
        "{}",
        followed.stdout
    );

    // Detach, cancel, and the job's exit code says it was cancelled.
    let detached = bosun(&b, &["run", "alpha", "hostile", "mode=loop", "--detach"]).await;
    assert_eq!(detached.code, 0);
    let id = detached.stdout.trim();
    let cancel = bosun(&b, &["cancel", id]).await;
    assert_eq!(cancel.code, 0, "{}", cancel.stderr);
    assert!(cancel.stdout.contains("cancelled"), "{}", cancel.stdout);
    let job = bosun(&b, &["job", id, "--json"]).await;
    assert_eq!(job.code, 4, "cancelled");
    let again = bosun(&b, &["cancel", id]).await;
    assert_eq!(again.code, 10, "the server refuses: {}", again.stderr);
    assert!(again.stderr.contains("job_finished"), "{}", again.stderr);

    let unknown = bosun(&b, &["run", "alpha", "nope"]).await;
    assert_eq!(unknown.code, 10);
    assert!(
        unknown.stderr.contains("404 not_found"),
        "{}",
        unknown.stderr
    );
    let bad_param = bosun(&b, &["run", "alpha", "hostile", "colour=red"]).await;
    assert_eq!(bad_param.code, 10);
    assert!(
        bad_param.stderr.contains("invalid_params"),
        "{}",
        bad_param.stderr
    );
    b.stop().await;

    let (_root, gone) = Bosun::start("", "").await;
    let url = gone.url.clone();
    gone.stop().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["ps", "--url", &url, "--key", ADMIN])
        .env("BOSUN_CLIENT_CONFIG", "/nonexistent/client.toml")
        .output()
        .await
        .expect("run bosun");
    assert_eq!(out.status.code(), Some(11), "unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ps_logs_and_jobs_show_what_the_server_knows() {
    let root = config_dir(&(config_text("", "") + TICKER));
    let b = Bosun::start_in(root.path()).await;
    let ps = bosun(&b, &["ps", "alpha"]).await;
    assert_eq!(ps.code, 0, "{}", ps.stderr);
    let header = ps.stdout.lines().next().expect("a header");
    assert!(
        header.starts_with("PROJECT  NAME    INST  STATE"),
        "{}",
        ps.stdout
    );
    assert!(
        ps.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("alpha    ticker  0")),
        "{}",
        ps.stdout
    );
    assert!(
        ps.stdout.contains("\nalpha: as bosun-alpha (uid ") && ps.stdout.contains("private /tmp"),
        "each project's confinement under the table: {}",
        ps.stdout
    );
    let json = bosun(&b, &["ps", "--json"]).await;
    let projects: Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(projects[0]["processes"][0]["name"], "ticker");

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let logs = bosun(&b, &["logs", "alpha", "ticker", "-n", "2"]).await;
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert_eq!(logs.stdout.lines().count(), 2, "{}", logs.stdout);
    let missing = bosun(&b, &["logs", "alpha", "nope"]).await;
    assert_eq!(missing.code, 10);

    bosun(&b, &["run", "alpha", "hostile", "mode=noop"]).await;
    let jobs = bosun(&b, &["jobs", "alpha"]).await;
    assert!(jobs.stdout.starts_with("ID"), "{}", jobs.stdout);
    assert!(
        jobs.stdout.contains("hostile") && jobs.stdout.contains("succeeded"),
        "{}",
        jobs.stdout
    );
    let page: Value =
        serde_json::from_str(&bosun(&b, &["jobs", "--json"]).await.stdout).expect("JSON");
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(1));

    let completions = bosun(&b, &["completions", "bash"]).await;
    assert!(
        completions.stdout.contains("_bosun()"),
        "a bash completion function"
    );
    b.stop().await;
}
