//! Jobs over real HTTP: a burst against a bounded queue loses and
//! duplicates nothing, one job at a time per project in order, live logs,
//! cancellation of queued and endless jobs, durability across a SIGKILL and
//! a graceful stop, retention, and the process endpoints.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::server::{
    ADMIN, Api, Bosun, BosunProcess, RUN_ALPHA, RUN_BETA, TICKER, config_dir, config_text,
};
use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn id(job: &Value) -> String {
    job["id"].as_str().expect("job id").to_string()
}

/// The ids of a `GET /v1/jobs` page, in its order.
fn ids_of(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_against_a_bounded_queue_loses_and_duplicates_nothing() {
    let (_root, b) = Bosun::start("", "queue_depth = 16").await;
    let slow = json!({"mode": "slow", "count": 1, "ms": 100});
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (api, slow) = (Api::clone(&b), slow.clone());
            tokio::spawn(async move { api.hostile("", slow, ADMIN).await })
        })
        .collect();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (status, body) = t.await.expect("task");
        match status {
            StatusCode::ACCEPTED => accepted.push(id(&body)),
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["error"]["code"], "queue_full", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(accepted.len() + refused, 200);
    assert!(
        accepted.len() >= 17,
        "the queue (16) and the running job were not filled: {}",
        accepted.len()
    );
    assert!(
        refused > 0,
        "200 at once against a queue of 16 must refuse some"
    );
    let unique: BTreeSet<_> = accepted.iter().cloned().collect();
    assert_eq!(unique.len(), accepted.len(), "duplicate job ids");
    for job_id in &accepted {
        let job = b.finished(job_id).await;
        assert_eq!(job["state"], "succeeded", "{job}");
    }
    // The history holds exactly the accepted jobs: nothing refused was stored.
    let page = b.get_json("/v1/jobs?project=alpha&limit=500", ADMIN).await;
    let stored: BTreeSet<String> = ids_of(&page).into_iter().collect();
    assert_eq!(stored, unique);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_runs_one_job_at_a_time_in_order_and_projects_run_side_by_side() {
    let (_root, b) = Bosun::start("", "").await;
    let slow = json!({"mode": "slow", "count": 3, "ms": 50});
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (status, job) = b.hostile("", slow.clone(), RUN_ALPHA).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        ids.push(id(&job));
    }
    let (_, beta_job) = b.run("beta", "hostile", "", slow.clone(), RUN_BETA).await;
    let mut jobs = Vec::new();
    for job_id in &ids {
        jobs.push(b.finished(job_id).await);
    }
    let beta = b.finished(&id(&beta_job)).await;
    let t = |j: &Value, k: &str| humantime::parse_rfc3339(j[k].as_str().expect(k)).expect("time");
    for pair in jobs.windows(2) {
        assert!(
            t(&pair[1], "started_at") >= t(&pair[0], "finished_at"),
            "overlap: {pair:?}"
        );
    }
    assert!(
        t(&beta, "started_at") < t(&jobs[0], "finished_at"),
        "beta waited for alpha: {beta} vs {}",
        jobs[0]
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_the_finished_job_or_202_when_time_is_up() {
    let (_root, b) = Bosun::start("", "").await;
    let (status, job) = b
        .hostile(
            "?wait=30s",
            json!({"mode": "slow", "count": 2, "ms": 1}),
            ADMIN,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["result"], json!({"printed": 2}));
    let log = b
        .get_text(&format!("/v1/jobs/{}/log", id(&job)), ADMIN)
        .await;
    assert_eq!(log, "line 0\nline 1\n");

    let (status, job) = b
        .hostile(
            "?wait=200ms",
            json!({"mode": "slow", "count": 20, "ms": 100}),
            ADMIN,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert!(["queued", "running"].contains(&job["state"].as_str().expect("state")));
    let done = b
        .get_json(&format!("/v1/jobs/{}?wait=30s", id(&job)), ADMIN)
        .await;
    assert_eq!(
        done["state"], "succeeded",
        "GET ?wait waits for the end: {done}"
    );

    let (status, failed) = b
        .hostile("?wait=30s", json!({"mode": "error"}), ADMIN)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["error"]["kind"], "plugin_error");
    b.stop().await;
}

/// Follow a job's log as plain text; return each line with whether the job
/// was still unfinished when the line arrived.
async fn follow_text(b: &Bosun, job_id: &str) -> Vec<(String, bool)> {
    let resp = b
        .req(
            Method::GET,
            &format!("/v1/jobs/{job_id}/log?follow=1"),
            Some(ADMIN),
        )
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let mut body = resp.bytes_stream();
    let mut pending = String::new();
    let mut lines = Vec::new();
    while let Some(chunk) = body.next().await {
        pending.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(pos) = pending.find('\n') {
            let line = pending[..pos].to_string();
            pending.drain(..=pos);
            let job = b.get_json(&format!("/v1/jobs/{job_id}"), ADMIN).await;
            lines.push((line, job["state"] == "running"));
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_log_arrives_live_in_order_and_ends_with_the_job() {
    let (_root, b) = Bosun::start("", "").await;
    let (_, job) = b
        .hostile("", json!({"mode": "slow", "count": 10, "ms": 150}), ADMIN)
        .await;
    let lines = follow_text(&b, &id(&job)).await;
    let texts: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
    let want: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
    assert_eq!(texts, want);
    assert!(
        lines[0].1,
        "the first line arrived only after the job ended"
    );
    assert_eq!(b.finished(&id(&job)).await["state"], "succeeded");

    // The same as Server-Sent Events, ending with an `end` event.
    let (_, job) = b
        .hostile("", json!({"mode": "slow", "count": 3, "ms": 100}), ADMIN)
        .await;
    let text = b
        .req(
            Method::GET,
            &format!("/v1/jobs/{}/log?follow=1", id(&job)),
            Some(ADMIN),
        )
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("stream to its end");
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(&data[..3], ["line 0", "line 1", "line 2"], "{text}");
    assert!(text.contains("event: end"), "{text}");
    let end: Value = serde_json::from_str(data[3]).expect("end event is the job");
    assert_eq!(end["state"], "succeeded");

    // Following a finished job gives its stored log and ends.
    let again = follow_text(&b, &id(&job)).await;
    assert_eq!(again.len(), 3);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_works_on_a_queued_job_and_on_an_endless_one() {
    let (_root, b) = Bosun::start("", "").await;
    let (_, endless) = b.hostile("", json!({"mode": "loop"}), RUN_ALPHA).await;
    let (_, queued) = b.hostile("", json!({"mode": "noop"}), RUN_ALPHA).await;
    b.until_running(&id(&endless)).await;
    // Only its own key or an admin may cancel.
    let other = b
        .post(&format!("/v1/jobs/{}/cancel", id(&queued)), RUN_BETA)
        .await;
    assert_eq!(
        other.status(),
        StatusCode::NOT_FOUND,
        "run-beta cannot even see alpha's job"
    );

    let resp = b
        .post(&format!("/v1/jobs/{}/cancel", id(&queued)), RUN_ALPHA)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let job: Value = resp.json().await.expect("JSON");
    assert_eq!(job["state"], "cancelled");
    assert!(
        job["started_at"].is_null(),
        "a cancelled queued job never starts"
    );

    let resp = b
        .post(&format!("/v1/jobs/{}/cancel", id(&endless)), ADMIN)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let job: Value = resp.json().await.expect("JSON");
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(job["error"]["kind"], "cancelled");

    let again = b
        .post(&format!("/v1/jobs/{}/cancel", id(&endless)), ADMIN)
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let body: Value = again.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "job_finished");

    // The project's queue moves on.
    let (status, next) = b
        .hostile("?wait=30s", json!({"mode": "noop"}), RUN_ALPHA)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(next["state"], "succeeded");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_survive_a_sigkill_and_the_running_one_is_interrupted() {
    let root = config_dir(&config_text("", ""));
    let mut bosun = BosunProcess::start(root.path());
    let (_, endless) = bosun.hostile("", json!({"mode": "loop"}), ADMIN).await;
    let mut queued = Vec::new();
    for _ in 0..3 {
        let quick = json!({"mode": "slow", "count": 1, "ms": 1});
        let (status, job) = bosun.hostile("", quick, ADMIN).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        queued.push(id(&job));
    }
    bosun.until_running(&id(&endless)).await;
    bosun.kill();

    let bosun = BosunProcess::start(root.path());
    let interrupted = bosun.finished(&id(&endless)).await;
    assert_eq!(interrupted["state"], "interrupted", "{interrupted}");
    assert_eq!(interrupted["error"]["kind"], "interrupted");
    for job_id in &queued {
        let job = bosun.finished(job_id).await;
        assert_eq!(job["state"], "succeeded", "{job}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_interrupts_what_cannot_finish_and_keeps_the_queue() {
    let root = config_dir(&config_text("", ""));
    let b = Bosun::start_in(root.path()).await;
    let (_, endless) = b.hostile("", json!({"mode": "loop"}), ADMIN).await;
    let (_, waiting) = b.hostile("", json!({"mode": "noop"}), ADMIN).await;
    b.until_running(&id(&endless)).await;
    // A new request during shutdown is refused, not lost.
    b.stop().await;

    let b = Bosun::start_in(root.path()).await;
    let job = b.finished(&id(&endless)).await;
    assert_eq!(job["state"], "interrupted", "{job}");
    assert!(
        job["error"]["message"]
            .as_str()
            .expect("message")
            .contains("shut down"),
        "{job}"
    );
    let job = b.finished(&id(&waiting)).await;
    assert_eq!(
        job["state"], "succeeded",
        "the queued job ran after the restart: {job}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_jobs_and_pages_through_them() {
    let root = config_dir(&config_text("", ""));
    let b = Bosun::start_in(root.path()).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let (status, job) = b.hostile("?wait=30s", json!({"mode": "noop"}), ADMIN).await;
        assert_eq!(status, StatusCode::OK);
        ids.push(id(&job));
    }
    let page = b.get_json("/v1/jobs?limit=4", ADMIN).await;
    let first = ids_of(&page);
    assert_eq!(
        first,
        ids[2..].iter().rev().cloned().collect::<Vec<_>>(),
        "newest first"
    );
    let next = page["next"].as_str().expect("a next page");
    let page = b
        .get_json(&format!("/v1/jobs?limit=4&before={next}"), ADMIN)
        .await;
    let second = ids_of(&page);
    assert_eq!(second, vec![ids[1].clone(), ids[0].clone()]);
    assert!(page["next"].is_null());
    b.stop().await;

    std::fs::write(root.path().join("bosun.toml"), config_text("", "keep = 3")).expect("config");
    let b = Bosun::start_in(root.path()).await;
    let page = b.get_json("/v1/jobs", ADMIN).await;
    let kept = ids_of(&page);
    assert_eq!(kept, ids[3..].iter().rev().cloned().collect::<Vec<_>>());
    let gone = b
        .req(Method::GET, &format!("/v1/jobs/{}", ids[0]), Some(ADMIN))
        .send()
        .await
        .expect("GET");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // While serving, retention runs again as jobs finish (at most once a
    // second): the oldest of the three kept goes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, job) = b.hostile("?wait=30s", json!({"mode": "noop"}), ADMIN).await;
    let want = vec![id(&job), ids[5].clone(), ids[4].clone()];
    crate::common::until_ok(&format!("pruned to {want:?}"), async || {
        let kept = ids_of(&b.get_json("/v1/jobs", ADMIN).await);
        if kept == want {
            Ok(())
        } else {
            Err(format!("{kept:?}"))
        }
    })
    .await;
    b.stop().await;

    // And by age: nothing finished is younger than a millisecond by now.
    std::fs::write(
        root.path().join("bosun.toml"),
        config_text("", "keep_for = \"1ms\""),
    )
    .expect("config");
    let b = Bosun::start_in(root.path()).await;
    let page = b.get_json("/v1/jobs", ADMIN).await;
    assert_eq!(page["jobs"], json!([]), "{page}");
    b.stop().await;
}

/// The ids of a project's jobs, newest first.
async fn project_jobs(b: &Bosun, project: &str) -> Vec<String> {
    ids_of(
        &b.get_json(&format!("/v1/jobs?project={project}&limit=500"), ADMIN)
            .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_per_project_and_bounded_in_bytes() {
    let root = config_dir(&config_text("", "keep = 3"));
    let b = Bosun::start_in(root.path()).await;
    let mut beta = Vec::new();
    for _ in 0..2 {
        let (status, job) = b.run("beta", "status", "?wait=30s", json!({}), ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        beta.insert(0, id(&job));
    }
    // One tenant fires more jobs than `keep`: only its own history goes.
    let mut alpha = Vec::new();
    for _ in 0..8 {
        let (status, job) = b.hostile("?wait=30s", json!({"mode": "noop"}), ADMIN).await;
        assert_eq!(status, StatusCode::OK);
        alpha.insert(0, id(&job));
    }
    b.stop().await;
    let b = Bosun::start_in(root.path()).await;
    assert_eq!(project_jobs(&b, "alpha").await, alpha[..3]);
    assert_eq!(
        project_jobs(&b, "beta").await,
        beta,
        "beta's history was pruned"
    );
    b.stop().await;

    // Bytes: jobs with ~1 KiB logs, 4 KiB kept per project.
    std::fs::write(
        root.path().join("bosun.toml"),
        config_text("", "keep = 100\nmax_log = \"1KiB\"\nmax_bytes = \"4KiB\""),
    )
    .expect("config");
    let b = Bosun::start_in(root.path()).await;
    let mut big = Vec::new();
    for _ in 0..6 {
        let (status, job) = b
            .hostile(
                "?wait=30s",
                json!({"mode": "slow", "count": 200, "ms": 0}),
                ADMIN,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{job}");
        big.insert(0, id(&job));
    }
    b.stop().await;
    let b = Bosun::start_in(root.path()).await;
    let kept = project_jobs(&b, "alpha").await;
    assert!(
        (1..=4).contains(&kept.len()) && kept[..] == big[..kept.len()],
        "kept {kept:?} of {big:?}"
    );
    assert_eq!(project_jobs(&b, "beta").await, beta);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_show_their_processes_actions_and_logs() {
    let root = config_dir(&(config_text("", "") + TICKER));
    let b = Bosun::start_in(root.path()).await;
    b.settled_project("alpha", "running").await;
    let project = b.get_json("/v1/projects/alpha", RUN_ALPHA).await;
    assert_eq!(project["processes"][0]["name"], "ticker");
    assert!(
        project["processes"][0]["pid"].as_u64().is_some(),
        "{project}"
    );
    assert_eq!(project["actions"], json!(["hostile", "quick", "status"]));

    let actions = b.get_json("/v1/projects/alpha/actions", RUN_ALPHA).await;
    let hostile = actions
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["name"] == "hostile")
        .expect("hostile");
    assert_eq!(hostile["available"], true);
    assert!(
        hostile["params"]
            .as_array()
            .expect("params")
            .iter()
            .any(|p| p["name"] == "mode" && p["required"] == true)
    );

    // Recent lines, then live ones.
    crate::common::until_ok("three ticks in the log", async || {
        let logs = b
            .get_text(
                "/v1/projects/alpha/processes/ticker/logs?lines=3",
                RUN_ALPHA,
            )
            .await;
        // The first line is bosun's own `[bosun] started` note.
        let ticks =
            logs.lines().count() == 3 && logs.lines().all(|l| l.starts_with("ticker-0 | tick "));
        if ticks { Ok(()) } else { Err(logs) }
    })
    .await;
    let resp = b
        .req(
            Method::GET,
            "/v1/projects/alpha/processes/ticker/logs?lines=0&follow=1",
            Some(RUN_ALPHA),
        )
        .send()
        .await
        .expect("GET");
    let mut body = resp.bytes_stream();
    let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
        .await
        .expect("a live line")
        .expect("chunk")
        .expect("bytes");
    assert!(String::from_utf8_lossy(&chunk).starts_with("ticker-0 | tick "));
    let all = b
        .get_text("/v1/projects/alpha/logs?lines=2", RUN_ALPHA)
        .await;
    assert_eq!(all.lines().count(), 2, "{all}");
    assert!(all.lines().all(|l| l.starts_with("ticker-0 | ")), "{all}");
    let missing = b
        .req(
            Method::GET,
            "/v1/projects/alpha/processes/nope/logs",
            Some(RUN_ALPHA),
        )
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The stock status action sees the process through the supervisor.
    let (status, job) = b
        .run("alpha", "status", "?wait=30s", json!({}), RUN_ALPHA)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["result"]["processes"][0]["name"], "ticker", "{job}");
    b.stop().await;
}
