//! Push to deploy: a real bare origin a developer's clone pushes to, a
//! real Python app bosun supervises, and each forge's push payload, signed
//! the way that forge signs it, sent to `POST /hooks/shop`.
//!
//! - every forge (GitHub in JSON and in form encoding, GitLab, Gitea,
//!   Forgejo, Bitbucket) deploys the commit it names, even when the branch
//!   has moved on since;
//! - every other delivery gets its exact status and verdict: a wrong, a
//!   missing or no proof at all, an unknown project, a ping, a tag, a
//!   deleted or unwatched branch, another event, a 30 MiB body, a
//!   redelivery, a replayed body, a commit already deployed, pushes that
//!   replace a queued deploy, an action that takes no `target`, and a
//!   tenant whose failures brake only its own webhook;
//! - the deliveries log lists each, and only to keys that see the project;
//! - the test push on each forge's page of the docs, run as written, is
//!   accepted and deploys.

mod common;

use std::path::PathBuf;

use common::server::{ADMIN, Api, Bosun, admin_config, hash};
use common::shop::{commit_app, free_port, origin_and_dev, serving};
use common::{git, until, write_private};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use tempfile::TempDir;

const SHOP_SECRET: &str = "It's a Secret to Everybody";
const CAFE_SECRET: &str = "cafe-hook-secret-0123456789";
/// A key that reads project cafe only.
const CAFE_READER: &str = "bsk_test_cafe_reader";
const ZERO: &str = "0000000000000000000000000000000000000000";

/// The origin, the developer's clone, and the config: `shop` (deployed by
/// its webhook, branches `main` and `release/*`), `cafe` (a webhook whose
/// action takes no `target`) and `plain` (no webhook).
struct Forge {
    root: TempDir,
    port: u16,
}

impl Forge {
    fn new() -> Self {
        let root = TempDir::new().expect("temp dir");
        let r = root.path();
        origin_and_dev(r);
        let port = free_port();
        let text = format!(
            r#"{head}
[[keys]]
name = "cafe-reader"
hash = "{reader}"
projects = ["cafe"]
role = "read"

[projects.shop]
dir = "shop"
actions = ["deploy", "status"]
[projects.shop.git]
clone = "./origin.git"
branch = "main"
[projects.shop.commands]
allow = ["python3"]
[projects.shop.deploy]
build = [["python3", "build.py"]]
ready_timeout = "20s"
settle = "300ms"
[projects.shop.webhook]
secret_file = "shop.secret"
branches = ["main", "release/*"]
[[projects.shop.processes]]
name = "web"
command = "python3"
args = ["app.py"]
sockets = ["127.0.0.1:{port}"]
ready = {{ http = "/", timeout = "20s" }}

[projects.cafe]
dir = "cafe"
actions = ["status"]
[projects.cafe.webhook]
secret_file = "cafe.secret"
branches = ["*"]
action = "status"

[projects.plain]
dir = "plain"
actions = ["status"]
"#,
            head = admin_config("auth_fail_limit = 4\nauth_fail_window = \"10m\""),
            reader = hash(CAFE_READER),
        );
        std::fs::write(r.join("bosun.toml"), text).expect("config");
        for (file, secret) in [("shop.secret", SHOP_SECRET), ("cafe.secret", CAFE_SECRET)] {
            write_private(&r.join(file), &format!("{secret}\n"));
        }
        for dir in ["cafe", "plain"] {
            std::fs::create_dir(r.join(dir)).expect("project dir");
        }
        let forge = Self { root, port };
        forge.commit("v0");
        forge
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Commit version `version` of the app and push it to `main`; returns
    /// the revision.
    fn commit(&self, version: &str) -> String {
        commit_app(&self.path("dev"), version, &[])
    }

    /// What the app answers: `<pid> <version>`.
    async fn serving(&self) -> String {
        serving(self.port).await
    }

    /// Wait until the app serves `version`.
    async fn until_serving(&self, version: &str) {
        until(&format!("the app serves {version}"), async || {
            let answer = reqwest::get(format!("http://127.0.0.1:{}/", self.port))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            answer.trim().ends_with(version).then_some(())
        })
        .await;
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn form(json: &str) -> String {
    format!("payload={}", url_escape(json))
}

/// `application/x-www-form-urlencoded` escaping, as forges send it.
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A delivery: headers and body, as a forge sends it.
struct Delivery {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// GitHub's push (or `event`) with `payload`, in JSON.
fn github(event: &str, id: &str, payload: &Value, secret: &str) -> Delivery {
    let body = payload.to_string().into_bytes();
    Delivery {
        headers: vec![
            ("X-GitHub-Event", event.into()),
            ("X-GitHub-Delivery", id.into()),
            (
                "X-Hub-Signature-256",
                format!("sha256={}", hmac_hex(secret, &body)),
            ),
            ("Content-Type", "application/json".into()),
        ],
        body,
    }
}

/// GitHub's push in its default form encoding: the signature covers the
/// form body as sent.
fn github_form(id: &str, payload: &Value) -> Delivery {
    let body = form(&payload.to_string()).into_bytes();
    Delivery {
        headers: vec![
            ("X-GitHub-Event", "push".into()),
            ("X-GitHub-Delivery", id.into()),
            (
                "X-Hub-Signature-256",
                format!("sha256={}", hmac_hex(SHOP_SECRET, &body)),
            ),
            ("Content-Type", "application/x-www-form-urlencoded".into()),
        ],
        body,
    }
}

/// GitLab's push: the secret itself in `X-Gitlab-Token`.
fn gitlab(id: &str, before: &str, after: &str) -> Delivery {
    let payload = json!({
        "object_kind": "push", "event_name": "push",
        "before": before, "after": after, "ref": "refs/heads/main",
        "checkout_sha": after, "user_name": "Dev",
        "project": { "path_with_namespace": "acme/shop", "default_branch": "main" },
        "commits": [], "total_commits_count": 1,
    });
    Delivery {
        headers: vec![
            ("X-Gitlab-Event", "Push Hook".into()),
            ("X-Gitlab-Token", SHOP_SECRET.into()),
            ("X-Gitlab-Event-UUID", id.into()),
            ("Content-Type", "application/json".into()),
        ],
        body: payload.to_string().into_bytes(),
    }
}

/// Gitea's push: bare hex HMAC, and GitHub's event header beside its own.
fn gitea(id: &str, before: &str, after: &str) -> Delivery {
    let body = push_payload("refs/heads/main", before, after)
        .to_string()
        .into_bytes();
    Delivery {
        headers: vec![
            ("X-Gitea-Event", "push".into()),
            ("X-GitHub-Event", "push".into()),
            ("X-Gitea-Delivery", id.into()),
            ("X-Gitea-Signature", hmac_hex(SHOP_SECRET, &body)),
            ("Content-Type", "application/json".into()),
        ],
        body,
    }
}

/// Forgejo's push in form mode: the signature covers the JSON inside.
fn forgejo_form(id: &str, before: &str, after: &str) -> Delivery {
    let json = push_payload("refs/heads/main", before, after).to_string();
    Delivery {
        headers: vec![
            ("X-Forgejo-Event", "push".into()),
            ("X-Gitea-Event", "push".into()),
            ("X-Forgejo-Delivery", id.into()),
            (
                "X-Forgejo-Signature",
                hmac_hex(SHOP_SECRET, json.as_bytes()),
            ),
            ("Content-Type", "application/x-www-form-urlencoded".into()),
        ],
        body: form(&json).into_bytes(),
    }
}

/// Bitbucket Cloud's `repo:push`: one change per ref.
fn bitbucket(id: &str, before: &str, after: &str) -> Delivery {
    let target = |hash: &str| json!({ "type": "branch", "name": "main", "target": { "hash": hash, "type": "commit" } });
    let payload = json!({
        "push": { "changes": [
            { "old": { "type": "tag", "name": "v1", "target": { "hash": before } }, "new": null,
              "forced": false, "created": false, "closed": true },
            { "old": target(before), "new": target(after),
              "forced": false, "created": false, "closed": false },
        ] },
        "repository": { "full_name": "acme/shop", "type": "repository" },
        "actor": { "display_name": "Dev" },
    });
    let body = payload.to_string().into_bytes();
    Delivery {
        headers: vec![
            ("X-Event-Key", "repo:push".into()),
            ("X-Request-UUID", id.into()),
            (
                "X-Hub-Signature",
                format!("sha256={}", hmac_hex(SHOP_SECRET, &body)),
            ),
            ("Content-Type", "application/json".into()),
        ],
        body,
    }
}

/// Makes a forge's push delivery: (delivery id, before, after).
type Sender = dyn Fn(&str, &str, &str) -> Delivery;

/// A push payload as GitHub (and Gitea, Forgejo) send it.
fn push_payload(git_ref: &str, before: &str, after: &str) -> Value {
    json!({
        "ref": git_ref, "before": before, "after": after,
        "created": before == ZERO, "deleted": after == ZERO, "forced": false,
        "repository": { "full_name": "acme/shop", "default_branch": "main" },
        "pusher": { "name": "dev" }, "head_commit": { "id": after },
    })
}

async fn send(api: &Api, project: &str, d: &Delivery) -> (StatusCode, Value) {
    let mut req = api
        .req(Method::POST, &format!("/hooks/{project}"), None)
        .body(d.body.clone());
    for (name, value) in &d.headers {
        req = req.header(*name, value);
    }
    let resp = req.send().await.expect("delivery sent");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Post a GitHub push to shop that declares `length` bytes and sends none
/// of them; returns the raw answer.
async fn declared_only(url: &str, length: usize) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /hooks/shop HTTP/1.1\r\nHost: {addr}\r\nX-GitHub-Event: push\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.expect("head");
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.expect("answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Send `d`; it must be accepted. Returns the job's id.
async fn accepted(api: &Api, d: &Delivery) -> String {
    let (status, body) = send(api, "shop", d).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["verdict"], "accepted", "{body}");
    let id = body["job_id"].as_str().expect("a job id").to_string();
    assert_eq!(body["job_url"], format!("/v1/jobs/{id}"), "{body}");
    id
}

/// Send `d`; it must answer `status` with `verdict`. Returns the answer.
async fn answered(
    api: &Api,
    project: &str,
    d: &Delivery,
    status: StatusCode,
    verdict: &str,
) -> Value {
    let (got, body) = send(api, project, d).await;
    assert_eq!(got, status, "{body}");
    if !verdict.is_empty() {
        assert_eq!(body["verdict"], verdict, "{body}");
    }
    body
}

async fn succeeded(api: &Api, id: &str) -> Value {
    let job = api.finished(id).await;
    if job["state"] != "succeeded" {
        let log = api.get_text(&format!("/v1/jobs/{id}/log"), ADMIN).await;
        panic!("job {id} did not succeed: {job}\n{log}");
    }
    job
}

#[tokio::test(flavor = "multi_thread")]
async fn every_forge_deploys_the_commit_it_pushed() {
    let forge = Forge::new();
    let bosun = Bosun::start_in(forge.root.path()).await;
    forge.until_serving("v0").await;
    let mut before = git(&forge.path("dev"), &["rev-parse", "HEAD"]);
    let senders: [(&str, &Sender); 6] = [
        ("github", &|id, b, a| {
            github(
                "push",
                id,
                &push_payload("refs/heads/main", b, a),
                SHOP_SECRET,
            )
        }),
        ("github", &|id, b, a| {
            github_form(id, &push_payload("refs/heads/main", b, a))
        }),
        ("gitlab", &gitlab),
        ("gitea", &gitea),
        ("forgejo", &forgejo_form),
        ("bitbucket", &bitbucket),
    ];
    for (i, (name, make)) in senders.iter().enumerate() {
        let version = format!("v{}", i + 1);
        let after = forge.commit(&version);
        let id = accepted(&bosun, &make(&format!("{name}-{i}"), &before, &after)).await;
        let job = succeeded(&bosun, &id).await;
        assert_eq!(job["requested_by"], format!("webhook:{name}"), "{job}");
        assert_eq!(job["params"]["target"], after, "{job}");
        forge.until_serving(&version).await;
        before = after;
    }
    // The commit pushed, not whatever the branch is now.
    let pushed = forge.commit("v7");
    forge.commit("v8");
    let id = accepted(&bosun, &gitea("late", &before, &pushed)).await;
    succeeded(&bosun, &id).await;
    assert!(
        forge.serving().await.ends_with("v7"),
        "{}",
        forge.serving().await
    );
    // A new secret is a reload: deliveries signed with the old one are
    // refused from then on.
    write_private(&forge.path("shop.secret"), "a-brand-new-secret-for-shop\n");
    let reload = bosun.post("/v1/reload", ADMIN).await;
    assert_eq!(reload.status(), StatusCode::OK);
    let payload = push_payload("refs/heads/main", ZERO, &pushed);
    let old = github("push", "rotated-old", &payload, SHOP_SECRET);
    answered(&bosun, "shop", &old, StatusCode::UNAUTHORIZED, "").await;
    let new = github(
        "push",
        "rotated-new",
        &payload,
        "a-brand-new-secret-for-shop",
    );
    let body = answered(&bosun, "shop", &new, StatusCode::ACCEPTED, "ignored").await;
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or("")
            .contains("already deployed"),
        "{body}"
    );
    bosun.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_delivery_gets_its_exact_status_and_verdict() {
    let forge = Forge::new();
    let bosun = Bosun::start_in(forge.root.path()).await;
    forge.until_serving("v0").await;
    let v0 = git(&forge.path("dev"), &["rev-parse", "HEAD"]);
    let push = |id: &str, git_ref: &str, before: &str, after: &str| {
        github(
            "push",
            id,
            &push_payload(git_ref, before, after),
            SHOP_SECRET,
        )
    };

    // No proof, a wrong one, no forge at all: a generic 401 that never
    // says what was expected.
    let mut wrong = push("wrong", "refs/heads/main", &v0, &v0);
    wrong.headers[2].1 = format!("sha256={}", hmac_hex("guess", &wrong.body));
    let expected = hmac_hex(SHOP_SECRET, &wrong.body);
    let body = answered(&bosun, "shop", &wrong, StatusCode::UNAUTHORIZED, "").await;
    assert_eq!(body["error"]["code"], "bad_signature", "{body}");
    assert!(!body.to_string().contains(&expected), "{body}");
    let mut unsigned = push("unsigned", "refs/heads/main", &v0, &v0);
    unsigned.headers.remove(2);
    answered(&bosun, "shop", &unsigned, StatusCode::UNAUTHORIZED, "").await;
    let anonymous = Delivery {
        headers: vec![],
        body: b"{}".to_vec(),
    };
    answered(&bosun, "shop", &anonymous, StatusCode::UNAUTHORIZED, "").await;
    // No such project, and a project without a webhook, alike.
    let ping = github(
        "ping",
        "ping-1",
        &json!({ "zen": "Keep it logically awesome.", "hook_id": 1 }),
        SHOP_SECRET,
    );
    let nope = answered(&bosun, "nope", &ping, StatusCode::NOT_FOUND, "").await;
    let plain = answered(&bosun, "plain", &ping, StatusCode::NOT_FOUND, "").await;
    assert_eq!(nope["error"]["code"], plain["error"]["code"]);
    // A ping, a tag, a deleted branch, an unwatched one, another event.
    answered(&bosun, "shop", &ping, StatusCode::OK, "ping").await;
    let tag = answered(
        &bosun,
        "shop",
        &push("tag", "refs/tags/v1", ZERO, &v0),
        StatusCode::ACCEPTED,
        "ignored",
    )
    .await;
    assert!(
        tag["reason"].as_str().unwrap_or("").contains("tag"),
        "{tag}"
    );
    let deleted = answered(
        &bosun,
        "shop",
        &push("del", "refs/heads/release/1", &v0, ZERO),
        StatusCode::ACCEPTED,
        "ignored",
    )
    .await;
    assert!(
        deleted["reason"].as_str().unwrap_or("").contains("deleted"),
        "{deleted}"
    );
    let unwatched = answered(
        &bosun,
        "shop",
        &push("feat", "refs/heads/feature/x", &v0, &v0),
        StatusCode::ACCEPTED,
        "ignored",
    )
    .await;
    assert!(
        unwatched["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not one this webhook deploys"),
        "{unwatched}"
    );
    let issues = github(
        "issues",
        "issue-1",
        &json!({ "action": "opened" }),
        SHOP_SECRET,
    );
    answered(&bosun, "shop", &issues, StatusCode::ACCEPTED, "ignored").await;
    // A body of 30 MiB, sent whole: read to its end and refused, so the
    // client gets the answer rather than a reset connection.
    let huge = Delivery {
        headers: vec![("X-GitHub-Event", "push".into())],
        body: vec![b' '; 30 * 1024 * 1024],
    };
    let body = answered(&bosun, "shop", &huge, StatusCode::PAYLOAD_TOO_LARGE, "").await;
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    // One that says it is 1 GiB is refused before any of it is sent.
    let answer = declared_only(&bosun.url, 1 << 30).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    // A delivery refused for its signature may come again, and runs.
    let v1 = forge.commit("v1");
    let good = push("again-1", "refs/heads/main", &v0, &v1);
    let mut bad = push("again-1", "refs/heads/main", &v0, &v1);
    bad.headers[2].1 = format!("sha256={}", "0".repeat(64));
    answered(&bosun, "shop", &bad, StatusCode::UNAUTHORIZED, "").await;
    // The fifth unproven delivery from this address is braked, for shop
    // only; a proven one never is (a stranger's wrong secret, sent from a
    // forge's shared addresses, must not refuse the tenant's own pushes).
    let braked = answered(&bosun, "shop", &bad, StatusCode::TOO_MANY_REQUESTS, "").await;
    assert_eq!(
        braked["error"]["code"], "too_many_auth_failures",
        "{braked}"
    );
    let cafe_push = github(
        "push",
        "cafe-1",
        &push_payload("refs/heads/main", &v0, &v1),
        CAFE_SECRET,
    );
    let refused = answered(
        &bosun,
        "cafe",
        &cafe_push,
        StatusCode::UNPROCESSABLE_ENTITY,
        "",
    )
    .await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("target"),
        "{refused}"
    );
    let status = bosun.get_json("/v1/projects/shop", ADMIN).await;
    assert!(
        status["processes"].is_array(),
        "the API is not braked: {status}"
    );
    // Pushes while a deploy runs: each newer one replaces the queued one.
    write_private(&forge.path("shop/slow"), "");
    let first = accepted(&bosun, &good).await;
    bosun.until_running(&first).await;
    let v2 = forge.commit("v2");
    let second = accepted(&bosun, &push("p2", "refs/heads/main", &v1, &v2)).await;
    let v3 = forge.commit("v3");
    let (status, third) = send(&bosun, "shop", &push("p3", "refs/heads/main", &v2, &v3)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{third}");
    assert_eq!(third["replaced"], json!([second]), "{third}");
    let third = third["job_id"].as_str().expect("job").to_string();
    let replaced = bosun.finished(&second).await;
    assert_eq!(replaced["state"], "cancelled", "{replaced}");
    assert!(
        replaced["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&third),
        "{replaced}"
    );
    std::fs::remove_file(forge.path("shop/slow")).expect("unblock");
    succeeded(&bosun, &first).await;
    succeeded(&bosun, &third).await;
    forge.until_serving("v3").await;

    // The same delivery again, or its body under a new id: the first job.
    let again = answered(
        &bosun,
        "shop",
        &push("p3", "refs/heads/main", &v2, &v3),
        StatusCode::OK,
        "duplicate",
    )
    .await;
    assert_eq!(again["job_id"], third.as_str(), "{again}");
    let replay = answered(
        &bosun,
        "shop",
        &push("p3-replayed", "refs/heads/main", &v2, &v3),
        StatusCode::OK,
        "duplicate",
    )
    .await;
    assert_eq!(replay["job_id"], third.as_str(), "{replay}");
    // Its payload re-signed as Gitea signs (the JSON inside a form, padded
    // with a field of its own) is the same push.
    let json = push_payload("refs/heads/main", &v2, &v3).to_string();
    let resigned = Delivery {
        headers: vec![
            ("X-Gitea-Event", "push".into()),
            ("X-Gitea-Delivery", "resigned".into()),
            ("X-Gitea-Signature", hmac_hex(SHOP_SECRET, json.as_bytes())),
            ("Content-Type", "application/x-www-form-urlencoded".into()),
        ],
        body: format!("{}&pad=1", form(&json)).into_bytes(),
    };
    let resigned = answered(&bosun, "shop", &resigned, StatusCode::OK, "duplicate").await;
    assert_eq!(resigned["job_id"], third.as_str(), "{resigned}");
    // Another push of the commit that runs now: nothing to do.
    let current = answered(
        &bosun,
        "shop",
        &push("p4", "refs/heads/release/2", &v1, &v3),
        StatusCode::ACCEPTED,
        "ignored",
    )
    .await;
    assert!(
        current["reason"]
            .as_str()
            .unwrap_or("")
            .contains("already deployed"),
        "{current}"
    );
    // The first delivery of all, refused for its signature, redelivered
    // after newer pushes to main were accepted: it must not take main back
    // to v0. Replayed under a new id, it is a duplicate of that redelivery.
    let late = [
        ("wrong", StatusCode::ACCEPTED, "ignored"),
        ("wrong-again", StatusCode::OK, "duplicate"),
    ];
    for (id, status, verdict) in late {
        let push = push(id, "refs/heads/main", &v0, &v0);
        let late = answered(&bosun, "shop", &push, status, verdict).await;
        let why = late["reason"].as_str().unwrap_or("");
        assert!(why.contains("a newer push"), "{late}");
    }

    // The log: every delivery, newest first, to keys that see the project.
    let log = bosun
        .get_json("/v1/projects/shop/deliveries?limit=500", ADMIN)
        .await;
    let verdicts: Vec<&str> = log["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["verdict"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        verdicts,
        [
            "duplicate",
            "ignored",
            "ignored",
            "duplicate",
            "duplicate",
            "duplicate",
            "accepted",
            "accepted",
            "accepted",
            "bad_signature",
            "bad_signature",
            "ignored",
            "ignored",
            "ignored",
            "ignored",
            "ping",
            "bad_signature",
            "bad_signature",
            "bad_signature",
        ],
        "{log}"
    );
    let newest = &log["deliveries"][2];
    assert_eq!(newest["forge"], "github", "{newest}");
    assert_eq!(newest["ref"], "refs/heads/release/2", "{newest}");
    assert_eq!(newest["after"], v3.as_str(), "{newest}");
    let accepted_row = &log["deliveries"][6];
    assert_eq!(accepted_row["job_id"], third.as_str(), "{accepted_row}");
    let other = bosun
        .req(
            Method::GET,
            "/v1/projects/shop/deliveries",
            Some(CAFE_READER),
        )
        .send()
        .await
        .expect("GET");
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let cafe_log = bosun
        .get_json("/v1/projects/cafe/deliveries", CAFE_READER)
        .await;
    assert_eq!(
        cafe_log["deliveries"][0]["verdict"], "refused",
        "{cafe_log}"
    );
    bosun.stop().await;
}

/// The `sh` blocks of `doc` that post to the hook.
fn test_pushes(doc: &str) -> Vec<String> {
    let text = std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
    text.split("```sh\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("\n```").map(|(block, _)| block.to_string()))
        .filter(|block| block.contains("/hooks/shop"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_forge_pages_test_push_deploys_as_written() {
    let forge = Forge::new();
    let bosun = Bosun::start_in(forge.root.path()).await;
    forge.until_serving("v0").await;
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let pages = [
        "webhooks.md",
        "webhooks/github.md",
        "webhooks/gitlab.md",
        "webhooks/gitea.md",
        "webhooks/bitbucket.md",
    ];
    let secret = forge.path("shop.secret");
    for (i, page) in pages.iter().enumerate() {
        let blocks = test_pushes(&docs.join(page).to_string_lossy());
        assert_eq!(blocks.len(), 1, "{page} has one test push");
        let version = format!("doc-{i}");
        forge.commit(&version);
        // As written, but against this bosun and this secret file.
        let script = blocks[0]
            .replace("https://bosun.example.com", &bosun.url)
            .replace("/etc/bosun/shop-hook.secret", &secret.to_string_lossy())
            .replace("shop-hook.secret", &secret.to_string_lossy());
        let out = std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(forge.path("dev"))
            .output()
            .expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{page}: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{page}: {e}: {stdout}"));
        assert_eq!(answer["verdict"], "accepted", "{page}: {answer}");
        let id = answer["job_id"].as_str().expect("a job").to_string();
        succeeded(&bosun, &id).await;
        forge.until_serving(&version).await;
    }
    bosun.stop().await;
}
