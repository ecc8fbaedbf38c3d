//! A process's life: the restart schedule, readiness, memory caps, and
//! programs that cannot start or are still being written.

use super::*;

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

/// A readiness probe that hangs (the port accepts, nothing answers) while
/// the memory check also ticks every second: the probe in flight must not
/// be started over at every tick, or the deadline would never be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_probe_still_meets_its_deadline_while_memory_is_watched() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port();
    let s = Setup::new(&format!(
        "[[projects.app.processes]]\nname = \"mute\"\ncommand = \"python3\"\n\
         args = [\"-c\", \"import socket, time\\ns = socket.socket()\\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\\n\
         s.bind(('127.0.0.1', {port}))\\ns.listen(64)\\nheld = []\\n\
         while True: held.append(s.accept())\"]\n\
         max_memory = \"1GiB\"\nrestart_at = [\"50ms\"]\n\
         ready = {{ http = \"/healthz\", port = {port}, timeout = \"3s\" }}\n"
    ));
    let (sup, app) = s.start().await;
    eventually("mute restarted for missing its deadline", || {
        status(&app, 0).restarts >= 1
    })
    .await;
    assert!(
        notes(&app)
            .iter()
            .any(|n| n == "not ready within 3s; restarting"),
        "{:?}",
        notes(&app)
    );
    sup.shutdown().await;
}
