//! Apps deployed the way their READMEs say: a venv in the project and the
//! project's own scripts, named as its own tools (`path`, project-relative
//! programs in `commands.allow`), a release phase that migrates, and a
//! bosun started with a relative `--config`.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::server::{ADMIN, Api, Bosun, BosunProcess, admin_config};
use common::{git, until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

/// The app: says which Python runs it, then waits.
const APP: &str = "import sys, time\nprint('running in', sys.prefix, flush=True)\nprint('up', flush=True)\ntime.sleep(100000)\n";

/// The migration: records the version it migrated to, unless the commit
/// carries a file `bad-migration`.
const MIGRATE: &str = "import os, sys\n\
if os.path.exists('bad-migration'):\n    sys.exit('migration 0002 failed: column exists')\n\
open('migrated', 'w').write(open('VERSION').read())\n\
print('migrated to', open('VERSION').read(), flush=True)\n";

/// A bare `origin.git` with the app at `v1`, a developer's clone `dev`,
/// and the project `shop` cloned from it (in place).
struct Repo {
    root: TempDir,
}

impl Repo {
    fn new() -> Self {
        let root = TempDir::new().expect("temp dir");
        let r = root.path();
        git(r, &["init", "--quiet", "--bare", "origin.git"]);
        git(r, &["clone", "--quiet", "origin.git", "dev"]);
        let repo = Self { root };
        repo.commit("v1", &[]);
        git(
            repo.root.path(),
            &["clone", "--quiet", "origin.git", "shop"],
        );
        repo
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn commit(&self, version: &str, extra: &[&str]) {
        let dev = self.path("dev");
        let _ = std::fs::remove_file(dev.join("bad-migration"));
        std::fs::create_dir_all(dev.join("bin")).expect("bin");
        let greet = dev.join("bin/greet");
        std::fs::write(&greet, "#!/bin/sh\necho \"greet: hello from $0\"\n").expect("greet");
        std::fs::set_permissions(&greet, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(dev.join("VERSION"), version).expect("version");
        std::fs::write(dev.join("app.py"), APP).expect("app");
        std::fs::write(dev.join("migrate.py"), MIGRATE).expect("migrate");
        for name in extra {
            std::fs::write(dev.join(name), "").expect("extra");
        }
        git(&dev, &["add", "-A"]);
        git(&dev, &["commit", "--quiet", "-m", version]);
        git(&dev, &["push", "--quiet", "origin", "HEAD:main"]);
    }
}

/// The project's config: its tools in `path`, a venv made by the build, a
/// migration as the release phase, and `web` run by `python`, which only
/// the venv has.
fn config(repo: &Repo) {
    let text = format!(
        r#"{head}
[projects.shop]
dir = "shop"
actions = ["deploy"]
path = [".venv/bin", "bin"]
[projects.shop.git]
remote = "./origin.git"
[projects.shop.commands]
allow = ["python3", "greet", ".venv/bin/python", "python"]
[projects.shop.deploy]
build = [["python3", "-m", "venv", "--without-pip", ".venv"], ["greet"], [".venv/bin/python", "-c", "print('venv ok')"]]
release = [["python", "migrate.py"]]
ready_timeout = "20s"
settle = "300ms"
[[projects.shop.processes]]
name = "web"
command = "python"
args = ["app.py"]
ready = {{ log = "^up$", timeout = "20s" }}
"#,
        head = admin_config("")
    );
    std::fs::write(repo.path("bosun.toml"), text).expect("config");
}

async fn deploy(api: &Api, params: Value) -> Value {
    let (status, job) = api.run("shop", "deploy", "?wait=120s", params, ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    job
}

/// Run `deploy`, which must succeed (its log is shown when it does not).
async fn deployed(api: &Api, params: Value) {
    let job = deploy(api, params).await;
    assert_eq!(
        job["state"],
        "succeeded",
        "{job}\n{}",
        log_of(api, &job).await
    );
}

/// Wait until `url` answers `want`. One instance without a socket held by
/// bosun is down while it restarts: what counts is which version answers
/// once it is up.
async fn answers(url: &str, want: &str) {
    until(&format!("`{want}` from {url}"), async || {
        let text = reqwest::get(url).await.ok()?.text().await.ok()?;
        (text == want).then_some(())
    })
    .await
}

async fn log_of(api: &Api, job: &Value) -> String {
    let url = job["log_url"].as_str().expect("log url");
    api.get_text(url, ADMIN).await
}

/// The web process, once running.
async fn web(api: &Api) -> Value {
    until("web running", async || {
        let body = api.get_json("/v1/projects/shop", ADMIN).await;
        let web = body["processes"][0].clone();
        (web["state"] == "running").then_some(web)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_runs_the_projects_own_tools_and_a_failed_migration_rolls_back() {
    let repo = Repo::new();
    config(&repo);
    let bosun = Bosun::start_in(repo.root.path()).await;

    // No venv yet, so no `python`: the first deploy makes it.
    let job = deploy(&bosun, json!({ "force": "true" })).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let log = log_of(&bosun, &job).await;
    let shop = repo.path("shop").canonicalize().expect("shop");
    assert!(
        log.contains(&format!(
            "greet: hello from {}",
            shop.join("bin/greet").display()
        )),
        "{log}"
    );
    assert!(
        log.contains("venv ok") && log.contains("migrated to v1"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(shop.join("migrated")).expect("migrated"),
        "v1"
    );
    let first = web(&bosun).await;
    let logs = bosun
        .get_text("/v1/projects/shop/processes/web/logs?lines=10", ADMIN)
        .await;
    assert!(
        logs.contains(&format!("running in {}", shop.join(".venv").display())),
        "{logs}"
    );

    // A migration that fails: the deploy fails before any restart, and is
    // rolled back to v1.
    repo.commit("v2", &["bad-migration"]);
    let job = deploy(&bosun, json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    let detail = &job["error"]["detail"];
    assert_eq!(detail["rolled_back"], true, "{job}");
    let reason = detail["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("release step `python migrate.py` exited with 1"),
        "{job}"
    );
    assert_eq!(
        std::fs::read_to_string(shop.join("migrated")).expect("migrated"),
        "v1"
    );
    assert_eq!(
        std::fs::read_to_string(shop.join("VERSION")).expect("version"),
        "v1"
    );
    assert_eq!(web(&bosun).await["pid"], first["pid"]);
    bosun.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_config_path_runs_a_project_relative_command() {
    let root = TempDir::new().expect("temp dir");
    let dir = root.path().join("app");
    std::fs::create_dir_all(dir.join("bin")).expect("bin");
    let serve = dir.join("bin/serve");
    std::fs::write(&serve, "#!/bin/sh\necho up\nexec sleep 100000\n").expect("serve");
    std::fs::set_permissions(&serve, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let text = format!(
        "{}\n[projects.app]\ndir = \"app\"\n[[projects.app.processes]]\nname = \"web\"\n\
         command = \"bin/serve\"\nready = {{ log = \"^up$\", timeout = \"20s\" }}\n",
        admin_config("")
    );
    std::fs::write(root.path().join("bosun.toml"), text).expect("config");
    let bosun = BosunProcess::start_relative(root.path());
    let state = until("web running or fatal", async || {
        let body = bosun.get_json("/v1/projects/app", ADMIN).await;
        let web = body["processes"][0].clone();
        matches!(web["state"].as_str(), Some("running" | "fatal")).then_some(web)
    })
    .await;
    assert_eq!(state["state"], "running", "{state}");
    assert!(Path::new(&dir).join("bin/serve").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_path_that_leads_into_another_project_finds_nothing_there() {
    let repo = Repo::new();
    config(&repo);
    // Another tenant's tools, and a dir on this one's `path` that is a
    // link to them.
    let other = repo.path("other/bin");
    std::fs::create_dir_all(&other).expect("other");
    let tool = other.join("greet");
    std::fs::write(&tool, "#!/bin/sh\necho OTHER TENANT RAN\n").expect("tool");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let text = std::fs::read_to_string(repo.path("bosun.toml"))
        .expect("config")
        .replace(
            "path = [\".venv/bin\", \"bin\"]",
            "path = [\".venv/bin\", \"tools\"]",
        )
        + "[projects.other]\ndir = \"other\"\n";
    std::fs::write(repo.path("bosun.toml"), text).expect("config");
    std::os::unix::fs::symlink(&other, repo.path("shop/tools")).expect("link");
    let bosun = Bosun::start_in(repo.root.path()).await;
    let job = deploy(&bosun, json!({ "force": "true" })).await;
    assert_eq!(job["state"], "failed", "{job}");
    let log = log_of(&bosun, &job).await;
    assert!(!log.contains("OTHER TENANT RAN"), "{log}");
    let reason = job["error"]["detail"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("build step `greet`"), "{job}");
    bosun.stop().await;
}

/// `bosun <args>` in `dir`: exit status, stdout, stderr.
fn bosun_cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run bosun");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `imported` (what `bosun import` printed) as the config in `root`, with
/// an admin key: `bosun check` must accept it; then bosun serves it.
fn checked_and_served(root: &Path, imported: &str) -> BosunProcess {
    let text = format!("{}\n{imported}", admin_config(""));
    std::fs::write(root.join("bosun.toml"), text).expect("config");
    let (ok, out, err) = bosun_cli(root, &["check", "--config", "bosun.toml"]);
    assert!(ok, "{out}{err}");
    BosunProcess::start(root)
}

/// A PM2 ecosystem of two apps, one in cluster mode with 4 instances.
const ECOSYSTEM: &str = r#"{
  "apps": [
    { "name": "API", "script": "server.py", "instances": 4, "exec_mode": "cluster",
      "env": { "GREETING": "hi" }, "env_production": { "GREETING": "hello" },
      "watch": true },
    { "name": "worker", "script": "worker.sh", "args": "--queue default",
      "autorestart": false, "kill_timeout": 3000, "max_memory_restart": "300M",
      "out_file": "/root/.ssh/authorized_keys" }
  ]
}"#;

const ECOSYSTEM_YAML: &str = "apps:
  - name: API
    script: server.py
    instances: 4
    exec_mode: cluster
    env:
      GREETING: hi
    env_production:
      GREETING: hello
    watch: true
  - name: worker
    script: worker.sh
    args: --queue default
    autorestart: false
    kill_timeout: 3000
    max_memory_restart: 300M
    out_file: /root/.ssh/authorized_keys
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pm2_ecosystem_imports_to_a_config_that_checks_and_runs_both_apps() {
    let root = TempDir::new().expect("temp dir");
    let app = root.path().join("app");
    std::fs::create_dir_all(&app).expect("app dir");
    std::fs::write(
        app.join("server.py"),
        "import os, time\nprint('api', os.environ['GREETING'], flush=True)\ntime.sleep(100000)\n",
    )
    .expect("server");
    std::fs::write(
        app.join("worker.sh"),
        "echo \"worker $*\"\nexec sleep 100000\n",
    )
    .expect("worker");
    std::fs::write(app.join("ecosystem.json"), ECOSYSTEM).expect("ecosystem");
    std::fs::write(app.join("ecosystem.yaml"), ECOSYSTEM_YAML).expect("yaml");
    std::fs::write(
        app.join("ecosystem.config.js"),
        format!("module.exports = {ECOSYSTEM};\n"),
    )
    .expect("js");

    let (ok, json_config, err) = bosun_cli(root.path(), &["import", "pm2", "app/ecosystem.json"]);
    assert!(ok, "{err}");
    assert!(json_config.contains("instances = 4"), "{json_config}");
    assert!(json_config.contains("cluster mode"), "{json_config}");
    assert!(
        json_config.contains("PM2 `env_production`"),
        "{json_config}"
    );
    assert!(json_config.contains("PM2 `watch = true`"), "{json_config}");
    // A log the ecosystem file puts outside the project is not bosun's to write.
    assert!(!json_config.contains("log_file"), "{json_config}");
    assert!(
        json_config.contains("a log outside the project dir"),
        "{json_config}"
    );
    let body = |c: &str| c.lines().skip(1).collect::<Vec<_>>().join("\n");
    let (ok, yaml_config, err) = bosun_cli(root.path(), &["import", "pm2", "app/ecosystem.yaml"]);
    assert!(ok, "{err}");
    assert_eq!(body(&yaml_config), body(&json_config));
    // JavaScript runs only when asked to.
    let js = ["import", "pm2", "app/ecosystem.config.js"];
    let (ok, _, err) = bosun_cli(root.path(), &js);
    assert!(!ok && err.contains("pass --run-node"), "{err}");
    let (ok, js_config, err) = bosun_cli(root.path(), &[&js[..], &["--run-node"]].concat());
    match std::process::Command::new("node").arg("--version").output() {
        Ok(_) => {
            assert!(ok, "{err}");
            assert_eq!(body(&js_config), body(&json_config));
        }
        Err(_) => assert!(!ok && err.contains("node is not on PATH"), "{err}"),
    }

    let bosun = checked_and_served(root.path(), &json_config);
    let procs = until("both apps running", async || {
        let body = bosun.get_json("/v1/projects/app", ADMIN).await;
        let procs = body["processes"].as_array()?.clone();
        (procs.len() == 5 && procs.iter().all(|p| p["state"] == "running")).then_some(procs)
    })
    .await;
    let names: Vec<&str> = procs.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "api").count(),
        4,
        "{names:?}"
    );
    assert!(names.contains(&"worker"), "{names:?}");
    // Running is spawned: the worker says its line once it has started.
    until("the worker's first line", async || {
        let logs = bosun
            .get_text("/v1/projects/app/processes/worker/logs?lines=5", ADMIN)
            .await;
        logs.contains("worker --queue default").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_procfile_imports_with_foreman_ports_and_a_release_phase() {
    let root = TempDir::new().expect("temp dir");
    let app = root.path().join("shop");
    std::fs::create_dir_all(&app).expect("app dir");
    std::fs::write(
        app.join("Procfile"),
        "web: python3 -m http.server $PORT --bind 127.0.0.1\n\
         worker: sh -c 'echo worker on $PORT; exec sleep 100000'\n\
         release: echo migrating\n",
    )
    .expect("Procfile");
    let port = common::shop::free_port();
    let (ok, config, err) = bosun_cli(
        root.path(),
        &[
            "import",
            "procfile",
            "shop/Procfile",
            "--port",
            &port.to_string(),
        ],
    );
    assert!(ok, "{err}");
    assert!(
        config.contains(&format!("PORT = \"{}\"", port + 100)),
        "{config}"
    );
    assert!(
        config.contains("release = [[\"sh\", \"-c\", \"echo migrating\"]]"),
        "{config}"
    );
    let bosun = checked_and_served(root.path(), &config);
    until("web ready on its PORT", async || {
        let body = bosun.get_json("/v1/projects/shop", ADMIN).await;
        let procs = body["processes"].as_array()?.clone();
        procs.iter().all(|p| p["state"] == "running").then_some(())
    })
    .await;
    let answer = reqwest::get(format!("http://127.0.0.1:{port}/Procfile"))
        .await
        .expect("web answers on its PORT");
    assert_eq!(answer.status(), StatusCode::OK);

    let (ok, _, err) = bosun_cli(root.path(), &["import", "procfile", "shop/missing"]);
    assert!(!ok && err.contains("cannot read shop/missing"), "{err}");
    std::fs::write(app.join("Bad"), "web python3 app.py\n").expect("bad");
    let (ok, _, err) = bosun_cli(root.path(), &["import", "procfile", "shop/Bad"]);
    assert!(
        !ok && err.contains("shop/Bad: line 1: not `name: command`"),
        "{err}"
    );
}

/// Commit `files` (name, text) to `dev` and push them to `main`.
fn push(dev: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        std::fs::write(dev.join(name), text).expect("file");
    }
    git(dev, &["add", "-A"]);
    git(dev, &["commit", "--quiet", "-m", "change"]);
    git(dev, &["push", "--quiet", "origin", "HEAD:main"]);
}

/// In `r`: a bare `origin.git`, a developer's clone `dev` filled by
/// `make` and pushed, and the project `shop` cloned from it. Returns `dev`.
fn origin_with(r: &Path, make: impl FnOnce(&Path)) -> PathBuf {
    git(r, &["init", "--quiet", "--bare", "origin.git"]);
    git(r, &["clone", "--quiet", "origin.git", "dev"]);
    let dev = r.join("dev");
    make(&dev);
    push(&dev, &[]);
    git(r, &["clone", "--quiet", "origin.git", "shop"]);
    dev
}

/// Write the config of project `shop`, deployed from `./origin.git` with
/// its processes from its Procfile on `port`: `top` are more keys of
/// `[projects.shop]`, `tables` more tables.
fn procfile_shop(r: &Path, port: u16, top: &str, tables: &str) {
    let text = format!(
        "{head}\n[projects.shop]\ndir = \"shop\"\nactions = [\"deploy\"]\n{top}\n\
         [projects.shop.procfile]\nport = {port}\n\
         [projects.shop.git]\nremote = \"./origin.git\"\n{tables}",
        head = admin_config("")
    );
    std::fs::write(r.join("bosun.toml"), text).expect("config");
}

/// The project's processes: name → pid, once none is starting.
async fn running(api: &Api, project: &str) -> Vec<(String, u64)> {
    until("the processes settled", async || {
        let body = api
            .get_json(&format!("/v1/projects/{project}"), ADMIN)
            .await;
        let procs = body["processes"].as_array()?.clone();
        procs.iter().all(|p| p["state"] == "running").then(|| {
            procs
                .iter()
                .map(|p| {
                    let name = p["name"].as_str().unwrap_or_default().to_string();
                    (name, p["pid"].as_u64().unwrap_or_default())
                })
                .collect()
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_changes_the_process_list_through_the_procfile_and_nothing_else() {
    let root = TempDir::new().expect("temp dir");
    let r = root.path();
    let web = "web: python3 -m http.server $PORT --bind 127.0.0.1\n";
    let dev = origin_with(r, |dev| {
        std::fs::write(dev.join("Procfile"), web).expect("Procfile");
    });
    std::fs::create_dir_all(r.join("other")).expect("other");
    let port = common::shop::free_port();
    procfile_shop(
        r,
        port,
        "",
        "[projects.shop.commands]\nallow = [\"sh\"]\n\
         [projects.shop.deploy]\nready_timeout = \"20s\"\nsettle = \"300ms\"\n\
         [projects.other]\ndir = \"other\"\n\
         [[projects.other.processes]]\nname = \"idle\"\ncommand = \"sleep\"\nargs = [\"100000\"]\n",
    );
    let bosun = Bosun::start_in(r).await;
    assert_eq!(running(&bosun, "shop").await.len(), 1);
    let other = running(&bosun, "other").await;

    // A worker and a release phase, added by a commit.
    let worker = "worker: echo \"worker on $PORT\"; exec sleep 100000\n";
    push(
        &dev,
        &[(
            "Procfile",
            &format!("{web}{worker}release: echo released > released\n"),
        )],
    );
    let job = deploy(&bosun, json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let names: Vec<String> = running(&bosun, "shop")
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["web", "worker"]);
    // Started by the apply with the new code, not restarted once more.
    let body = bosun.get_json("/v1/projects/shop", ADMIN).await;
    let worker = body["processes"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "worker"))
        .cloned();
    assert_eq!(
        worker.as_ref().map(|w| w["restarts"].clone()),
        Some(json!(0)),
        "{body}"
    );
    assert!(r.join("shop/released").is_file());
    let logs = bosun
        .get_text("/v1/projects/shop/processes/worker/logs?lines=5", ADMIN)
        .await;
    assert!(
        logs.contains(&format!("worker on {}", port + 100)),
        "{logs}"
    );
    let answer = reqwest::get(format!("http://127.0.0.1:{port}/Procfile"))
        .await
        .expect("web answers on its PORT");
    assert_eq!(answer.status(), StatusCode::OK);

    // An edit of the Procfile in the work tree (not deployed) and a reload
    // by the operator: the processes follow deploys, not the file.
    std::fs::write(r.join("shop/Procfile"), web).expect("edit");
    let resp = bosun.post("/v1/reload", ADMIN).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(running(&bosun, "shop").await.len(), 2);
    git(&r.join("shop"), &["checkout", "--quiet", "--", "Procfile"]);

    // Removed by the next.
    push(&dev, &[("Procfile", web)]);
    let job = deploy(&bosun, json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let now = running(&bosun, "shop").await;
    assert_eq!(now.len(), 1, "{now:?}");

    // More types than `max_types` (8): refused, rolled back.
    let many: String = (0..9)
        .map(|i| format!("t{i}: exec sleep 100000\n"))
        .collect();
    push(&dev, &[("Procfile", &format!("{web}{many}"))]);
    let job = deploy(&bosun, json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job.to_string().contains("`procfile.max_types` allows 8"),
        "{job}"
    );
    assert_eq!(running(&bosun, "shop").await.len(), 1);

    // A Procfile that does not parse: the deploy fails and is rolled back,
    // and the processes are what they were.
    push(&dev, &[("Procfile", "web python3 -m http.server\n")]);
    let job = deploy(&bosun, json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["detail"]["rolled_back"], true, "{job}");
    let reason = job["error"]["detail"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("line 1: not `name: command`"), "{job}");
    assert_eq!(running(&bosun, "shop").await.len(), 1);
    assert_eq!(running(&bosun, "other").await, other);
    bosun.stop().await;

    // `bosun check` reports a broken Procfile in the dir, naming its line.
    std::fs::write(r.join("shop/Procfile"), "web python3\n").expect("Procfile");
    let (ok, _, err) = bosun_cli(r, &["check", "--config", "bosun.toml"]);
    assert!(
        !ok && err.contains("`Procfile`: line 1: not `name: command`"),
        "{err}"
    );
}

/// Django and gunicorn wheels from PyPI, downloaded once into the target
/// dir and kept (a fresh CI machine fetches them on its first run): the
/// deploys then install them with the venv's own pip, offline.
fn wheels() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wheels");
    let have = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|entries| {
            let names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            ["django-", "gunicorn-"]
                .iter()
                .all(|p| names.iter().any(|n| n.to_lowercase().starts_with(p)))
        })
    };
    if !have(&dir) {
        let staging = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).expect("staging");
        let status = std::process::Command::new("/usr/bin/python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--only-binary=:all:",
                "--dest",
            ])
            .arg(staging.path())
            .args(["django>=5.2,<6", "gunicorn"])
            .status()
            .expect("pip download");
        assert!(
            status.success(),
            "downloading Django and gunicorn from PyPI"
        );
        // Another test binary may have won the race: either copy is whole.
        let _ = std::fs::rename(staging.keep(), &dir);
        assert!(have(&dir));
    }
    dir
}

/// The Django project `mysite`, made by the real `django-admin
/// startproject`, with a view answering `hello <version>`.
fn django_project(dev: &Path, wheels: &Path) {
    let tools = TempDir::new().expect("tools");
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(std::process::Command::new("/usr/bin/python3")
        .args(["-m", "venv"])
        .arg(tools.path()));
    run(std::process::Command::new(tools.path().join("bin/pip"))
        .args(["install", "--quiet", "--no-index", "--find-links"])
        .arg(wheels)
        .arg("django"));
    run(
        std::process::Command::new(tools.path().join("bin/django-admin"))
            .args(["startproject", "mysite"])
            .arg(dev),
    );
    let settings = dev.join("mysite/settings.py");
    let text = std::fs::read_to_string(&settings).expect("settings")
        + "\nALLOWED_HOSTS = ['127.0.0.1', 'localhost']\nSTATIC_ROOT = BASE_DIR / 'static'\n";
    std::fs::write(&settings, text).expect("settings");
    std::fs::write(dev.join("requirements.txt"), "django>=5.2,<6\ngunicorn\n").expect("reqs");
    std::fs::write(dev.join(".gitignore"), ".venv/\nstatic/\ndb.sqlite3\n").expect("ignore");
    std::fs::write(
        dev.join("Procfile"),
        "web: gunicorn mysite.wsgi --bind 127.0.0.1:$PORT --workers 2\n\
         release: python manage.py migrate --noinput\n",
    )
    .expect("Procfile");
    django_view(dev, "v1");
}

fn django_view(dev: &Path, version: &str) {
    std::fs::write(
        dev.join("mysite/urls.py"),
        format!(
            "from django.http import HttpResponse\nfrom django.urls import path\n\n\
             def hello(request):\n    return HttpResponse('hello {version}')\n\n\
             urlpatterns = [path('', hello)]\n"
        ),
    )
    .expect("urls");
}

/// An app whose one migration fails, added to `INSTALLED_APPS`.
fn django_broken_migration(dev: &Path) {
    let app = dev.join("broken");
    std::fs::create_dir_all(app.join("migrations")).expect("app");
    std::fs::write(app.join("__init__.py"), "").expect("init");
    std::fs::write(app.join("migrations/__init__.py"), "").expect("init");
    std::fs::write(
        app.join("migrations/0001_initial.py"),
        "from django.db import migrations\n\n\
         def fail(apps, schema_editor):\n    raise RuntimeError('this migration fails')\n\n\
         class Migration(migrations.Migration):\n    initial = True\n    dependencies = []\n\
         \x20   operations = [migrations.RunPython(fail)]\n",
    )
    .expect("migration");
    let settings = dev.join("mysite/settings.py");
    let text =
        std::fs::read_to_string(&settings).expect("settings") + "\nINSTALLED_APPS += ['broken']\n";
    std::fs::write(&settings, text).expect("settings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_django_app_deploys_as_its_readme_says_and_a_broken_migration_rolls_back() {
    let wheels = wheels();
    let root = TempDir::new().expect("temp dir");
    let r = root.path();
    let dev = origin_with(r, |dev| django_project(dev, &wheels));
    let port = common::shop::free_port();
    let wheels = wheels.display();
    procfile_shop(
        r,
        port,
        "path = [\".venv/bin\"]",
        &format!(
            r#"[projects.shop.confinement]
read_only = ["{wheels}"]
[projects.shop.commands]
allow = ["python3", "pip", "python", "sh"]
[projects.shop.deploy]
build = [["python3", "-m", "venv", ".venv"],
         ["pip", "install", "--quiet", "--no-index", "--find-links", "{wheels}", "-r", "requirements.txt"],
         ["python", "manage.py", "collectstatic", "--noinput"]]
ready_timeout = "60s"
settle = "500ms"
"#
        ),
    );
    let bosun = Bosun::start_in(r).await;
    let site = format!("http://127.0.0.1:{port}/");
    // No venv yet, so no gunicorn: the first deploy builds everything.
    deployed(&bosun, json!({ "force": "true" })).await;
    answers(&site, "hello v1").await;
    assert!(
        r.join("shop/static/admin/css/base.css").is_file(),
        "collectstatic ran"
    );
    assert!(
        r.join("shop/db.sqlite3").is_file(),
        "the release phase migrated"
    );

    django_view(&dev, "v2");
    push(&dev, &[]);
    deployed(&bosun, json!({})).await;
    answers(&site, "hello v2").await;
    let serving = running(&bosun, "shop").await;

    django_broken_migration(&dev);
    django_view(&dev, "v3");
    push(&dev, &[]);
    let job = deploy(&bosun, json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["detail"]["rolled_back"], true, "{job}");
    let log = log_of(&bosun, &job).await;
    assert!(log.contains("this migration fails"), "{log}");
    answers(&site, "hello v2").await;
    assert_eq!(running(&bosun, "shop").await, serving);
    bosun.stop().await;
}

/// The Express app `express-generator` makes (from the npm registry), with
/// a route answering `hello <version>` and a lock file for `npm ci`.
fn express_project(dev: &Path) {
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.current_dir(dev).output().expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(std::process::Command::new("npx").args([
        "--yes",
        "express-generator@4",
        "--no-view",
        "--force",
        ".",
    ]));
    run(std::process::Command::new("npm").args([
        "install",
        "--package-lock-only",
        "--no-audit",
        "--no-fund",
    ]));
    std::fs::write(dev.join(".gitignore"), "node_modules/\n.npm/\n").expect("ignore");
    std::fs::write(dev.join("Procfile"), "web: node ./bin/www\n").expect("Procfile");
    express_route(dev, "v1");
}

fn express_route(dev: &Path, version: &str) {
    std::fs::write(
        dev.join("routes/index.js"),
        format!(
            "var express = require('express');\nvar router = express.Router();\n\
             router.get('/hello', function(req, res) {{ res.send('hello {version}'); }});\n\
             module.exports = router;\n"
        ),
    )
    .expect("route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_express_app_deploys_with_its_own_npm_ci_and_a_crashing_commit_rolls_back() {
    let root = TempDir::new().expect("temp dir");
    let r = root.path();
    let dev = origin_with(r, express_project);
    let port = common::shop::free_port();
    procfile_shop(
        r,
        port,
        "path = [\"node_modules/.bin\"]",
        "[projects.shop.commands]\nallow = [\"npm\", \"sh\"]\n\
         [projects.shop.deploy]\nbuild = [[\"npm\", \"ci\", \"--no-audit\", \"--no-fund\"]]\n\
         ready_timeout = \"60s\"\nsettle = \"500ms\"\n",
    );
    let bosun = Bosun::start_in(r).await;
    let hello = format!("http://127.0.0.1:{port}/hello");

    deployed(&bosun, json!({ "force": "true" })).await;
    answers(&hello, "hello v1").await;
    assert!(r.join("shop/node_modules/express/package.json").is_file());

    express_route(&dev, "v2");
    push(&dev, &[]);
    deployed(&bosun, json!({})).await;
    answers(&hello, "hello v2").await;

    // A commit whose app does not start: rolled back, v2 serves again.
    push(
        &dev,
        &[("app.js", "throw new Error('this app does not start');\n")],
    );
    let job = deploy(&bosun, json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["detail"]["rolled_back"], true, "{job}");
    answers(&hello, "hello v2").await;
    bosun.stop().await;
}
