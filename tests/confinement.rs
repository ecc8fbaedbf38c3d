//! Hostile tenants, through plugins: what a plugin tries in order to reach
//! beyond its project (git config it writes, a gitfile, an app or a
//! `commands` run it rewrites, a `.env` link, the server's credentials),
//! and the confinement that stops each try. Two projects side by side, `a`
//! (the attacker) and `b` (the victim); real git, real processes, the real
//! hostile fixture, real HTTP. (What a project's own processes try is in
//! `confinement_processes.rs`.)
//!
//! These run as root with Landlock, like CI; bosun then confines every
//! project without any config.
//!
//! Run with: cargo test --test confinement

mod common;

use std::path::Path;
use std::time::Duration;

use common::git;
use common::server::{ADMIN, Bosun};
use common::tenants::{
    SECRET, Tenants, alive, attempts, hostile, log_with, pid_of, snapshot, uid_of,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_a_plugin_configures_runs_nothing_outside_its_project() {
    let t = Tenants::new();
    let b = t.serve("").await;
    let uid = uid_of(&b, "a").await;
    let (a, outside) = (t.path("a"), t.path("outside"));
    let b_before = snapshot(&t.path("b"));
    t.commit("v2", "echo serving v2\nexec sleep 1000\n");
    let out = outside.display();
    let evil = format!(
        "\n[core]\n\
         \tfsmonitor = \"sh -c 'id -u > fsmonitor-ran-as; echo pwned > {out}/fsmonitor'\"\n\
         \tsshCommand = \"sh -c 'echo pwned > {out}/ssh'\"\n\
         [filter \"evil\"]\n\
         \tsmudge = \"sh -c 'id -u > smudge-ran-as; echo pwned > {out}/smudge; cat'\"\n\
         \tclean = cat\n"
    );
    let hook = format!("#!/bin/sh\nid -u > hook-ran-as\necho pwned > {out}/hook\n");
    let job = hostile(
        &b,
        json!({
            "mode": "write",
            "renames": json!({"hook.sh": ".git/hooks/post-checkout"}).to_string(),
            "append": json!({".git/config": evil}).to_string(),
            "files": json!({
                ".gitattributes": "* filter=evil\n",
                ".git/hooks/post-checkout": hook,
            })
            .to_string(),
        }),
    )
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");

    let job = hostile(&b, json!({"mode": "git"})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let r = &job["result"];
    assert!(r["info"]["ok"].is_string(), "{r}");
    assert!(
        r["fetch"]["ok"].is_string(),
        "fetching from the mirror works: {r}"
    );
    assert!(r["update"]["ok"].is_string(), "{r}");
    assert_eq!(
        std::fs::read_to_string(a.join("VERSION")).expect("VERSION"),
        "v2",
        "the update still happened"
    );
    assert_eq!(
        std::fs::read_dir(&outside).expect("outside").count(),
        0,
        "nothing git ran wrote outside the project"
    );
    for marker in ["fsmonitor-ran-as", "smudge-ran-as", "hook-ran-as"] {
        if let Ok(who) = std::fs::read_to_string(a.join(marker)) {
            assert_eq!(who.trim(), uid.to_string(), "{marker} ran as the project");
        }
    }
    assert!(
        !a.join("fsmonitor-ran-as").exists() && !a.join("hook-ran-as").exists(),
        "git was told never to run the fsmonitor or hooks"
    );
    assert_eq!(snapshot(&t.path("b")), b_before, "b is untouched");

    // The tenant's config allows a protocol and rewrites the mirror's fd
    // transport to it: bosun's own settings win, and the fetch is refused.
    let redirect = format!(
        "\n[protocol \"file\"]\n\tallow = always\n[url \"file://{}/evil.git\"]\n\tinsteadOf = fd::3\n",
        a.display()
    );
    hostile(
        &b,
        json!({"mode": "write", "append": json!({".git/config": redirect}).to_string()}),
    )
    .await;
    let job = hostile(&b, json!({"mode": "git"})).await;
    let fetch = job["result"]["fetch"]["err"].as_str().unwrap_or_default();
    assert!(fetch.contains("not allowed"), "{job}");

    // A config that includes another project's: git cannot read it
    // (Landlock), so what it says never takes effect.
    let b_config = t.path("b/.git/config");
    let mut text = std::fs::read_to_string(&b_config).expect("b's config");
    text.push_str(
        "[branch \"main\"]\n\tremote = from-b\n[remote \"from-b\"]\n\turl = /b-was-read\n",
    );
    std::fs::write(&b_config, text).expect("b's config");
    let b_before = snapshot(&t.path("b"));
    let include = format!("\n[include]\n\tpath = {}\n", b_config.display());
    hostile(
        &b,
        json!({"mode": "write", "append": json!({".git/config": include}).to_string()}),
    )
    .await;
    let job = hostile(&b, json!({"mode": "git"})).await;
    let info = job["result"]["info"]["ok"].as_str().expect("info");
    assert!(
        info.contains("origin.git") && !info.contains("b-was-read"),
        "{job}"
    );
    assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
    assert_eq!(snapshot(&t.path("b")), b_before, "b is untouched");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitfile_pointing_at_another_project_is_refused() {
    let t = Tenants::new();
    let b = t.serve("").await;
    let b_before = snapshot(&t.path("b"));
    let job = hostile(
        &b,
        json!({
            "mode": "write",
            "renames": json!({".git": ".git-real"}).to_string(),
            "files": json!({".git": "gitdir: ../b/.git\n"}).to_string(),
        }),
    )
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let job = hostile(&b, json!({"mode": "git"})).await;
    for call in ["info", "fetch", "update", "reset"] {
        let err = job["result"][call]["err"].as_str().unwrap_or_default();
        assert!(
            err.starts_with("denied:") && err.contains("not a plain directory"),
            "{call}: {job}"
        );
    }
    assert_eq!(snapshot(&t.path("b")), b_before, "b is untouched");
    b.stop().await;
}

/// The attempts a rewritten app (or a program a plugin runs) makes, as
/// shell lines printing `attempt <name>: yes|no`.
fn attack_script(t: &Tenants, b_pid: u64, marker: &str) -> String {
    let (b, state, out) = (
        t.path("b").display().to_string(),
        t.path("state").display().to_string(),
        t.path("outside").display().to_string(),
    );
    let config = t.path("bosun.toml").display().to_string();
    let bosun = std::process::id();
    format!(
        r#"#!/bin/sh
try() {{ what=$1; shift; if "$@" >/dev/null 2>&1; then echo "attempt $what: yes"; else echo "attempt $what: no"; fi; }}
try read-b-secret cat {b}/secret.txt
try list-b ls {b}
try read-config cat {config}
try read-jobs-db cat {state}/jobs.db
try read-cache-key cat {state}/cache/key
try read-identities cat {state}/identities.json
try read-b-environ cat /proc/{b_pid}/environ
try see-b-cmdline test -e /proc/{b_pid}/cmdline
try see-bosun test -e /proc/{bosun}/cmdline
try read-bosun-environ cat /proc/{bosun}/environ
try signal-b kill -0 {b_pid}
try signal-bosun kill -0 {bosun}
try write-outside sh -c 'echo x > {out}/from-app'
try write-tmp sh -c 'echo x > /tmp/{marker}'
try write-tty sh -c 'echo x > /dev/tty'
try write-own sh -c 'echo ok > own.txt'
echo "attempts done"
exec sleep 1000
"#
    )
}

/// Check the attempts of [`attack_script`]: everything beyond the project
/// refused, its own dir writable, its /tmp private.
fn check_attempts(t: &Tenants, text: &str, marker: &str) {
    let got = attempts(text);
    assert_eq!(got.len(), 16, "{text}");
    for (what, result) in &got {
        let want = if what == "write-own" || what == "write-tmp" {
            "yes"
        } else {
            "no"
        };
        assert_eq!(result, want, "attempt {what}:\n{text}");
    }
    assert!(
        !Path::new("/tmp").join(marker).exists(),
        "the project's /tmp is not the host's"
    );
    assert!(
        t.path("state/projects/a/tmp").join(marker).exists(),
        "it is the project's private one"
    );
    assert_eq!(
        std::fs::read_dir(t.path("outside"))
            .expect("outside")
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_to_string(t.path("a/own.txt")).expect("own write"),
        "ok\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_app_reaches_nothing_beyond_its_project() {
    let t = Tenants::new();
    let b = t.serve("").await;
    let b_pid = pid_of(&b, "b").await;
    let marker = format!("bosun-escape-{}", std::process::id());
    let job = hostile(
        &b,
        json!({"mode": "write", "files": json!({"app.sh": attack_script(&t, b_pid, &marker)}).to_string()}),
    )
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let job = hostile(&b, json!({"mode": "restart", "name": "web"})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let logs = log_with(&b, "a", "web", "attempts done").await;
    check_attempts(&t, &logs, &marker);
    assert!(alive(b_pid), "b's process lives on");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_confined_and_refuse_loader_variables() {
    let t = Tenants::new();
    let b = t.serve("").await;
    let b_pid = pid_of(&b, "b").await;
    let marker = format!("bosun-escape-cmd-{}", std::process::id());
    let script = attack_script(&t, b_pid, &marker).replace("exec sleep 1000\n", "");
    // `python3 -c`: an allowed interpreter runs whatever it is given.
    let code = format!("import subprocess\nsubprocess.run(['sh', '-c', {script:?}])\n");
    let job = hostile(
        &b,
        json!({"mode": "run", "program": "python3", "args": json!(["-c", code]).to_string()}),
    )
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let stdout = job["result"]["stdout_tail"].as_str().expect("stdout");
    check_attempts(&t, stdout, &marker);

    for var in ["LD_PRELOAD", "PYTHONPATH", "BASH_ENV", "GIT_CONFIG_COUNT"] {
        let job = hostile(
            &b,
            json!({"mode": "run", "program": "sh", "args": r#"["-c", "true"]"#,
                   "env": json!({var: "./evil.so"}).to_string()}),
        )
        .await;
        assert_eq!(job["state"], "failed", "{job}");
        let message = job["error"]["message"].as_str().expect("message");
        assert!(
            message.starts_with("denied:") && message.contains(var),
            "{message}"
        );
    }

    // Nothing of bosun's own environment reaches a program.
    let job = hostile(
        &b,
        json!({"mode": "run", "program": "sh", "args": r#"["-c", "env | sort"]"#}),
    )
    .await;
    let env = job["result"]["stdout_tail"].as_str().expect("stdout");
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    for name in &names {
        assert!(
            [
                "PATH",
                "HOME",
                "USER",
                "LOGNAME",
                "LANG",
                "TMPDIR",
                "FROM_PLUGIN",
                "PWD",
                "SHLVL",
                "_"
            ]
            .contains(name),
            "unexpected variable {name} in:\n{env}"
        );
    }

    // A `.env` naming bosun's own variables gets nothing of them.
    hostile(
        &b,
        json!({"mode": "write", "files": json!({".env": "STOLEN=${PATH}\nALSO=$CARGO_PKG_NAME\n"}).to_string()}),
    )
    .await;
    let job = hostile(
        &b,
        json!({"mode": "run", "program": "sh", "args": r#"["-c", "echo \"stolen=[$STOLEN] also=[$ALSO]\""]"#}),
    )
    .await;
    assert_eq!(job["result"]["stdout_tail"], "stolen=[] also=[]\n", "{job}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dotenv_link_to_another_project_is_refused_without_a_byte_of_it() {
    let t = Tenants::new();
    let b = t.serve("").await;
    let job = hostile(
        &b,
        json!({"mode": "write", "links": json!({".env": "../b/.env"}).to_string()}),
    )
    .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(
        std::fs::symlink_metadata(t.path("a/.env"))
            .expect("the link")
            .file_type()
            .is_symlink()
    );

    let restart = hostile(&b, json!({"mode": "restart", "name": "web"})).await;
    let project = b.get_json("/v1/projects/a", ADMIN).await;
    let web = &project["processes"][0];
    assert_eq!(web["state"], "fatal", "{project}");
    let message = web["message"].as_str().expect("message");
    assert!(
        message.contains("`.env`") && message.contains("outside"),
        "{message}"
    );

    let run = hostile(
        &b,
        json!({"mode": "run", "program": "sh", "args": r#"["-c", "env"]"#}),
    )
    .await;
    assert_eq!(run["state"], "failed", "{run}");
    let logs = b
        .get_text("/v1/projects/a/processes/web/logs?lines=500", ADMIN)
        .await;
    for text in [
        restart.to_string(),
        project.to_string(),
        run.to_string(),
        logs,
    ] {
        assert!(!text.contains(SECRET), "b's secret leaked: {text}");
    }
    b.stop().await;
}

/// A static HTTP server for a bare repo (git's dumb protocol) that wants
/// basic auth (given in its environment, `UPSTREAM_AUTH`) and answers
/// `info/refs` slowly, so the fetch runs long enough to look at every
/// command line.
const UPSTREAM: &str = r#"
import http.server, os, sys, time
os.chdir(sys.argv[1])
want = "Basic " + os.environ["UPSTREAM_AUTH"]
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != want:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        if "info/refs" in self.path:
            time.sleep(1.5)
        return super().do_GET()
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_git_credentials_never_reach_a_command_line() {
    use std::io::BufRead as _;
    let t = Tenants::new();
    t.commit("v2", "echo serving v2\nexec sleep 1000\n");
    git(&t.path("origin.git"), &["update-server-info"]);
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // base64 of `bot:s3cret-upstream`, the credentials in the URL below.
    let mut server = Server(
        std::process::Command::new("python3")
            .args(["-c", UPSTREAM])
            .arg(t.root.path())
            .env("UPSTREAM_AUTH", "Ym90OnMzY3JldC11cHN0cmVhbQ==")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("upstream server"),
    );
    let mut port = String::new();
    std::io::BufReader::new(server.0.stdout.take().expect("stdout"))
        .read_line(&mut port)
        .expect("port");
    let url = format!(
        "http://bot:s3cret-upstream@127.0.0.1:{}/origin.git",
        port.trim()
    );
    let config = t
        .config("")
        .replace("remote = \"./origin.git\"", &format!("remote = {url:?}"));
    std::fs::write(t.path("bosun.toml"), config).expect("config");
    let b = Bosun::start_in(t.root.path()).await;
    let fetch = {
        let api = (*b).clone();
        tokio::spawn(async move {
            api.run("a", "hostile", "?wait=60s", json!({"mode": "git"}), ADMIN)
                .await
        })
    };
    let mut seen = 0;
    while !fetch.is_finished() {
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                assert!(
                    !cmdline.contains("s3cret-upstream"),
                    "on a command line: {cmdline}"
                );
                if cmdline.contains("remote-http") {
                    seen += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, job) = fetch.await.expect("the fetch task");
    drop(server);
    assert!(
        job["result"]["fetch"]["ok"].is_string(),
        "the credentials worked: {job}"
    );
    assert!(seen > 0, "git's http helper was running while looked at");
    assert!(!job.to_string().contains("s3cret"), "{job}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosun_exec_beside_a_running_server_changes_no_identity() {
    let t = Tenants::new();
    let b = t.serve("").await;
    let ids = std::fs::read(t.path("state/identities.json")).expect("identities");
    use std::os::unix::fs::MetadataExt as _;
    let owner = std::fs::metadata(t.path("a")).expect("a").uid();
    let pid = pid_of(&b, "a").await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["exec", "--config"])
        .arg(t.path("bosun.toml"))
        .args(["a", "hostile", "mode=git"])
        .output()
        .await
        .expect("bosun exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        result["info"]["ok"].is_string(),
        "git ran as the project: {result}"
    );
    assert_eq!(
        std::fs::read(t.path("state/identities.json")).expect("identities"),
        ids,
        "no project got a new id"
    );
    assert_eq!(std::fs::metadata(t.path("a")).expect("a").uid(), owner);
    assert_eq!(pid_of(&b, "a").await, pid, "the server's process runs on");
    b.stop().await;
}
