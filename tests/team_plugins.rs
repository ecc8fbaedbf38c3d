//! Teams' own plugins: the Python and JavaScript examples, built with the
//! toolchains the project installs itself (`plugins/toolchains`) and run
//! through the API; uploads, each refusal with its status and code and
//! nothing replaced, versions, rollback and removal, kept across a
//! restart; and a plugin kept in the project's repository, picked up by
//! a job and kept when a broken one is committed.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use bosun::config::Config;
use bosun::plugins::{Allocation, Engine, EngineConfig};
use common::server::{ADMIN, Api, Bosun, admin_config, hash};
use common::{git, guest, guest_dir, until};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// Build `plugins/examples/<name>` with `plugins/toolchains/build`, once per
/// content of its sources, the WIT and the toolchain pins: the toolchains
/// are installed into the target dir on the first run and kept. The
/// partial file is named by process, so two test binaries never share one.
fn example(name: &str) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository");
    let src = repo.join("plugins/examples").join(name);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&src)
        .expect("the example")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    inputs.sort();
    inputs.extend(
        [
            "wit/plugin.wit",
            "plugins/toolchains/requirements.txt",
            "plugins/toolchains/package-lock.json",
        ]
        .map(|p| repo.join(p)),
    );
    let mut digest = Sha256::new();
    for input in &inputs {
        digest.update(std::fs::read(input).expect("an input"));
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = target.join(format!(
        "examples/{name}-{}.wasm",
        &hex::encode(digest.finalize())[..16]
    ));
    // Tests of this binary run on threads of one process: they build one
    // at a time, and whoever comes second finds the first one's build.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
    if !out.exists() {
        std::fs::create_dir_all(out.parent().expect("a dir")).expect("examples dir");
        let partial = out.with_extension(format!("{}.partial", std::process::id()));
        let status = std::process::Command::new(repo.join("plugins/toolchains/build"))
            .arg(&src)
            .arg(&partial)
            .env("BOSUN_TOOLCHAINS", target.join("../toolchains"))
            .status()
            .expect("the build script runs");
        assert!(status.success(), "building the {name} example");
        std::fs::rename(&partial, &out).expect("into place");
    }
    out
}

/// A project dir that is a git repository with one commit; its revision.
fn repo_at(dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("project dir");
    git(dir, &["init", "--quiet"]);
    std::fs::write(dir.join("README"), "app\n").expect("file");
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "-m", "first"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Assert `job` failed with a message starting with `prefix`.
fn failed_with(job: &Value, prefix: &str) {
    let message = job["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(prefix), "{job}");
}

/// Run `action` of project `app` and wait for it: the job and its log.
async fn ran(api: &Api, action: &str) -> (Value, String) {
    let (_, job) = api.run("app", action, "?wait=60s", json!({}), ADMIN).await;
    let id = job["id"].as_str().expect("a job id");
    let log = api.get_text(&format!("/v1/jobs/{id}/log"), ADMIN).await;
    (job, log)
}

async fn run(api: &Api, action: &str, params: Value) -> Value {
    let (status, job) = api.run("app", action, "?wait=120s", params, ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_plugins_run_through_the_api() {
    let (python, js) = (example("python-report"), example("js-uptime"));
    let root = TempDir::new().expect("root");
    let revision = repo_at(&root.path().join("app"));
    let text = format!(
        "{}\n[projects.app]\ndir = \"app\"\n\
         [[projects.app.processes]]\nname = \"web\"\ncommand = \"sleep\"\nargs = [\"1000\"]\n\
         [projects.app.actions.report]\npath = \"{}\"\n\
         [projects.app.actions.uptime]\npath = \"{}\"\n",
        admin_config(""),
        python.display(),
        js.display()
    );
    std::fs::write(root.path().join("bosun.toml"), &text).expect("config");

    // The pool takes a componentize-py component (14 core instances,
    // ~18 MB) with the engine the server builds from this config.
    let config = Config::load(&root.path().join("bosun.toml")).expect("config");
    let engine = Engine::new(&EngineConfig::from_config(&config)).expect("engine");
    assert_eq!(engine.allocation(), Allocation::Pooling);
    let wasm = std::fs::read(&python).expect("python component");
    let plugin = engine
        .load("report", &wasm)
        .await
        .expect("loads in the pool");
    assert_eq!(plugin.meta().name, "report");
    drop(engine);

    let bosun = Bosun::start_in(root.path()).await;
    bosun.settled_project("app", "running").await;
    let actions = bosun.get_json("/v1/projects/app/actions", ADMIN).await;
    let report = actions
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "report"))
        .expect("report listed");
    assert_eq!(report["source"], "file", "{report}");
    assert_eq!(report["params"][1]["default"], "3", "{report}");

    // Python: the defaults, the `processes` and `git` imports.
    let job = run(&bosun, "report", json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let result = &job["result"];
    assert_eq!(result["revision"], revision.as_str(), "{job}");
    assert_eq!(result["processes"][0]["name"], "web", "{job}");
    assert_eq!(result["processes"][0]["state"], "running", "{job}");
    assert_eq!(result["healthy"], true, "{job}");
    let log = bosun
        .get_text(
            &format!("/v1/jobs/{}/log", job["id"].as_str().expect("id")),
            ADMIN,
        )
        .await;
    assert!(log.contains("web#0: running"), "{log}");
    // Its typed errors.
    let job = run(&bosun, "report", json!({"process": "nope"})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        job["error"]["message"], "not found: the project has no process called `nope`",
        "{job}"
    );
    let job = run(&bosun, "report", json!({"max_restarts": "many"})).await;
    failed_with(&job, "invalid: param `max_restarts` is not a number");

    // JavaScript: the default process, and each typed error.
    let job = run(&bosun, "uptime", json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        job["result"],
        json!({"process": "web", "instances": 1, "revision": revision, "min_seconds": 0})
    );
    let job = run(&bosun, "uptime", json!({"min_seconds": "999999"})).await;
    failed_with(&job, "failed: web#0 has been up");
    let job = run(&bosun, "uptime", json!({"min_seconds": "soon"})).await;
    failed_with(&job, "invalid: param `min_seconds`");
    let job = run(&bosun, "uptime", json!({"process": "worker"})).await;
    assert_eq!(
        job["error"]["message"], "not found: the project has no process called `worker`",
        "{job}"
    );
    bosun.stop().await;
}

/// `alpha` takes uploads (its `restart` may be replaced, its `status` not);
/// `beta` takes none. An admin of alpha alone, and a read key.
fn uploads_config(root: &Path) {
    for project in ["alpha", "beta"] {
        std::fs::create_dir_all(root.join(project)).expect("project dir");
    }
    let text = format!(
        "{}\n[plugins]\nmax_plugin_size = \"1MiB\"\n\
         [[keys]]\nname = \"alpha-admin\"\nhash = \"{}\"\nprojects = [\"alpha\"]\nrole = \"admin\"\n\
         [[keys]]\nname = \"reader\"\nhash = \"{}\"\nprojects = \"*\"\nrole = \"read\"\n\
         [projects.alpha]\ndir = \"alpha\"\nallow_uploads = true\n\
         [projects.alpha.actions.status]\n\
         [projects.alpha.actions.restart]\nreplaceable = true\n\
         [projects.beta]\ndir = \"beta\"\nactions = [\"status\"]\n",
        admin_config(""),
        hash(ALPHA_ADMIN),
        hash(READER),
    );
    std::fs::write(root.join("bosun.toml"), text).expect("config");
}

const ALPHA_ADMIN: &str = "bsk_test_uploads_alpha_admin";
const READER: &str = "bsk_test_uploads_reader";

async fn upload(api: &Api, path: &str, key: &str, wasm: Vec<u8>) -> (StatusCode, Value) {
    let resp = api
        .req(Method::PUT, path, Some(key))
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .await
        .expect("PUT");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The summary `action` on alpha describes itself with now.
async fn summary_of(api: &Api, action: &str) -> Value {
    let actions = api.get_json("/v1/projects/alpha/actions", ADMIN).await;
    actions
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == action).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_versioned_rolled_back_and_kept_across_restarts() {
    let root = TempDir::new().expect("root");
    uploads_config(root.path());
    let bosun = Bosun::start_in(root.path()).await;
    let tool = "/v1/projects/alpha/actions/tool";
    let (v1, v2) = (guest("disk_usage"), guest("fixture_contract_0_1_0"));

    let (status, body) = upload(&bosun, tool, ALPHA_ADMIN, v1.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"], 1, "{body}");
    assert_eq!(body["uploaded_by"], "alpha-admin", "{body}");
    assert_eq!(body["params"][0]["name"], "path", "{body}");
    let (status, job) = bosun
        .run("alpha", "tool", "?wait=60s", json!({}), ADMIN)
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert!(
        job["result"]["total_bytes"].is_u64(),
        "disk-usage ran: {job}"
    );

    // The same component again changes nothing.
    let (status, body) = upload(&bosun, tool, ALPHA_ADMIN, v1.clone()).await;
    assert_eq!((status, &body["version"]), (StatusCode::OK, &json!(1)));

    let (status, body) = upload(&bosun, tool, ADMIN, v2.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"], 2, "{body}");
    assert_eq!(summary_of(&bosun, "tool").await["version"], 2);

    // Every refusal, with nothing replaced.
    let mut core = b"\0asm\x01\0\0\0".to_vec();
    core.extend_from_slice(&[0; 8]);
    let over = {
        let mut big = v1.clone();
        big.resize(1_200_000, 0);
        big
    };
    let refusals: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        // Each answered, even to a client still sending a body of 1.2 MB.
        (
            tool,
            "bsk_wrong",
            over.clone(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            tool,
            READER,
            over.clone(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            tool,
            ADMIN,
            b"#!/bin/sh\necho hi\n".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_plugin",
        ),
        (
            tool,
            ADMIN,
            core,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_plugin",
        ),
        (
            tool,
            ADMIN,
            guest("fixture_wrong_export"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_plugin",
        ),
        (
            tool,
            ADMIN,
            guest("fixture_unknown_import"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_plugin",
        ),
        (
            tool,
            ADMIN,
            guest("fixture_describe_trap"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_plugin",
        ),
        (
            tool,
            ADMIN,
            over,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (tool, READER, v1.clone(), StatusCode::FORBIDDEN, "forbidden"),
        (
            "/v1/projects/beta/actions/tool",
            ALPHA_ADMIN,
            v1.clone(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "/v1/projects/beta/actions/tool",
            ADMIN,
            v1.clone(),
            StatusCode::FORBIDDEN,
            "uploads_not_allowed",
        ),
        (
            "/v1/projects/alpha/actions/status",
            ADMIN,
            v1.clone(),
            StatusCode::CONFLICT,
            "action_not_replaceable",
        ),
        (
            "/v1/projects/alpha/actions/Bad%20Name",
            ADMIN,
            v1.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            "/v1/projects/nowhere/actions/tool",
            ADMIN,
            v1.clone(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (path, key, wasm, want, code) in refusals {
        let (status, body) = upload(&bosun, path, key, wasm).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (want, Some(code)),
            "{path}: {body}"
        );
    }
    let wrong_type = bosun
        .req(Method::PUT, tool, Some(ADMIN))
        .header("content-type", "application/octet-stream")
        .body(v1.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let trap = upload(&bosun, tool, ADMIN, guest("fixture_describe_trap"))
        .await
        .1;
    assert!(
        trap["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("describe() failed")),
        "{trap}"
    );
    // A name is a path component of the store: none leads out of it.
    let sideways = bosun
        .get_json(
            "/v1/projects/alpha/actions/..%2Fbeta%2Ftool/versions",
            READER,
        )
        .await;
    assert_eq!(sideways["error"]["code"], "invalid_name", "{sideways}");
    let versions = bosun.get_json(&format!("{tool}/versions"), READER).await;
    assert_eq!(versions["current"], 2, "nothing replaced: {versions}");
    assert_eq!(
        versions["versions"].as_array().map(Vec::len),
        Some(2),
        "{versions}"
    );
    assert_eq!(summary_of(&bosun, "tool").await["version"], 2);

    // A rollback, to the version before.
    let resp = bosun.post(&format!("{tool}/rollback"), ALPHA_ADMIN).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(summary_of(&bosun, "tool").await["version"], 1);
    let resp = bosun
        .req(Method::POST, &format!("{tool}/rollback"), Some(ADMIN))
        .json(&json!({"version": 7}))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    for not_object in ["[2]", "[]"] {
        let resp = bosun
            .req(Method::POST, &format!("{tool}/rollback"), Some(ADMIN))
            .header("content-type", "application/json")
            .body(not_object)
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{not_object}");
    }
    assert_eq!(summary_of(&bosun, "tool").await["version"], 1);

    // A job running on a version finishes on it; the next gets the new.
    let slow = "/v1/projects/alpha/actions/slowpoke";
    assert_eq!(
        upload(&bosun, slow, ADMIN, guest("fixture_hostile"))
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, running) = bosun
        .run(
            "alpha",
            "slowpoke",
            "",
            json!({"mode": "slow", "count": "40", "ms": "50"}),
            ADMIN,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{running}");
    let id = running["id"].as_str().expect("id");
    bosun.until_running(id).await;
    assert_eq!(
        upload(&bosun, slow, ADMIN, v1.clone()).await.0,
        StatusCode::CREATED
    );
    let done = bosun.finished(id).await;
    assert_eq!(
        done["result"],
        json!({"printed": 40}),
        "the old version: {done}"
    );
    let (_, next) = bosun
        .run("alpha", "slowpoke", "?wait=60s", json!({}), ADMIN)
        .await;
    assert!(
        next["result"]["total_bytes"].is_u64(),
        "the new version: {next}"
    );

    // A replaceable stock action, replaced and given back.
    let restart = "/v1/projects/alpha/actions/restart";
    assert_eq!(
        upload(&bosun, restart, ADMIN, v2.clone()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(summary_of(&bosun, "restart").await["source"], "upload");
    bosun.stop().await;

    // A restart keeps every version and the one in service.
    let bosun = Bosun::start_in(root.path()).await;
    let tool_now = summary_of(&bosun, "tool").await;
    assert_eq!(
        (tool_now["source"].as_str(), &tool_now["version"]),
        (Some("upload"), &json!(1))
    );
    let versions = bosun.get_json(&format!("{tool}/versions"), ADMIN).await;
    assert_eq!(versions["current"], 1, "{versions}");
    let (status, job) = bosun
        .run("alpha", "tool", "?wait=60s", json!({}), ADMIN)
        .await;
    assert_eq!(
        (status, &job["state"]),
        (StatusCode::OK, &json!("succeeded")),
        "{job}"
    );

    let resp = bosun
        .req(Method::DELETE, restart, Some(ADMIN))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(summary_of(&bosun, "restart").await["source"], "stock");
    let resp = bosun
        .req(Method::DELETE, tool, Some(ALPHA_ADMIN))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(summary_of(&bosun, "tool").await, Value::Null);
    let (status, _) = bosun.run("alpha", "tool", "", json!({}), ADMIN).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let resp = bosun
        .req(
            Method::DELETE,
            "/v1/projects/alpha/actions/slowpoke",
            Some(ADMIN),
        )
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let blobs = std::fs::read_dir(root.path().join("state/uploads/blobs")).expect("blobs");
    assert_eq!(blobs.count(), 0, "no component is kept for nothing");

    // The CLI, as a team's CI would call it.
    let cli = |args: &[&str], key: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args(args)
            .env("BOSUN_URL", &bosun.url)
            .env("BOSUN_KEY", key)
            .output()
            .expect("bosun runs");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let file = guest_dir().join("disk_usage.wasm");
    let file = file.to_str().expect("utf-8 path");
    let (code, out, err) = cli(&["plugin", "push", "alpha", "du", file], ALPHA_ADMIN);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("alpha/du: version 1 in service"), "{out}");
    let (code, out, _) = cli(&["plugin", "versions", "alpha", "du"], READER);
    assert_eq!(code, Some(0));
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with("1 *")),
        "{out}"
    );
    let (code, _, err) = cli(&["plugin", "rollback", "alpha", "du"], ALPHA_ADMIN);
    assert_ne!(code, Some(0));
    assert!(err.contains("404 not_found"), "{err}");
    let (code, _, err) = cli(&["plugin", "push", "beta", "du", file], ADMIN);
    assert_ne!(code, Some(0));
    assert!(err.contains("403 uploads_not_allowed"), "{err}");
    let (code, out, err) = cli(&["plugin", "rm", "alpha", "du"], ALPHA_ADMIN);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "alpha/du: uploaded versions removed");
    bosun.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_kept_in_the_repository_is_picked_up_and_a_broken_one_keeps_the_last() {
    let root = TempDir::new().expect("root");
    let r = root.path();
    git(r, &["init", "--quiet", "--bare", "origin.git"]);
    git(r, &["clone", "--quiet", "origin.git", "dev"]);
    let dev = r.join("dev");
    let commit = |wasm: &[u8], message: &str| {
        std::fs::create_dir_all(dev.join(".bosun")).expect("dir");
        std::fs::write(dev.join(".bosun/tool.wasm"), wasm).expect("plugin");
        git(&dev, &["add", "-A"]);
        git(&dev, &["commit", "--quiet", "-m", message]);
        git(&dev, &["push", "--quiet", "origin", "HEAD:main"]);
    };
    commit(&guest("disk_usage"), "a plugin");
    let text = format!(
        "{}\n[projects.app]\ndir = \"app\"\n[projects.app.actions.deploy]\n\
         [projects.app.git]\nclone = \"./origin.git\"\nbranch = \"main\"\n\
         [projects.app.actions.tool]\nrepo_path = \".bosun/tool.wasm\"\n",
        admin_config("")
    );
    std::fs::write(r.join("bosun.toml"), text).expect("config");
    let bosun = Bosun::start_in(r).await;

    // The first checkout brings it.
    until("the repository's plugin loaded", async || {
        let actions = bosun.get_json("/v1/projects/app/actions", ADMIN).await;
        let tool = actions
            .as_array()?
            .iter()
            .find(|a| a["name"] == "tool")?
            .clone();
        (tool["available"] == true).then_some(())
    })
    .await;
    let (_, job) = bosun
        .run("app", "tool", "?wait=60s", json!({}), ADMIN)
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(job["result"]["total_bytes"].is_u64(), "{job}");

    // Another plugin, committed and pulled: the job says so, and it runs.
    commit(&guest("fixture_contract_0_1_0"), "another");
    let (_, job) = bosun
        .run("app", "deploy", "?wait=60s", json!({}), ADMIN)
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let log = bosun
        .get_text(
            &format!("/v1/jobs/{}/log", job["id"].as_str().expect("id")),
            ADMIN,
        )
        .await;
    assert!(
        log.contains("action `tool` now runs the new .bosun/tool.wasm"),
        "{log}"
    );
    let (_, job) = bosun
        .run("app", "tool", "?wait=60s", json!({}), ADMIN)
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(
        job["result"].is_string(),
        "the 0.1.0 fixture answers: {job}"
    );

    // A broken one: the previous stays in service, and the log says why.
    commit(&guest("fixture_describe_trap"), "broken");
    let (_, log) = ran(&bosun, "deploy").await;
    assert!(
        log.contains(".bosun/tool.wasm changed but does not load, so action `tool` keeps the version that loaded before")
            && log.contains("describe() failed"),
        "{log}"
    );
    let (_, job) = bosun
        .run("app", "tool", "?wait=60s", json!({}), ADMIN)
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(job["result"].is_string(), "still the 0.1.0 fixture: {job}");
    // A link out of the project in its place is not followed.
    std::fs::remove_file(dev.join(".bosun/tool.wasm")).expect("rm");
    std::os::unix::fs::symlink(
        guest_dir().join("disk_usage.wasm"),
        dev.join(".bosun/tool.wasm"),
    )
    .expect("link");
    git(&dev, &["add", "-A"]);
    git(&dev, &["commit", "--quiet", "-m", "a link out"]);
    git(&dev, &["push", "--quiet", "origin", "HEAD:main"]);
    let (_, log) = ran(&bosun, "deploy").await;
    assert!(log.contains("changed but does not load"), "{log}");
    let (_, job) = bosun
        .run("app", "tool", "?wait=60s", json!({}), ADMIN)
        .await;
    assert!(job["result"].is_string(), "still the 0.1.0 fixture: {job}");
    // Nor is a hard link to a file of elsewhere, made by the tenant's
    // programs in place of the file.
    let outside = r.join("outside.wasm");
    std::fs::write(&outside, guest("disk_usage")).expect("outside");
    let planted = r.join("app/.bosun/tool.wasm");
    std::fs::remove_file(&planted).expect("rm");
    std::fs::hard_link(&outside, &planted).expect("hard link");
    let (_, log) = ran(&bosun, "tool").await;
    assert!(log.contains("a file with more than one link"), "{log}");
    let (_, job) = bosun
        .run("app", "tool", "?wait=60s", json!({}), ADMIN)
        .await;
    assert!(job["result"].is_string(), "still the 0.1.0 fixture: {job}");
    bosun.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_over_its_compile_budget_is_refused_and_replaces_nothing() {
    for (budget, says) in [
        (
            "compile_memory = \"16MiB\"",
            "compiling needed more than the budget of",
        ),
        (
            "compile_timeout = \"1ms\"",
            "compiling took longer than the budget of 1ms",
        ),
    ] {
        let root = TempDir::new().expect("root");
        uploads_config(root.path());
        let config = root.path().join("bosun.toml");
        let text = std::fs::read_to_string(&config).expect("config");
        let text = text.replace("[plugins]\n", &format!("[plugins]\n{budget}\n"));
        std::fs::write(&config, text).expect("config");
        let bosun = Bosun::start_in(root.path()).await;
        let (status, body) = upload(
            &bosun,
            "/v1/projects/alpha/actions/restart",
            ADMIN,
            guest("disk_usage"),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{body}"
        );
        assert_eq!(summary_of(&bosun, "restart").await["source"], "stock");
        bosun.stop().await;
    }
}

/// Whether a `bosun compile-plugin` child is compiling for the state dir
/// under `root`.
fn compiling_for(root: &Path) -> bool {
    let state = root.join("state");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        std::fs::read(p.path().join("cmdline")).is_ok_and(|cmd| {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains("compile-plugin") && cmd.contains(&*state.to_string_lossy())
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_while_its_upload_compiles_puts_nothing_in_service() {
    let python = std::fs::read(example("python-report")).expect("python component");
    let root = TempDir::new().expect("root");
    uploads_config(root.path());
    let config = root.path().join("bosun.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("max_plugin_size = \"1MiB\"", "")).expect("config");
    let bosun = Bosun::start_in(root.path()).await;
    let api = (*bosun).clone();
    let uploading = tokio::spawn(async move {
        upload(
            &api,
            "/v1/projects/alpha/actions/report",
            ALPHA_ADMIN,
            python,
        )
        .await
    });
    until("the upload compiling", async || {
        compiling_for(root.path()).then_some(())
    })
    .await;
    // The operator revokes the key mid-compile.
    let text = std::fs::read_to_string(&config).expect("config");
    let start = text
        .find("[[keys]]\nname = \"alpha-admin\"")
        .expect("the key");
    let end = text[start + 1..].find("[[keys]]").expect("the next key") + start + 1;
    std::fs::write(&config, format!("{}{}", &text[..start], &text[end..])).expect("config");
    let resp = bosun.post("/v1/reload", ADMIN).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, body) = uploading.await.expect("the upload answers");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "key_revoked", "{body}");
    assert_eq!(summary_of(&bosun, "report").await, Value::Null);
    let versions = bosun
        .get_json("/v1/projects/alpha/actions/report/versions", ADMIN)
        .await;
    assert_eq!(versions["error"]["code"], "not_found", "{versions}");
    bosun.stop().await;
}

#[test]
fn a_refused_repository_component_is_not_compiled_again_until_it_changes() {
    let root = TempDir::new().expect("root");
    let app = root.path().join("app");
    std::fs::create_dir_all(app.join(".bosun")).expect("dirs");
    std::fs::write(app.join(".bosun/tool.wasm"), guest("disk_usage")).expect("plugin");
    let config = |budget: &str| {
        let text = format!(
            "state_dir = \"state\"\n[plugins]\n{budget}\n[projects.app]\ndir = \"app\"\n\
             [projects.app.actions.tool]\nrepo_path = \".bosun/tool.wasm\"\n"
        );
        std::fs::write(root.path().join("bosun.toml"), text).expect("config");
    };
    let check = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args(["check", "--config"])
            .arg(root.path().join("bosun.toml"))
            .output()
            .expect("bosun runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Over its budget once: refused, and remembered.
    config("compile_timeout = \"1ms\"");
    let (ok, err) = check();
    assert!(
        !ok && err.contains("compiling took longer than the budget of 1ms"),
        "{err}"
    );
    // With the budget back, the same bytes are not compiled again (a
    // component made to take its whole budget would take it at every
    // start, check and job).
    config("");
    let (ok, err) = check();
    assert!(
        !ok && err.contains("refused before: compiling took longer"),
        "{err}"
    );
    // New bytes are tried; so are the old once the operator clears the memory.
    std::fs::write(
        app.join(".bosun/tool.wasm"),
        guest("fixture_contract_0_1_0"),
    )
    .expect("new");
    assert!(check().0, "{}", check().1);
    std::fs::write(app.join(".bosun/tool.wasm"), guest("disk_usage")).expect("old");
    std::fs::remove_dir_all(root.path().join("state/cache/refused")).expect("cleared");
    let (ok, err) = check();
    assert!(ok, "{err}");
}
