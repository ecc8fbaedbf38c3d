//! The supervisor with real processes: small scripts written to temp dirs,
//! run in their own process groups, checked through the handle API, the log
//! files and /proc.
//!
//! Run with: cargo test --test supervisor

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use bosun::config::Config;
use bosun::confine::{Confinement, Role};
use bosun::supervisor::{ProjectHandle, State, Status, Supervisor};
use common::eventually;
use common::procfs::{self, alive};
use tempfile::TempDir;

/// A project dir with `bosun.toml` around `processes` (TOML for the project's
/// `[[projects.app.processes]]` and other keys).
struct Setup {
    root: TempDir,
    config: Config,
}

impl Setup {
    fn new(project_toml: &str) -> Self {
        let root = TempDir::new().expect("temp");
        for dir in ["app", "other"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("mkdir");
        }
        // Port 0: tests run side by side, and `bosun serve` also serves the API.
        let text = format!(
            "state_dir = \"state\"\n[server]\nlisten = \"127.0.0.1:0\"\n[projects.app]\ndir = \"app\"\n{project_toml}"
        );
        let path = root.path().join("bosun.toml");
        std::fs::write(&path, &text).expect("write config");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        Self { root, config }
    }

    fn app(&self) -> PathBuf {
        self.root.path().join("app")
    }

    fn script(&self, name: &str, body: &str) {
        let path = self.app().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    }

    fn log_file(&self, label: &str) -> PathBuf {
        self.root
            .path()
            .join("state/logs/app")
            .join(format!("{label}.log"))
    }

    async fn start(&self) -> (Supervisor, ProjectHandle) {
        let confinement = Confinement::start(&self.config, Role::Server)
            .await
            .expect("confinement");
        let sup = Supervisor::start(&self.config, Arc::new(confinement))
            .await
            .expect("supervisor starts");
        let app = sup.project("app").expect("project app");
        (sup, app)
    }
}

/// SIGKILLs the processes a test started outside any supervisor (a `bosun
/// serve`, or what a killed one left), unless the test cleared it: a failing
/// test must not leave them running.
#[derive(Default)]
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn status(app: &ProjectHandle, i: usize) -> Status {
    app.list()[i].clone()
}

fn notes(app: &ProjectHandle) -> Vec<String> {
    app.logs(None, 1000)
        .expect("logs")
        .iter()
        .filter_map(|l| l.text.strip_prefix("[bosun] ").map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_follows_the_schedule_in_order() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"crash\"\ncommand = \"./crash.sh\"\n\
         restart_at = [\"50ms\", \"100ms\", \"200ms\"]\nrestart_ok = \"1h\"\n",
    );
    s.script("crash.sh", "exit 3");
    let (sup, app) = s.start().await;
    eventually("five starts", || {
        notes(&app)
            .iter()
            .filter(|n| n.starts_with("started"))
            .count()
            >= 5
    })
    .await;
    app.stop(None).await.expect("stop");
    let restarts: Vec<String> = notes(&app)
        .into_iter()
        .filter(|n| n.starts_with("restarting in"))
        .collect();
    assert_eq!(
        restarts[..4],
        [
            "restarting in 50ms",
            "restarting in 100ms",
            "restarting in 200ms",
            "restarting in 200ms"
        ],
        "the schedule in order, the last step repeating"
    );
    let starts: Vec<_> = app
        .logs(None, 1000)
        .expect("logs")
        .into_iter()
        .filter(|l| l.text.starts_with("[bosun] started"))
        .collect();
    for (i, min) in [50, 100, 200, 200].into_iter().enumerate() {
        let gap = starts[i + 1]
            .time
            .duration_since(starts[i].time)
            .expect("ordered");
        assert!(
            gap >= Duration::from_millis(min),
            "restart {i} came after {gap:?}, before its {min}ms delay"
        );
    }
    // The stop may catch a run in progress, so the crashes' exit codes are
    // read from the log rather than from the final status.
    let crashes = notes(&app)
        .iter()
        .filter(|n| n.as_str() == "exited with code 3")
        .count();
    assert!(crashes >= 4, "{crashes} crashes with code 3 logged");
    assert!(status(&app, 0).restarts >= 4);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_ok_resets_the_schedule_and_an_empty_one_never_restarts() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"flaky\"\ncommand = \"./flaky.sh\"\n\
         restart_at = [\"50ms\", \"5s\"]\nrestart_ok = \"100ms\"\n\
         [[projects.app.processes]]\nname = \"once\"\ncommand = \"./once.sh\"\nrestart_at = []\n",
    );
    s.script("flaky.sh", "sleep 0.3; exit 1");
    s.script("once.sh", "exit 0");
    let (sup, app) = s.start().await;
    eventually("three restarts of flaky", || {
        notes(&app)
            .iter()
            .filter(|n| n.as_str() == "restarting in 50ms")
            .count()
            >= 3
    })
    .await;
    assert!(
        !notes(&app).iter().any(|n| n == "restarting in 5s"),
        "uptime past restart_ok resets the schedule"
    );
    eventually("once exits", || status(&app, 1).state == State::Exited).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let once = status(&app, 1);
    assert_eq!(
        (once.state, once.restarts, once.exit_code),
        (State::Exited, 0, Some(0))
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_are_graceful_when_they_can_be_and_forced_when_not() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"graceful\"\ncommand = \"./graceful.sh\"\nkill_timeout = \"5s\"\n\
         [[projects.app.processes]]\nname = \"stubborn\"\ncommand = \"./stubborn.sh\"\nkill_timeout = \"500ms\"\n",
    );
    s.script(
        "graceful.sh",
        "trap 'sleep 2; echo finished cleanly; exit 0' TERM\nwhile true; do sleep 0.1; done",
    );
    s.script(
        "stubborn.sh",
        "trap '' TERM\nwhile true; do sleep 0.1; done",
    );
    let (sup, app) = s.start().await;
    eventually("both running", || {
        app.list().iter().all(|p| p.state == State::Running)
    })
    .await;
    let started = Instant::now();
    app.stop(Some("graceful")).await.expect("stop");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the stop waited for the handler"
    );
    let n = notes(&app);
    assert!(n.iter().any(|l| l == "stopped by SIGTERM"), "{n:?}");
    let lines: Vec<String> = app
        .logs(Some("graceful"), 100)
        .expect("logs")
        .iter()
        .map(|l| l.text.clone())
        .collect();
    assert!(lines.contains(&"finished cleanly".to_string()), "{lines:?}");
    assert_eq!(status(&app, 0).exit_code, Some(0));

    app.stop(Some("stubborn")).await.expect("stop");
    let n = notes(&app);
    assert!(
        n.iter()
            .any(|l| l.starts_with("killed: still running 500ms after SIGTERM")),
        "{n:?}"
    );
    assert_eq!(status(&app, 1).exit_signal, Some(9));
    assert_eq!(status(&app, 1).state, State::Stopped);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_grandchild_does_not_survive_stop_or_restart() {
    let s =
        Setup::new("[[projects.app.processes]]\nname = \"parent\"\ncommand = \"./parent.sh\"\n");
    s.script("parent.sh", "sleep 1000 &\necho $! > child.pid\nwait");
    let (sup, app) = s.start().await;
    let pid_file = s.app().join("child.pid");
    let read_child = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
    };
    eventually("the grandchild's pid", || read_child().is_some()).await;
    let first = read_child().expect("pid");
    assert!(alive(first));

    std::fs::remove_file(&pid_file).expect("rm");
    app.restart(None).await.expect("restart");
    assert!(!alive(first), "restart left the grandchild {first} alive");
    eventually("the new grandchild's pid", || read_child().is_some()).await;
    let second = read_child().expect("pid");
    assert_ne!(first, second);

    app.stop(None).await.expect("stop");
    assert!(!alive(second), "stop left the grandchild {second} alive");
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_cannot_start_is_fatal_with_the_reason() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"ghost\"\ncommand = \"definitely-not-a-program-here\"\n\
         [[projects.app.processes]]\nname = \"lost\"\ncommand = \"sleep\"\nargs = [\"10\"]\ncwd = \"missing\"\n",
    );
    let (sup, app) = s.start().await;
    eventually("both fatal", || {
        app.list().iter().all(|p| p.state == State::Fatal)
    })
    .await;
    let ghost = status(&app, 0);
    assert_eq!(
        ghost.message.as_deref(),
        Some(
            "program `definitely-not-a-program-here` not found (a name is looked up on PATH; a path is relative to the project dir)"
        )
    );
    assert!(
        status(&app, 1)
            .message
            .expect("message")
            .starts_with("working directory `missing` is not usable")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&app, 0).restarts, 0, "no restart loop");
    let err = app
        .wait_ready(Some("ghost"), Duration::from_secs(5))
        .await
        .expect_err("never ready");
    assert!(err.to_string().contains("is Fatal"), "{err}");
    app.stop(Some("ghost")).await.expect("stop");
    assert_eq!(status(&app, 0).state, State::Stopped);
    sup.shutdown().await;
    let (sup, app) = s.start().await;
    eventually("lost is fatal again", || {
        status(&app, 1).state == State::Fatal
    })
    .await;
    assert_eq!(
        status(&app, 0).state,
        State::Stopped,
        "a stopped fatal process stays stopped after a restart of bosun"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_comes_from_dotenv_then_config_and_dotenv_is_reread_on_restart() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"env\"\ncommand = \"./env.sh\"\ninstances = 2\n\
         env = { FROM_CONFIG = \"config\", BOTH = \"config wins\" }\n",
    );
    s.script(
        "env.sh",
        "echo \"$BOSUN_INSTANCE $GREETING $FROM_CONFIG $BOTH\"\nexec sleep 1000",
    );
    std::fs::write(s.app().join(".env"), "GREETING=hello\nBOTH=dotenv\n").expect("write .env");
    let (sup, app) = s.start().await;
    let printed = |app: &ProjectHandle| -> Vec<String> {
        app.logs(None, 100)
            .expect("logs")
            .iter()
            .filter(|l| !l.text.starts_with("[bosun]"))
            .map(|l| l.text.clone())
            .collect()
    };
    eventually("both instances print", || printed(&app).len() == 2).await;
    let mut lines = printed(&app);
    lines.sort();
    assert_eq!(
        lines,
        ["0 hello config config wins", "1 hello config config wins"]
    );

    std::fs::write(s.app().join(".env"), "GREETING=bonjour\n").expect("rewrite .env");
    app.restart(Some("env")).await.expect("restart");
    eventually("reprinted", || printed(&app).len() == 4).await;
    let mut lines = printed(&app);
    lines.sort();
    assert_eq!(
        lines,
        [
            "0 bonjour config config wins",
            "0 hello config config wins",
            "1 bonjour config config wins",
            "1 hello config config wins"
        ]
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_by_log_line_gates_running_and_a_missed_deadline_restarts() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"web\"\ncommand = \"./web.sh\"\n\
         ready = { log = \"^listening on \\\\d+$\", timeout = \"10s\" }\n\
         [[projects.app.processes]]\nname = \"mute\"\ncommand = \"sleep\"\nargs = [\"1000\"]\n\
         restart_at = [\"50ms\"]\nready = { log = \"never printed\", timeout = \"300ms\" }\n",
    );
    s.script(
        "web.sh",
        "sleep 0.5\necho listening on 8080\nexec sleep 1000",
    );
    let (sup, app) = s.start().await;
    eventually("web spawned", || status(&app, 0).pid.is_some()).await;
    assert_eq!(
        status(&app, 0).state,
        State::Starting,
        "not running before its ready line"
    );
    let ready = app
        .wait_ready(Some("web"), Duration::from_secs(20))
        .await
        .expect("ready");
    assert_eq!(ready[0].state, State::Running);
    assert!(notes(&app).contains(&"ready".to_string()));

    eventually("mute restarted for missing its deadline", || {
        status(&app, 1).restarts >= 1
    })
    .await;
    assert!(
        notes(&app)
            .iter()
            .any(|n| n == "not ready within 300ms; restarting")
    );
    let err = app
        .wait_ready(Some("mute"), Duration::from_millis(200))
        .await
        .expect_err("never ready");
    assert_eq!(err.to_string(), "not ready within 200ms");
    sup.shutdown().await;
}

/// Writes `count` numbered lines with ANSI colours, in 8 KiB chunks that split lines.
const WRITER: &str = r#"
import os, sys
tag, count = sys.argv[1], int(sys.argv[2])
data = "".join("\x1b[32m%s %06d\x1b[0m\n" % (tag, i) for i in range(count)).encode()
for i in range(0, len(data), 8192):
    os.write(1, data[i:i + 8192])
"#;

fn data_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_of_200k_lines_give_zero_broken_lines_in_every_log() {
    const N: usize = 200_000;
    let s = Setup::new(&format!(
        "merged_log = \"state/logs/app.log\"\n\
         [[projects.app.processes]]\nname = \"a\"\ncommand = \"python3\"\nargs = [\"writer.py\", \"A\", \"{N}\"]\nstrip_ansi = true\nrestart_at = []\nlog_max_size = \"1GiB\"\n\
         [[projects.app.processes]]\nname = \"b\"\ncommand = \"python3\"\nargs = [\"writer.py\", \"B\", \"{N}\"]\nstrip_ansi = true\nrestart_at = []\nlog_max_size = \"1GiB\"\n"
    ));
    std::fs::write(s.app().join("writer.py"), WRITER).expect("write writer");
    let (sup, app) = s.start().await;
    eventually("both writers exit", || {
        app.list().iter().all(|p| p.state == State::Exited)
    })
    .await;
    let merged = s.root.path().join("state/logs/app.log");
    eventually("every line on disk", || {
        data_lines(&merged)
            .iter()
            .filter(|l| !l.contains("[bosun]"))
            .count()
            == 2 * N
    })
    .await;

    for (tag, label) in [("A", "a-0"), ("B", "b-0")] {
        let own: Vec<String> = data_lines(&s.log_file(label))
            .into_iter()
            .filter(|l| !l.starts_with("[bosun]"))
            .collect();
        let expected: Vec<String> = (0..N).map(|i| format!("{tag} {i:06}")).collect();
        assert!(
            own == expected,
            "{label}.log: {} lines, not exactly the {N} written in order",
            own.len()
        );
        let in_merged: Vec<String> = data_lines(&merged)
            .into_iter()
            .filter_map(|l| l.strip_prefix(&format!("{label} | ")).map(str::to_string))
            .filter(|l| !l.starts_with("[bosun]"))
            .collect();
        assert!(
            in_merged == expected,
            "merged log: {label}'s lines broken or out of order"
        );
    }
    let broken: Vec<String> = data_lines(&merged)
        .into_iter()
        .filter(|l| {
            let Some((label, text)) = l.split_once(" | ") else {
                return true;
            };
            let tag = match label {
                "a-0" => "A",
                "b-0" => "B",
                _ => return true,
            };
            !(text.starts_with("[bosun] ")
                || (text.len() == 8
                    && text.starts_with(tag)
                    && text[2..].bytes().all(|b| b.is_ascii_digit())))
        })
        .take(5)
        .collect();
    assert!(
        broken.is_empty(),
        "broken lines in the merged log: {broken:?}"
    );
    assert!(
        !std::fs::read_to_string(&merged)
            .expect("merged")
            .contains('\x1b'),
        "ANSI left in the merged log"
    );
    sup.shutdown().await;
}

/// Check a rotated log: `keep` rotated files besides the current one, none
/// more, each at most 64 KiB and of whole `line_len`-byte lines (bosun's own
/// notes aside). Returns the lines kept.
fn check_rotated(log: &Path, keep: u32, line_len: usize) -> usize {
    let mut total = 0;
    for n in 0..=keep {
        let path = if n == 0 {
            log.to_path_buf()
        } else {
            PathBuf::from(format!("{}.{n}", log.display()))
        };
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert!(size <= 64 * 1024, "{} is {size} bytes", path.display());
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.ends_with('\n'), "{} ends mid-line", path.display());
        for line in text.lines().filter(|l| !l.contains("[bosun]")) {
            assert_eq!(
                line.len(),
                line_len,
                "{}: a broken line: {line:?}",
                path.display()
            );
        }
        total += text.lines().count();
    }
    let extra = PathBuf::from(format!("{}.{}", log.display(), keep + 1));
    assert!(
        !extra.exists(),
        "more than {keep} rotated files of {}",
        log.display()
    );
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_log_keep_files_of_whole_lines() {
    let s = Setup::new(
        "merged_log = \"state/logs/app.log\"\nmerged_log_max_size = \"64KiB\"\nmerged_log_keep = 2\n\
         [[projects.app.processes]]\nname = \"chatty\"\ncommand = \"python3\"\nargs = [\"-c\", \"import sys\\nfor i in range(5000): sys.stdout.write('line %06d %s\\\\n' % (i, 'x' * 88))\"]\n\
         restart_at = []\nlog_max_size = \"64KiB\"\nlog_keep = 3\n",
    );
    let (sup, app) = s.start().await;
    eventually("chatty exits", || status(&app, 0).state == State::Exited).await;
    let log = s.log_file("chatty-0");
    let merged = s.root.path().join("state/logs/app.log");
    eventually("the last line is on disk in both logs", || {
        [&log, &merged]
            .iter()
            .all(|path| data_lines(path).iter().any(|l| l.contains("line 004999 ")))
    })
    .await;
    let kept = check_rotated(&log, 3, 100);
    assert!(kept > 2000, "the kept files hold {kept} lines");
    // The merged log's lines carry the `chatty-0 | ` prefix.
    let kept = check_rotated(&merged, 2, 111);
    assert!(kept > 1000, "the merged files hold {kept} lines");
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_everything_and_a_restart_brings_back_the_same_set() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"kept\"\ncommand = \"sleep\"\nargs = [\"1000\"]\n\
         [[projects.app.processes]]\nname = \"dropped\"\ncommand = \"sleep\"\nargs = [\"1000\"]\n\
         [[projects.app.processes]]\nname = \"manual\"\ncommand = \"sleep\"\nargs = [\"1000\"]\nautostart = false\n",
    );
    let (sup, app) = s.start().await;
    eventually("two running", || {
        app.list()
            .iter()
            .filter(|p| p.state == State::Running)
            .count()
            == 2
    })
    .await;
    assert_eq!(status(&app, 2).state, State::Stopped, "autostart = false");
    app.stop(Some("dropped")).await.expect("stop");
    app.start(Some("manual")).await.expect("start");
    let pids: Vec<u32> = app.list().iter().filter_map(|p| p.pid).collect();
    assert_eq!(pids.len(), 2);
    sup.shutdown().await;
    for pid in &pids {
        assert!(!alive(*pid), "shutdown left {pid} running");
    }

    let (sup, app) = s.start().await;
    eventually("the same set running again", || {
        let l = app.list();
        l[0].state == State::Running && l[2].state == State::Running
    })
    .await;
    assert_eq!(
        status(&app, 1).state,
        State::Stopped,
        "a stopped process stays stopped across restarts"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bosun_leaves_nothing_behind_once_restarted() {
    killed_bosun_then_restart(false).await;
}

/// bosun killed in the instant between a spawn and its group record: the
/// marker in the processes' environment still finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_without_a_group_record_are_found_by_their_marker() {
    killed_bosun_then_restart(true).await;
}

/// SIGHUP, which operators send to make daemons reload, must not end bosun
/// and leave its processes unsupervised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_leaves_bosun_and_its_processes_running() {
    let s = Setup::new("[[projects.app.processes]]\nname = \"web\"\ncommand = \"./web.sh\"\n");
    s.script("web.sh", "echo $$ > pid\nexec sleep 1000");
    let mut guard = KillOnDrop::default();
    let mut bosun = std::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["serve", "--config"])
        .arg(s.root.path().join("bosun.toml"))
        .spawn()
        .expect("start bosun serve");
    guard.0.push(bosun.id());
    let pid_file = s.app().join("pid");
    let pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
    };
    eventually("the process started", || pid().is_some()).await;
    let web = pid().expect("pid");
    guard.0.push(web);
    let bosun_pid = nix::unistd::Pid::from_raw(i32::try_from(bosun.id()).expect("pid"));
    nix::sys::signal::kill(bosun_pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    // Still there, and still supervising, a while after the SIGHUP.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            bosun.try_wait().expect("try_wait").is_none(),
            "SIGHUP ended bosun"
        );
        assert!(alive(web), "the process went with the SIGHUP");
    }
    // Had the SIGHUP ended it meanwhile, the exit would be by that signal,
    // not the clean exit a SIGTERM gets.
    nix::sys::signal::kill(bosun_pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = bosun.wait().expect("wait");
    assert!(status.success(), "bosun ended by {status}");
    eventually("the process stopped with bosun", || !alive(web)).await;
}

async fn killed_bosun_then_restart(drop_group_records: bool) {
    let s =
        Setup::new("[[projects.app.processes]]\nname = \"parent\"\ncommand = \"./parent.sh\"\n");
    s.script("parent.sh", "sleep 1000 &\necho \"$$ $!\" > pids\nwait");
    let config = s.root.path().join("bosun.toml");
    let serve = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args(["serve", "--config"])
            .arg(&config)
            .spawn()
            .expect("start bosun serve")
    };
    let pids_file = s.app().join("pids");
    let read_pids = || -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(&pids_file).ok()?;
        let mut it = text.split_whitespace().map(|p| p.parse().ok());
        Some((it.next()??, it.next()??))
    };
    let mut guard = KillOnDrop::default();
    let mut bosun = serve();
    guard.0.push(bosun.id());
    eventually("the script and its grandchild", || read_pids().is_some()).await;
    let (script, grandchild) = read_pids().expect("pids");
    guard.0.extend([script, grandchild]);
    // The group record is written by bosun's state thread soon after the
    // spawn; the case of a record never written is the marker's test.
    let state = s.root.path().join("state/supervisor.json");
    eventually("the group recorded", || {
        std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["groups"].as_object().is_some_and(|g| !g.is_empty()))
    })
    .await;
    bosun.kill().expect("SIGKILL bosun");
    bosun.wait().expect("reap bosun");
    assert!(
        alive(script) && alive(grandchild),
        "killed bosun's children live on until the next boot"
    );

    if drop_group_records {
        let mut saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state).expect("state file")).expect("JSON");
        saved["groups"] = serde_json::json!({});
        std::fs::write(&state, serde_json::to_vec(&saved).expect("JSON")).expect("rewrite state");
    }
    std::fs::remove_file(&pids_file).expect("rm");
    let mut bosun = serve();
    guard.0.push(bosun.id());
    eventually("the leftovers stopped", || {
        !alive(script) && !alive(grandchild)
    })
    .await;
    eventually("a fresh instance", || read_pids().is_some()).await;
    let (new_script, new_grandchild) = read_pids().expect("pids");
    guard.0.extend([new_script, new_grandchild]);
    assert_ne!(new_script, script);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bosun.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = bosun.wait().expect("bosun exits");
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    assert!(
        !alive(new_script) && !alive(new_grandchild),
        "graceful shutdown stops every process"
    );
    guard.0.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_dropped_without_shutdown_still_leaves_no_process() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"parent\"\ncommand = \"./parent.sh\"\nrestart_at = [\"10ms\"]\n",
    );
    s.script("parent.sh", "sleep 1000 &\necho \"$$ $!\" > pids\nwait");
    let (sup, _app) = s.start().await;
    let pids_file = s.app().join("pids");
    eventually("the pids", || {
        std::fs::read_to_string(&pids_file).is_ok_and(|t| t.split_whitespace().count() == 2)
    })
    .await;
    let pids: Vec<u32> = std::fs::read_to_string(&pids_file)
        .expect("pids")
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    std::fs::remove_file(&pids_file).expect("rm");
    drop(sup);
    eventually("the script and its grandchild killed", || {
        pids.iter().all(|p| !alive(*p))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pids_file.exists(), "nothing was restarted after the drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_get_recent_lines_then_live_ones_and_signals_reach_the_group() {
    let s =
        Setup::new("[[projects.app.processes]]\nname = \"ticker\"\ncommand = \"./ticker.sh\"\n");
    s.script(
        "ticker.sh",
        "trap 'echo got usr1' USR1\necho first\nwhile true; do sleep 0.05; done",
    );
    let (sup, app) = s.start().await;
    eventually("first line", || {
        app.logs(None, 10)
            .expect("logs")
            .iter()
            .any(|l| l.text == "first")
    })
    .await;
    let mut follow = app.follow(Some("ticker"), 10).expect("follow");
    assert!(
        follow.recent.iter().any(|l| l.text == "first"),
        "recent lines come first"
    );
    app.signal(Some("ticker"), nix::sys::signal::Signal::SIGUSR1)
        .await
        .expect("signal");
    // The whole group gets the signal, so the shell's `sleep` dies of it too
    // (and the shell says so) before the trap runs.
    tokio::time::timeout(Duration::from_secs(30), async {
        while follow.lines.recv().await.expect("open").text != "got usr1" {}
    })
    .await
    .expect("the trap's line arrives live");
    let err = app
        .signal(Some("nope"), nix::sys::signal::Signal::SIGUSR1)
        .await
        .expect_err("unknown name");
    assert_eq!(err.to_string(), "this project has no process named `nope`");
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_drive_their_own_project_through_the_handle_and_no_other() {
    use bosun::plugins::ProjectScope;
    use bosun::stock;
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"web\"\ncommand = \"sleep\"\nargs = [\"1000\"]\n\
         [projects.other]\ndir = \"other\"\n[[projects.other.processes]]\nname = \"db\"\ncommand = \"sleep\"\nargs = [\"1000\"]\n",
    );
    let (sup, app) = s.start().await;
    let other = sup.project("other").expect("other");
    eventually("both running", || {
        app.list()[0].state == State::Running && other.list()[0].state == State::Running
    })
    .await;
    let db_pid = other.list()[0].pid;
    let web_pid = app.list()[0].pid;

    let engine = common::engine();
    let restart = engine
        .load("restart", stock::bytes("restart").expect("stock"))
        .await
        .expect("loads");
    let scope = ProjectScope::new("app", s.app()).with_processes(Arc::new(app.clone()));
    let log = common::Log::default();
    let out = engine
        .run(
            &restart,
            common::request(scope.clone(), &[("ready_timeout", "20s")], &log),
        )
        .await
        .expect("restart succeeds");
    let out: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(out[0]["name"], "web");
    assert_eq!(out[0]["state"], "running");
    assert_ne!(app.list()[0].pid, web_pid, "web was restarted");

    let failure = engine
        .run(&restart, common::request(scope, &[("name", "db")], &log))
        .await
        .expect_err("db belongs to another project");
    assert_eq!(
        failure.message,
        "not found: this project has no process named `db`"
    );
    assert_eq!(
        other.list()[0].pid,
        db_pid,
        "the other project's process is untouched"
    );
    sup.shutdown().await;
}

/// The host pid of the process whose parent is `ppid`.
fn child_of(ppid: u32) -> Option<u32> {
    procfs::pids()
        .into_iter()
        .find(|pid| procfs::stat(*pid).is_some_and(|s| s.ppid == ppid))
}

/// Zombie children of `ppid`.
fn zombies_of(ppid: u32) -> usize {
    procfs::pids()
        .into_iter()
        .filter(|pid| procfs::stat(*pid).is_some_and(|s| s.state == 'Z' && s.ppid == ppid))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_pid_1_bosun_reaps_the_orphans_it_adopts() {
    let s = Setup::new("[[projects.app.processes]]\nname = \"leaky\"\ncommand = \"./leaky.sh\"\n");
    // Each round orphans a short-lived `sleep`, which PID 1 inherits.
    s.script("leaky.sh", "while true; do (sleep 0.05 &); sleep 0.2; done");
    let mut unshare = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_bosun"))
        .args(["serve", "--config"])
        .arg(s.root.path().join("bosun.toml"))
        .spawn()
        .expect("unshare (util-linux) runs bosun as PID 1 of a new pid namespace");
    let mut bosun = None;
    eventually("bosun as PID 1", || {
        bosun = child_of(unshare.id());
        bosun.is_some()
    })
    .await;
    let bosun = bosun.expect("found");
    let mut guard = KillOnDrop(vec![bosun]);
    eventually("leaky running", || {
        std::fs::read_to_string(format!("/proc/{bosun}/status")).is_ok()
    })
    .await;
    // An orphan appears about every 250 ms and may wait out the reaper's
    // 500 ms grace plus one scan, so a few can be pending at any moment;
    // unreaped, they would number about 16 after 4 s.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pending = zombies_of(bosun);
    assert!(
        pending <= 6,
        "{pending} zombies pile up under bosun as PID 1"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bosun as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    assert!(
        unshare.wait().expect("unshare exits").success(),
        "bosun as PID 1 exits cleanly on SIGTERM"
    );
    guard.0.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_over_max_memory_is_restarted_and_lines_can_carry_timestamps() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"hog\"\ncommand = \"python3\"\n\
         args = [\"-c\", \"import time\\nhoard = bytearray(64 << 20)\\nprint('holding', flush=True)\\ntime.sleep(1000)\"]\n\
         max_memory = \"32MiB\"\nrestart_at = [\"100ms\"]\ntimestamps = true\n",
    );
    let (sup, app) = s.start().await;
    eventually("restarted for its memory", || status(&app, 0).restarts >= 1).await;
    // bosun's notes carry the timestamp prefix too, so search the whole text.
    let texts: Vec<String> = app
        .logs(None, 100)
        .expect("logs")
        .iter()
        .map(|l| l.text.clone())
        .collect();
    assert!(
        texts.iter().any(|l| l.contains("[bosun] RSS ")
            && l.ends_with("stayed above max_memory 32.0 MiB; restarting")),
        "{texts:?}"
    );
    let holding: Vec<String> = app
        .logs(None, 100)
        .expect("logs")
        .iter()
        .map(|l| l.text.clone())
        .filter(|t| t.ends_with(" holding"))
        .collect();
    let stamp = holding
        .first()
        .expect("the hog's line")
        .trim_end_matches(" holding");
    assert!(
        humantime::parse_rfc3339(stamp).is_ok(),
        "an RFC 3339 prefix: {stamp:?}"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_sharing_a_name_get_instances_of_their_own() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"web\"\ncommand = \"sh\"\nargs = [\"-c\", \"echo first $BOSUN_INSTANCE; exec sleep 1000\"]\n\
         [[projects.app.processes]]\nname = \"web\"\ncommand = \"sh\"\nargs = [\"-c\", \"echo second $BOSUN_INSTANCE; exec sleep 1000\"]\ninstances = 2\n",
    );
    let (sup, app) = s.start().await;
    eventually("three running", || {
        app.list()
            .iter()
            .filter(|p| p.state == State::Running)
            .count()
            == 3
    })
    .await;
    let instances: Vec<u32> = app.list().iter().map(|p| p.instance).collect();
    assert_eq!(instances, vec![0, 1, 2]);
    eventually("each its own log file", || {
        [
            ("web-0", "first 0"),
            ("web-1", "second 1"),
            ("web-2", "second 2"),
        ]
        .iter()
        .all(|(label, line)| {
            std::fs::read_to_string(s.log_file(label)).is_ok_and(|t| t.contains(line))
        })
    })
    .await;
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_being_written_is_retried_on_the_schedule_not_made_fatal() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"web\"\ncommand = \"./server\"\nargs = [\"1000\"]\nrestart_at = [\"200ms\"]\n",
    );
    let program = s.app().join("server");
    std::fs::copy("/bin/sleep", &program).expect("copy a binary");
    // Held open for writing, as a deploy copying it in would: exec gives
    // ETXTBSY, which passes.
    let writing = std::fs::OpenOptions::new()
        .append(true)
        .open(&program)
        .expect("open for writing");
    if let Err(e) = std::process::Command::new(&program).arg("0").status() {
        assert_eq!(e.raw_os_error(), Some(libc::ETXTBSY), "{e}");
    } else {
        eprintln!("this kernel runs a program open for writing; nothing to test");
        return;
    }
    let (sup, app) = s.start().await;
    eventually("a retry", || status(&app, 0).restarts >= 2).await;
    let st = status(&app, 0);
    assert_ne!(st.state, State::Fatal, "{st:?}");
    assert!(
        st.message.as_deref().is_some_and(|m| m.contains("busy")),
        "{st:?}"
    );
    drop(writing);
    eventually("running once written", || {
        status(&app, 0).state == State::Running
    })
    .await;
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_state_file_is_set_aside_and_bosun_starts() {
    let s = Setup::new(
        "[[projects.app.processes]]\nname = \"web\"\ncommand = \"sleep\"\nargs = [\"1000\"]\n",
    );
    let state = s.root.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    for broken in ["", "{\"desired\": {\"app/web-0\": tru"] {
        std::fs::write(state.join("supervisor.json"), broken).expect("a broken state file");
        let (sup, app) = s.start().await;
        eventually("running", || status(&app, 0).state == State::Running).await;
        sup.shutdown().await;
    }
    let aside: Vec<String> = std::fs::read_dir(&state)
        .expect("state dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("supervisor.json.bad-"))
        .collect();
    assert_eq!(aside.len(), 2, "{aside:?}");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("supervisor.json")).expect("state"))
            .expect("a good state file again");
    assert!(saved["desired"].is_object(), "{saved}");
}

/// A recorded group whose leader has exited: its id now belongs to an
/// unrelated group (here one whose members all started later). The boot
/// sweep must leave it alone: it carries no marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_boot_sweep_spares_a_group_that_reused_a_recorded_id() {
    use std::os::unix::process::CommandExt as _;
    let s = Setup::new("");
    let pids = s.root.path().join("stranger");
    let mut leader = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("sleep 1000 & echo $! > {}", pids.display()))
        .process_group(0)
        .spawn()
        .expect("an unrelated group");
    let pgid = leader.id() as i32;
    leader.wait().expect("its leader exits");
    let member: i32 = std::fs::read_to_string(&pids)
        .expect("member pid")
        .trim()
        .parse()
        .expect("pid");
    let _guard = KillOnDrop(vec![member as u32]);
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    let state = s.root.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let record = serde_json::json!({
        "desired": {},
        "groups": {"app/old-0": {"pgid": pgid, "start_time": 0, "boot_id": boot_id.trim()}},
    });
    std::fs::write(state.join("supervisor.json"), record.to_string()).expect("state file");
    let (sup, _app) = s.start().await;
    assert!(
        alive(member as u32),
        "the sweep killed an unrelated process"
    );
    sup.shutdown().await;
}
