//! Stopping, leaving nothing behind: graceful and forced stops of whole
//! groups, shutdown and restore, a killed bosun's leftovers found at the
//! next boot, reaping as PID 1, and the state file.

use std::collections::BTreeSet;

use super::*;

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
    let journal = s.root.path().join("state/supervisor.journal");
    eventually("the group recorded", || {
        recorded_groups(&state, &journal) > 0
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
        // The journal's records go too (the desired states it holds are
        // not this test's: every process here starts by `autostart`).
        std::fs::remove_file(&journal).expect("remove the journal");
        assert_eq!(recorded_groups(&state, &journal), 0);
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

/// How many process groups bosun's state on disk records: the snapshot's,
/// then the journal's changes replayed over them (a line cut short ends
/// the replay, as it does for bosun).
fn recorded_groups(snapshot: &Path, journal: &Path) -> usize {
    let Some(saved) = std::fs::read(snapshot)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return 0;
    };
    let mut groups: BTreeSet<String> = saved["groups"]
        .as_object()
        .map(|g| g.keys().cloned().collect())
        .unwrap_or_default();
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    for line in text.lines().skip(1) {
        let Ok(change) = serde_json::from_str::<serde_json::Value>(line) else {
            break;
        };
        if let Some(key) = change["group"]["key"].as_str() {
            groups.insert(key.to_string());
        } else if let Some(key) = change["ungroup"]["key"].as_str() {
            groups.remove(key);
        } else if change == "no_groups" {
            groups.clear();
        }
    }
    groups.len()
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
