//! The dashboard in a real browser: headless Chromium (Debian's package)
//! driven through chromedriver, against a real bosun on 127.0.0.1:0 with
//! real processes and real plugins. Each page's screenshot is saved under
//! `target/tmp/dashboard-screenshots/`.
//!
//! What a browser cannot show (a cross-site request's headers, a stolen
//! cookie without its token) is sent with reqwest, as an attacker would.

#[path = "dashboard/browser.rs"]
mod browser;
mod common;

use std::path::Path;

use browser::Browser;
use common::server::{ADMIN, Api, Bosun, admin_config, hash};
use common::{guest_dir, shop, until};
use fantoccini::Locator;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

/// A `read` key on project shop.
const VIEWER: &str = "bsk_test_viewer";
/// A `run` key on project shop only.
const SHOP_OPS: &str = "bsk_test_shop_ops";

/// Two projects: shop (a `web` process, the stock process actions and a
/// `slow` action that prints lines over seconds) and books.
fn config_root() -> TempDir {
    let hostile = guest_dir().join("fixture_hostile.wasm");
    let text = format!(
        r#"{head}
[[keys]]
name = "viewer"
hash = "{viewer}"
projects = ["shop"]
role = "read"

[[keys]]
name = "shop-ops"
hash = "{ops}"
projects = ["shop"]
role = "run"

[projects.shop]
dir = "shop"
[[projects.shop.processes]]
name = "web"
command = "sh"
args = ["-c", "echo web up; exec sleep 1000"]
[projects.shop.actions.status]
[projects.shop.actions.start]
[projects.shop.actions.stop]
[projects.shop.actions.restart]
[projects.shop.actions.slow]
path = {hostile:?}
timeout = "60s"

[projects.books]
dir = "books"
[[projects.books.processes]]
name = "worker"
command = "sleep"
args = ["1000"]
[projects.books.actions.status]
"#,
        head = admin_config("shutdown_grace = \"1s\""),
        viewer = hash(VIEWER),
        ops = hash(SHOP_OPS),
    );
    let root = TempDir::new().expect("temp dir");
    for project in ["shop", "books"] {
        std::fs::create_dir_all(root.path().join(project)).expect("project dir");
    }
    std::fs::write(root.path().join("bosun.toml"), text).expect("config");
    root
}

async fn serve() -> (TempDir, Bosun) {
    let root = config_root();
    let bosun = Bosun::start_in(root.path()).await;
    (root, bosun)
}

/// Sign `browser` in with `key` through the form.
async fn sign_in(browser: &Browser, api: &Api, key: &str) {
    let c = &browser.client;
    browser.open(&api.url, "/").await;
    assert_eq!(
        browser.path().await,
        "/ui/signin",
        "no session: the sign-in form"
    );
    c.find(Locator::Css("#key"))
        .await
        .expect("key field")
        .send_keys(key)
        .await
        .expect("type the key");
    browser.click("form button[type=submit]").await;
    until("the projects page after signing in", async || {
        (browser.path().await == "/").then_some(())
    })
    .await;
}

/// A session opened without a browser: its cookie and CSRF token.
async fn session_of(api: &Api, key: &str) -> (String, String) {
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = no_redirects
        .post(format!("{}/ui/signin", api.url))
        .header("Origin", &api.url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("key={key}"))
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    let page = api
        .req(Method::GET, "/", None)
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's CSRF token")
        .to_string();
    (cookie, csrf)
}

fn pid_of(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_watch_a_restart_live_run_an_action_by_its_form_and_sign_out() {
    let (_root, bosun) = serve().await;
    let browser = Browser::start().await;
    let c = &browser.client;
    browser.open(&bosun.url, "/").await;
    browser.screenshot("sign-in").await;
    sign_in(&browser, &bosun, ADMIN).await;

    // The web process, running, live: restart it and its pid changes in
    // place, without the page reloading.
    let pid_cell = r#"tr[data-row="shop/web-0"] td[data-cell="pid"]"#;
    let first = until("web running with a pid", async || {
        pid_of(&browser.try_text(pid_cell).await?)
    })
    .await;
    assert_eq!(
        browser
            .text(r#"tr[data-row="shop/web-0"] td[data-cell="state"]"#)
            .await,
        "running"
    );
    c.execute("window.stillHere = true;", vec![])
        .await
        .expect("mark the page");
    browser
        .click(r#"tr[data-row="shop/web-0"] button.run[data-action="restart"]"#)
        .await;
    let second = until("a new pid for web, shown live", async || {
        pid_of(&browser.try_text(pid_cell).await?).filter(|p| *p != first)
    })
    .await;
    assert_ne!(first, second);
    let same_page = c
        .execute("return window.stillHere === true;", vec![])
        .await
        .expect("js");
    assert_eq!(same_page, json!(true), "the pid changed without a reload");
    assert_eq!(
        browser
            .text(r#"tr[data-row="shop/web-0"] td[data-cell="restarts"]"#)
            .await,
        "1"
    );
    browser.screenshot("projects").await;
    // books is there too, for this key.
    assert_eq!(browser.count(r#"tr[data-row="books/worker-0"]"#).await, 1);

    // On a phone's screen the page does not scroll sideways (a table may,
    // inside its own box), and the buttons stay reachable.
    c.set_window_size(390, 844).await.expect("a phone's size");
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .expect("js");
    assert_eq!(overflow, json!(0), "the page is wider than a phone");
    browser.screenshot("projects-phone").await;
    c.set_window_size(1280, 1000)
        .await
        .expect("back to a desktop's size");

    // Keyboard: the first Tab reaches "Skip to content", the next ones the
    // navigation, each focusable element in page order.
    browser.open(&bosun.url, "/").await;
    let active = async || {
        c.execute("return document.activeElement.textContent.trim();", vec![])
            .await
            .expect("js")
    };
    c.active_element()
        .await
        .expect("body")
        .send_keys("\u{E004}")
        .await
        .expect("Tab");
    assert_eq!(active().await, json!("Skip to content"));

    browser.open(&bosun.url, "/ui/projects/shop").await;
    browser.screenshot("project").await;

    // Run an action through the form built from its declared params.
    browser
        .open(&bosun.url, "/ui/projects/shop/actions/slow")
        .await;
    assert_eq!(
        c.find(Locator::Css("#param-ms"))
            .await
            .expect("ms")
            .prop("value")
            .await
            .expect("value"),
        Some("50".into()),
        "a param's default fills its field"
    );
    for (field, value) in [
        ("#param-mode", "slow"),
        ("#param-count", "10"),
        ("#param-ms", "600"),
    ] {
        let input = c.find(Locator::Css(field)).await.expect(field);
        input.clear().await.expect("clear");
        input.send_keys(value).await.expect("type");
    }
    browser.screenshot("run-action").await;
    browser.click("form.run-form button[type=submit]").await;
    let job_path = until("the new job's page", async || {
        let p = browser.path().await;
        p.starts_with("/ui/jobs/").then_some(p)
    })
    .await;
    // Lines arrive while it still runs, then its result.
    until("a log line while the job runs", async || {
        let running = browser.try_text("#job-state").await? == "running";
        (running && browser.count("#job-log .line").await >= 1).then_some(())
    })
    .await;
    browser.screenshot("job-running").await;
    until("the job's result", async || {
        browser
            .try_text("#job-result")
            .await
            .filter(|r| r.contains("\"printed\": 10"))
    })
    .await;
    assert_eq!(browser.text("#job-state").await, "succeeded");
    assert_eq!(browser.count("#job-log .line").await, 10);
    assert_eq!(browser.text("#job-log .line").await, "line 0");
    browser.screenshot("job").await;

    // Run again: the same action and params, a new job.
    browser.click("button.run[data-action=slow]").await;
    until("the job run again", async || {
        let p = browser.path().await;
        (p.starts_with("/ui/jobs/") && p != job_path).then_some(())
    })
    .await;
    let jobs = bosun
        .get_json("/v1/jobs?project=shop&action=slow", ADMIN)
        .await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(2));
    assert_eq!(jobs["jobs"][0]["params"], jobs["jobs"][1]["params"]);
    // Cancel it from its page.
    until("the cancel button of the running job", async || {
        (browser.count("#cancel").await == 1).then_some(())
    })
    .await;
    browser.click("#cancel").await;
    until("the job cancelled", async || {
        (browser.try_text("#job-state").await? == "cancelled").then_some(())
    })
    .await;

    // The history, filtered.
    browser.open(&bosun.url, "/ui/jobs?action=slow").await;
    assert_eq!(browser.count("table.jobs tbody tr").await, 2);
    browser.screenshot("jobs").await;
    browser
        .open(&bosun.url, "/ui/jobs?action=slow&limit=1")
        .await;
    assert_eq!(browser.count("table.jobs tbody tr").await, 1);
    browser.click("a[rel=next]").await;
    until("the second page", async || {
        browser.path().await.contains("before=").then_some(())
    })
    .await;
    assert_eq!(browser.count("table.jobs tbody tr").await, 1);

    // A process's log, with a filter; new lines follow live.
    browser
        .open(&bosun.url, "/ui/projects/shop/logs?process=web")
        .await;
    let ups = async || {
        let texts = c
            .execute(
                "return [...document.querySelectorAll('#log .line')].map(l => l.textContent);",
                vec![],
            )
            .await
            .expect("js");
        let texts: Vec<String> = serde_json::from_value(texts).expect("strings");
        texts.iter().filter(|l| l.ends_with("| web up")).count()
    };
    // One line per run of web so far.
    until("web's two lines", async || (ups().await == 2).then_some(())).await;
    let (status, restart) = bosun
        .run(
            "shop",
            "restart",
            "?wait=60s",
            json!({ "name": "web" }),
            ADMIN,
        )
        .await;
    assert_eq!(restart["state"], "succeeded", "{status} {restart}");
    until("the restarted web's line, followed live", async || {
        (ups().await == 3).then_some(())
    })
    .await;
    browser.screenshot("logs").await;
    c.find(Locator::Css("#log-filter"))
        .await
        .expect("filter")
        .send_keys("nothing matches this")
        .await
        .expect("type");
    until("every line hidden by the filter", async || {
        (browser.count("#log .line:not([hidden])").await == 0).then_some(())
    })
    .await;

    browser.open(&bosun.url, "/ui/projects/shop/deploy").await;
    browser.click("button.run[data-action=status]").await;
    until("the status as of a job", async || {
        browser
            .try_text("p.hint")
            .await
            .filter(|t| t.contains("As of the status job"))
    })
    .await;
    browser.screenshot("deploy").await;

    // The session cookie: HttpOnly, SameSite=Strict, not readable by script.
    let cookie = c
        .get_named_cookie("bosun_session")
        .await
        .expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    let seen = c
        .execute("return document.cookie;", vec![])
        .await
        .expect("js");
    assert!(
        !seen.as_str().unwrap_or("").contains("bosun_session"),
        "{seen}"
    );
    let token = cookie.value().to_string();

    // Sign out: the session ends for the browser and for the stolen cookie.
    browser.click("form.signout button[type=submit]").await;
    until("the sign-in form after signing out", async || {
        (browser.path().await == "/ui/signin").then_some(())
    })
    .await;
    let stolen = bosun
        .req(Method::GET, "/v1/projects", None)
        .header("Cookie", format!("bosun_session={token}"))
        .send()
        .await
        .expect("request");
    assert_eq!(stolen.status(), StatusCode::UNAUTHORIZED);
    browser.open(&bosun.url, "/ui/jobs").await;
    assert_eq!(browser.path().await, "/ui/signin");
    let _ = browser.client.clone().close().await;
    bosun.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_key_sees_no_buttons_and_a_key_of_one_project_never_sees_another() {
    let (_root, bosun) = serve().await;
    // This reader prefers the dark scheme: the page follows it.
    let browser = Browser::start_with(&["--force-dark-mode"]).await;
    sign_in(&browser, &bosun, VIEWER).await;
    let background = browser
        .client
        .execute(
            "return getComputedStyle(document.body).backgroundColor;",
            vec![],
        )
        .await
        .expect("js");
    assert_eq!(background, json!("rgb(21, 23, 26)"), "the dark palette");
    until("web in the viewer's table", async || {
        browser
            .try_text(r#"tr[data-row="shop/web-0"] td[data-cell="state"]"#)
            .await
            .filter(|s| s == "running")
    })
    .await;
    assert_eq!(
        browser.count("button.run").await,
        0,
        "a read key gets no action buttons"
    );
    assert_eq!(browser.count(r#"tr[data-row^="books/"]"#).await, 0);
    browser.screenshot("read-key").await;
    let _ = browser.client.clone().close().await;

    // Posting anyway, with the session and its token: the API's 403.
    let (cookie, csrf) = session_of(&bosun, VIEWER).await;
    let post = bosun
        .req(Method::POST, "/v1/projects/shop/actions/restart", None)
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .header("Origin", &bosun.url)
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), StatusCode::FORBIDDEN);
    let body: Value = post.json().await.expect("json");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");

    // A key of shop: every way to books is refused, and no page names it.
    let (cookie, _) = session_of(&bosun, SHOP_OPS).await;
    let (_, shop_job) = bosun
        .run("shop", "status", "?wait=30s", json!({}), ADMIN)
        .await;
    let (_, books_job) = bosun
        .run("books", "status", "?wait=30s", json!({}), ADMIN)
        .await;
    let books_id = books_job["id"].as_str().expect("id");
    // Paging from another project's job finds nothing, as from an unknown
    // id: `before` tells neither its existence nor its age.
    let before = async |id: &str| {
        let page = bosun
            .get_json(&format!("/v1/jobs?before={id}"), SHOP_OPS)
            .await;
        page["jobs"].as_array().map(Vec::len)
    };
    assert_eq!(before(books_id).await, Some(0));
    assert_eq!(before("no-such-job").await, Some(0));
    let newest = bosun
        .run("shop", "status", "?wait=30s", json!({}), ADMIN)
        .await
        .1;
    let older = bosun
        .get_json(
            &format!("/v1/jobs?before={}", newest["id"].as_str().expect("id")),
            SHOP_OPS,
        )
        .await;
    assert_eq!(older["jobs"][0]["id"], shop_job["id"], "{older}");
    let get = async |path: &str| {
        let resp = bosun
            .req(Method::GET, path, None)
            .header("Cookie", &cookie)
            .send()
            .await
            .expect("get");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    };
    for path in [
        "/ui/projects/books".to_string(),
        "/ui/projects/books/logs".into(),
        "/ui/projects/books/deploy".into(),
        "/ui/projects/books/actions/status".into(),
        "/ui/jobs?project=books".into(),
        "/ui/live?project=books".into(),
        "/v1/projects/books".into(),
    ] {
        let (status, _) = get(&path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, _) = get(&format!(
        "/ui/jobs/{}",
        books_job["id"].as_str().expect("id")
    ))
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another project's job is not found"
    );
    for path in ["/", "/ui/jobs"] {
        let (status, page) = get(path).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("shop"), "{path}");
        assert!(
            !page.contains("books"),
            "{path} names another project: {page}"
        );
    }
    bosun.stop().await;
}

#[tokio::test]
async fn a_cross_site_request_is_refused_and_pages_forbid_framing() {
    let (root, bosun) = serve().await;
    let (cookie, csrf) = session_of(&bosun, ADMIN).await;
    let post = async |token: Option<&str>, headers: &[(&str, &str)]| {
        let mut req = bosun
            .req(Method::POST, "/v1/projects/shop/actions/status", None)
            .header("Cookie", &cookie);
        if let Some(t) = token {
            req = req.header("X-CSRF-Token", t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("post");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_string(),
        )
    };
    let evil = [
        ("Origin", "http://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ];
    let forbidden = (StatusCode::FORBIDDEN, "csrf".to_string());
    assert_eq!(post(None, &evil).await, forbidden, "cross-site, no token");
    assert_eq!(post(None, &[]).await, forbidden, "no token");
    assert_eq!(post(Some("0000"), &[]).await, forbidden, "a wrong token");
    assert_eq!(
        post(Some(&csrf), &evil[..1]).await,
        forbidden,
        "another origin"
    );
    assert_eq!(post(Some(&csrf), &evil[1..]).await, forbidden, "cross-site");
    let same = [
        ("Origin", bosun.url.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    assert_eq!(post(Some(&csrf), &same).await.0, StatusCode::ACCEPTED);

    // Signing in from another site opens nothing.
    let resp = bosun
        .req(Method::POST, "/ui/signin", None)
        .header("Origin", "http://evil.example")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("key={ADMIN}"))
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get("set-cookie").is_none());
    // A wrong key: the form again, with 401, and no session.
    let resp = bosun
        .req(Method::POST, "/ui/signin", None)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("key=bsk_wrong")
        .send()
        .await
        .expect("sign in");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get("set-cookie").is_none());
    // Sign-out needs the token too.
    let out = bosun
        .req(Method::POST, "/ui/signout", None)
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("sign out");
    assert_eq!(out.status(), StatusCode::FORBIDDEN);
    let page = bosun
        .req(Method::GET, "/", None)
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "the session outlived a forged sign-out"
    );
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );

    // A sibling site's page fetching with the cookie (an `<img>` of a live
    // feed) is refused, though following a link from it is not.
    let get = async |path: &str, headers: &[(&str, &str)], cookie: &str| {
        let mut req = bosun.req(Method::GET, path, None).header("Cookie", cookie);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("get")
    };
    let sibling = [
        ("Sec-Fetch-Site", "same-site"),
        ("Sec-Fetch-Mode", "no-cors"),
    ];
    assert_eq!(
        get("/ui/live", &sibling, &cookie).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get("/v1/projects", &sibling, &cookie).await.status(),
        StatusCode::FORBIDDEN
    );
    let link = [
        ("Sec-Fetch-Site", "same-site"),
        ("Sec-Fetch-Mode", "navigate"),
    ];
    assert_eq!(get("/", &link, &cookie).await.status(), StatusCode::OK);
    // What the API answers a session is no shared cache's to keep.
    let read = get("/v1/projects", &[], &cookie).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["cache-control"], "no-store");
    assert_eq!(read.headers()["vary"], "Cookie");
    // A cookie planted beside the real one voids both.
    let (planted, _) = session_of(&bosun, VIEWER).await;
    let twins = format!("{cookie}; {planted}");
    assert_eq!(
        get("/v1/projects", &[], &twins).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // One key holds at most 8 sessions: a ninth sign-in ends its oldest,
    // and no other key's.
    let (viewer_first, _) = session_of(&bosun, VIEWER).await;
    for _ in 0..8 {
        session_of(&bosun, VIEWER).await;
    }
    assert_eq!(
        get("/v1/projects", &[], &viewer_first).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/v1/projects", &[], &planted).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/v1/projects", &[], &cookie).await.status(),
        StatusCode::OK
    );

    // A reload that changes a key ends its sessions, and no other key's.
    let (viewer, _) = session_of(&bosun, VIEWER).await;
    assert_eq!(
        get("/v1/projects", &[], &viewer).await.status(),
        StatusCode::OK
    );
    let config = root.path().join("bosun.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let rotated = text.replace(&hash(VIEWER), &hash("bsk_rotated"));
    assert_ne!(text, rotated);
    std::fs::write(&config, rotated).expect("config");
    let reload = bosun.post("/v1/reload", ADMIN).await;
    assert_eq!(reload.status(), StatusCode::OK);
    assert_eq!(
        get("/v1/projects", &[], &viewer).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/v1/projects", &[], &cookie).await.status(),
        StatusCode::OK
    );
    bosun.stop().await;
}

/// A project in the release layout with a webhook: deploy from the page,
/// see the releases, roll back to one with a confirmation, and see a
/// delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_then_roll_back_from_the_deploy_page() {
    let root = TempDir::new().expect("temp dir");
    let r = root.path();
    shop::origin_and_dev(r);
    let port = shop::free_port();
    let text = format!(
        r#"{head}
[projects.shop]
dir = "shop"
actions = ["deploy", "rollback", "status"]
[projects.shop.git]
clone = "./origin.git"
branch = "main"
[projects.shop.commands]
allow = ["python3"]
[projects.shop.deploy]
build = [["python3", "build.py"]]
ready_timeout = "20s"
settle = "300ms"
releases = 3
[projects.shop.webhook]
secret_file = "shop.secret"
[[projects.shop.processes]]
name = "web"
command = "python3"
args = ["app.py"]
sockets = ["127.0.0.1:{port}"]
ready = {{ http = "/", timeout = "20s" }}
"#,
        head = admin_config("")
    );
    std::fs::write(r.join("bosun.toml"), text).expect("config");
    common::write_private(
        &r.join("shop.secret"),
        "a-dashboard-test-secret-of-some-length\n",
    );
    shop::commit_app(&r.join("dev"), "v1", &[]);
    let bosun = Bosun::start_in(r).await;
    let browser = Browser::start().await;
    let c = &browser.client;
    sign_in(&browser, &bosun, ADMIN).await;

    // Deploy from the page: a confirmation, then the job's page.
    browser.open(&bosun.url, "/ui/projects/shop/deploy").await;
    browser.click("button.run[data-action=deploy]").await;
    c.accept_alert().await.expect("confirm the deploy");
    until("the deploy's job page", async || {
        browser.path().await.starts_with("/ui/jobs/").then_some(())
    })
    .await;
    until("the deploy succeeded", async || {
        (browser.try_text("#job-state").await? == "succeeded").then_some(())
    })
    .await;
    assert!(shop::serving(port).await.ends_with(" v1"));
    let v2 = shop::commit_app(&r.join("dev"), "v2", &[]);
    let (_, job) = bosun
        .run("shop", "deploy", "?wait=2m", json!({}), ADMIN)
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(shop::serving(port).await.ends_with(" v2"));

    // A delivery the forge did not sign shows with its verdict.
    let hook = bosun
        .req(Method::POST, "/hooks/shop", None)
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", "dashboard-test-1")
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("hook");
    assert_eq!(hook.status(), StatusCode::UNAUTHORIZED);

    browser.open(&bosun.url, "/ui/projects/shop/deploy").await;
    browser.click("button.run[data-action=status]").await;
    until("the revision and both releases", async || {
        let revision = browser.try_text("p.revision code").await?;
        (revision == v2 && browser.count("#releases ~ div table tbody tr").await == 2).then_some(())
    })
    .await;
    assert!(
        browser
            .text("section[aria-labelledby=deliveries] tbody")
            .await
            .contains("bad_signature")
    );
    browser.screenshot("deploy").await;
    // Roll back to v1: dismissing the question does nothing; accepting it
    // runs the rollback.
    let rollback = "button.run[data-action=rollback]";
    assert_eq!(
        browser.count(rollback).await,
        1,
        "only the release not current"
    );
    browser.click(rollback).await;
    c.dismiss_alert().await.expect("say no");
    assert_eq!(browser.path().await, "/ui/projects/shop/deploy");
    browser.click(rollback).await;
    c.accept_alert().await.expect("say yes");
    until("the rollback succeeded", async || {
        let on_job = browser.path().await.starts_with("/ui/jobs/");
        (on_job && browser.try_text("#job-state").await? == "succeeded").then_some(())
    })
    .await;
    assert!(shop::serving(port).await.ends_with(" v1"));
    let jobs = bosun
        .get_json("/v1/jobs?project=shop&action=rollback", ADMIN)
        .await;
    assert_eq!(
        jobs["jobs"].as_array().map(Vec::len),
        Some(1),
        "one rollback, not two"
    );
    let _ = browser.client.clone().close().await;
    bosun.stop().await;
}

/// The README's screenshot is one of this test's, kept in docs/.
#[test]
fn the_readme_shows_a_screenshot_of_the_dashboard() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    assert!(
        readme.contains("](docs/images/dashboard.png)"),
        "the README shows the dashboard"
    );
    let png = std::fs::read(root.join("docs/images/dashboard.png")).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
}
