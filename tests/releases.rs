//! The release layout (`[projects.<p>.deploy] releases = N`): a real
//! Python app served from `current`, deployed from a real bare origin a
//! developer's clone pushes to, under load from 4 clients throughout.
//!
//! - the first boot makes the first release; `deploy` of a good commit,
//!   of one whose app exits at once (switched back, nothing rebuilt) and
//!   of one whose build fails (never switched to); `rollback`; each fails
//!   no request;
//! - the kept releases are exactly the newest N, shared paths are one
//!   inode in every release, `status` lists the releases;
//! - a bosun killed mid-deploy leaves `current` at a complete release,
//!   which the next boot serves, and the next deploy clears the leftover;
//! - a tenant's links cannot make a deploy write outside its project.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use common::load::Load;
use common::server::{ADMIN, Api, Bosun, BosunProcess, admin_config};
use common::shop::{commit_app, free_port, origin_and_dev, pids, serving};
use common::until;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

/// A bare `origin.git`, a developer's clone `dev` pushing to its `main`,
/// and a config for project `shop` deployed from it in releases. The
/// project dir does not exist: the first boot makes it.
struct Origin {
    root: TempDir,
    port: u16,
}

impl Origin {
    fn new(keep: u32) -> Self {
        let root = TempDir::new().expect("temp dir");
        let r = root.path();
        origin_and_dev(r);
        let port = free_port();
        let text = format!(
            r#"{head}
[projects.shop]
dir = "shop"
actions = ["deploy", "rollback", "status"]
merged_log = "state/logs/shop.log"
[projects.shop.git]
clone = "./origin.git"
branch = "main"
[projects.shop.commands]
allow = ["python3"]
[projects.shop.deploy]
build = [["python3", "build.py"]]
ready_timeout = "20s"
settle = "500ms"
releases = {keep}
shared = [".env", "uploads/"]
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
        let origin = Self { root, port };
        origin.commit("v1", &[]);
        origin
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Commit and push version `version` (see [`commit_app`]).
    fn commit(&self, version: &str, extra: &[(&str, &str)]) -> String {
        commit_app(&self.path("dev"), version, extra)
    }

    /// The release `current` names.
    fn current(&self) -> String {
        let link = std::fs::read_link(self.path("shop/current")).expect("current is a link");
        let name = link
            .strip_prefix("releases")
            .expect("current names a release");
        name.to_string_lossy().into_owned()
    }

    /// The release dirs, sorted (oldest first).
    fn releases(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("shop/releases"))
            .expect("releases dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// What the app answers: `<pid> <version>`.
    async fn serving(&self) -> String {
        serving(self.port).await
    }
}

/// Run `action` with `params` and wait for its end.
async fn run(api: &Api, action: &str, params: Value) -> Value {
    let (status, job) = api.run("shop", action, "?wait=120s", params, ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_and_a_rollback_in_the_release_layout_fail_no_request() {
    let origin = Origin::new(2);
    let bosun = Bosun::start_in(origin.root.path()).await;
    pids(&bosun, 2).await;
    let first = origin.current();
    assert!(origin.serving().await.ends_with(" v1"));
    // One `.env` for every release, made after the first.
    std::fs::write(origin.path("shop/shared/.env"), "GREETING=hello\n").expect(".env");

    let load = Load::start(&format!("http://127.0.0.1:{}", origin.port), ["/", "/"]);
    load.answered(50).await;

    let v2 = origin.commit("v2", &[]);
    let job = run(&bosun, "deploy", json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["to"], v2);
    let second = origin.current();
    assert_eq!(job["result"]["release"], second.as_str());
    assert!(second > first && second.ends_with(&v2[..12]), "{second}");
    assert!(origin.serving().await.ends_with(" v2"));

    // An app that exits at once: switched back to the release serving
    // before, and the failed one deleted.
    origin.commit("v3", &[("crash", "")]);
    let job = run(&bosun, "deploy", json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["detail"]["rolled_back"], true, "{job}");
    assert_eq!(origin.current(), second);
    assert_eq!(origin.releases(), [first.clone(), second.clone()]);
    assert!(origin.serving().await.ends_with(" v2"));

    // A build that fails: never switched to, never restarted onto.
    let serving = pids(&bosun, 2).await;
    origin.commit("v4", &[("app.py", "this is not python (")]);
    let job = run(&bosun, "deploy", json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    let reason = job["error"]["detail"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("build step `python3 build.py` exited with 1"),
        "{job}"
    );
    assert_eq!(origin.releases(), [first.clone(), second.clone()]);
    assert_eq!(pids(&bosun, 2).await, serving);

    // Back to the release before, with no build.
    let job = run(&bosun, "rollback", json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["to"], first.as_str());
    assert_eq!(origin.current(), first);
    assert!(origin.serving().await.ends_with(" v1"));

    // A good deploy again: the oldest release is pruned, 2 kept.
    let v5 = origin.commit("v5", &[]);
    let job = run(&bosun, "deploy", json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let fifth = origin.current();
    assert_eq!(job["result"]["pruned"], json!([first]), "{job}");
    assert_eq!(origin.releases(), [second.clone(), fifth.clone()]);

    // Rolling back to a release by its revision, then forward again by name.
    let job = run(&bosun, "rollback", json!({ "target": &v2[..8] })).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(origin.current(), second);
    let job = run(&bosun, "rollback", json!({ "target": fifth })).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let job = run(&bosun, "rollback", json!({ "target": "0000000" })).await;
    assert_eq!(job["state"], "failed", "{job}");
    let message = job["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no kept release `0000000`"), "{job}");

    // Shared paths are one file and one dir, whatever the release.
    let inode = |p: PathBuf| std::fs::metadata(&p).expect("shared path").ino();
    for shared in [".env", "uploads"] {
        let one = inode(origin.path("shop/shared").join(shared));
        for release in origin.releases() {
            let path = origin.path("shop/releases").join(release).join(shared);
            assert_eq!(inode(path), one, "{shared}");
        }
    }

    let job = run(&bosun, "status", json!({})).await;
    let listed = &job["result"]["releases"];
    assert_eq!(listed[0]["name"], fifth.as_str(), "{job}");
    assert_eq!(listed[0]["current"], true, "{job}");
    assert_eq!(listed[0]["revision"], v5, "{job}");
    assert_eq!(listed[1]["name"], second.as_str(), "{job}");
    assert_eq!(listed[1]["current"], false, "{job}");
    assert_eq!(job["result"]["git"]["revision"], v5, "{job}");
    load.answered(50).await;
    load.none_failed().await;
    bosun.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bosun_killed_mid_deploy_leaves_a_complete_current_that_the_next_boot_serves() {
    let origin = Origin::new(3);
    let mut bosun = BosunProcess::start(origin.root.path());
    pids(&bosun, 2).await;
    let first = origin.current();

    // A deploy whose build takes until bosun is gone.
    origin.commit("v2", &[("slow", "")]);
    let resp = bosun
        .req(
            reqwest::Method::POST,
            "/v1/projects/shop/actions/deploy",
            Some(ADMIN),
        )
        .json(&json!({}))
        .send()
        .await
        .expect("deploy");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    until("the new release being built", async || {
        (origin.releases().len() == 2).then_some(())
    })
    .await;
    bosun.kill();

    assert_eq!(origin.current(), first);
    let current = origin.path("shop/current");
    assert!(current.join("app.py").is_file() && current.join(".git").is_dir());
    let bosun = BosunProcess::start(origin.root.path());
    pids(&bosun, 2).await;
    assert!(origin.serving().await.ends_with(" v1"));

    // The next deploy goes on from there, and the half-done release goes.
    origin.commit("v3", &[]);
    let job = run(&bosun, "deploy", json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(origin.serving().await.ends_with(" v3"));
    assert_eq!(origin.releases(), [first, origin.current()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_links_cannot_make_a_deploy_write_outside_its_project() {
    let origin = Origin::new(2);
    let bosun = Bosun::start_in(origin.root.path()).await;
    pids(&bosun, 2).await;
    let first = origin.current();
    let victim = origin.path("victim");
    std::fs::create_dir(&victim).expect("victim dir");

    // The tenant swaps its `releases` dir, then its `shared` dir, for a
    // link to another dir: bosun's own reads refuse the first, the
    // project's confinement the second.
    let empty = || std::fs::read_dir(&victim).expect("victim").count() == 0;
    origin.commit("v2", &[]);
    for dir in ["releases", "shared"] {
        let path = origin.path("shop").join(dir);
        let aside = origin.path("shop").join(format!("{dir}.aside"));
        std::fs::rename(&path, &aside).expect("move");
        std::os::unix::fs::symlink(&victim, &path).expect("link");
        let job = run(&bosun, "deploy", json!({})).await;
        assert_eq!(job["state"], "failed", "{job}");
        assert!(empty(), "the deploy wrote outside the project");
        std::fs::remove_file(&path).expect("unlink");
        std::fs::rename(&aside, &path).expect("move back");
    }
    assert_eq!(origin.releases(), std::slice::from_ref(&first));

    // `current` pointing out of the project: bosun lists no current
    // release, and the rollback refuses rather than guess.
    let current = origin.path("shop/current");
    std::fs::remove_file(&current).expect("unlink current");
    std::os::unix::fs::symlink(&victim, &current).expect("link current");
    let job = run(&bosun, "status", json!({})).await;
    let listed = job["result"]["releases"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(listed.iter().all(|r| r["current"] == false), "{job}");
    let job = run(&bosun, "rollback", json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");

    // A FIFO for a release's `HEAD`, a huge sparse one for another's, and
    // a release-like name that is not ASCII: bosun neither hangs, nor
    // reads them whole, nor panics.
    let head = origin.path("shop/releases").join(&first).join(".git/HEAD");
    std::fs::remove_file(&head).expect("rm HEAD");
    let made = std::process::Command::new("mkfifo")
        .arg(&head)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let odd = origin.path("shop/releases/1234567\u{e9}00000000000-0123456789ab");
    std::fs::create_dir(&odd).expect("odd dir");
    let job = run(&bosun, "status", json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let listed = job["result"]["releases"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed.len(), 1, "{job}");
    assert_eq!(listed[0]["revision"], &first[first.len() - 12..], "{job}");
    std::fs::remove_file(&head).expect("rm FIFO");
    std::fs::File::create(&head)
        .and_then(|f| f.set_len(1 << 36))
        .expect("sparse HEAD");
    let job = run(&bosun, "status", json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");

    // A deploy puts `current` right again.
    let job = run(&bosun, "deploy", json!({})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_ne!(origin.current(), first);
    assert!(origin.serving().await.ends_with(" v2"));
    assert!(empty());
    bosun.stop().await;
}

/// In place, `update` and `reset` still work; in releases they refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_never_changed_in_place() {
    let origin = Origin::new(2);
    let config = origin.path("bosun.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "actions = [\"deploy\", \"rollback\", \"status\"]",
        "actions = [\"update\", \"rollback\"]",
    );
    std::fs::write(&config, text).expect("config");
    let bosun = Bosun::start_in(origin.root.path()).await;
    pids(&bosun, 2).await;
    let job = run(&bosun, "update", json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    let message = job["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("never change in place"), "{job}");
    // One release only: nothing to roll back to.
    let job = run(&bosun, "rollback", json!({})).await;
    assert_eq!(job["state"], "failed", "{job}");
    let message = job["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no earlier release"), "{job}");
    assert!(Path::new(&origin.path("shop/current/app.py")).is_file());
    bosun.stop().await;
}
