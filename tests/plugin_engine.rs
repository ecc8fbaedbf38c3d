//! The plugin engine end to end: real components built from `plugins/`, run
//! in the real engine, against real temp dirs. Hostile fixtures are contained
//! with the right failure kind, and the same engine then still runs a
//! normal plugin.
//!
//! Run with: cargo test --test plugin_engine

mod common;

use std::os::unix::fs::symlink;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bosun::plugins::bindings::{CallError, ProcessInfo, ProcessState, UnixSignal};
use bosun::plugins::grants::ProcessControl;
use bosun::plugins::{Allocation, Engine, FailureKind, Plugin, ProjectScope, Stream};
use bosun::stock;
use common::{Log, engine, guest, project_dir, request};
use serde_json::Value;

async fn hostile(engine: &Engine) -> Plugin {
    engine
        .load("hostile", &guest("fixture_hostile"))
        .await
        .expect("hostile fixture loads")
}

/// The engine still runs a well-behaved plugin after whatever came before.
async fn assert_still_works(engine: &Engine, plugin: &Plugin) {
    let (result, _) = run_mode(engine, plugin, "noop").await;
    assert_eq!(
        result,
        Ok(String::new()),
        "a no-op run after the hostile one"
    );
}

async fn run_mode(
    engine: &Engine,
    plugin: &Plugin,
    mode: &str,
) -> (Result<String, bosun::plugins::RunFailure>, Log) {
    let dir = project_dir();
    let log = Log::default();
    let result = engine
        .run(
            plugin,
            request(
                ProjectScope::new("demo", dir.path()),
                &[("mode", mode)],
                &log,
            ),
        )
        .await;
    (result, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_plugins_load_and_describe_themselves() {
    let engine = engine();
    let names: Vec<&str> = stock::names().collect();
    assert_eq!(
        names,
        [
            "deploy", "restart", "rollback", "start", "status", "stop", "update"
        ]
    );
    for name in names {
        let plugin = engine
            .load(name, stock::bytes(name).expect("embedded"))
            .await
            .expect("stock plugin loads");
        assert_eq!(plugin.meta().name, name);
        assert!(!plugin.meta().summary.is_empty(), "{name} has a summary");
    }
    let restart = engine
        .load("restart", stock::bytes("restart").expect("embedded"))
        .await
        .expect("loads");
    let ready = restart
        .meta()
        .params
        .iter()
        .find(|p| p.name == "ready_timeout")
        .expect("declares ready_timeout");
    assert_eq!(ready.default.as_deref(), Some("60s"));
    assert!(!ready.required);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_run_sees_what_an_earlier_run_left_in_memory() {
    // Pooled slots are reused (and reset with memset, not always madvise):
    // each run must still start from the component's pristine memory.
    let engine = engine();
    let plugin = hostile(&engine).await;
    for _ in 0..3 {
        let (result, _) = run_mode(&engine, &plugin, "residue").await;
        let out: Value = serde_json::from_str(&result.expect("runs")).expect("JSON");
        assert_eq!(out, serde_json::json!({"runs": 1, "dirty_bytes": 0}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_sees_only_its_project_dir_and_its_bosun_env() {
    let engine = engine();
    let plugin = hostile(&engine).await;
    let (result, log) = run_mode(&engine, &plugin, "env").await;
    let out: Value = serde_json::from_str(&result.expect("env run succeeds")).expect("JSON result");
    assert_eq!(out["env"]["BOSUN_PROJECT"], "demo");
    assert_eq!(out["env"]["BOSUN_ACTION"], "hostile");
    assert_eq!(out["env"]["BOSUN_JOB_ID"], "job-1");
    assert_eq!(
        out["env"].as_object().expect("env object").len(),
        3,
        "no host env leaks in: {}",
        out["env"]
    );
    assert_eq!(
        out["root"],
        serde_json::json!(["app.txt"]),
        "`/` is the project dir"
    );
    assert_eq!(
        log.of(Stream::Stdout),
        ["first line", "second line", "partial tail"]
    );
    assert_eq!(log.of(Stream::Stderr), ["to stderr"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_times_out() {
    let engine = engine();
    let plugin = hostile(&engine).await;
    let dir = project_dir();
    let log = Log::default();
    let mut req = request(
        ProjectScope::new("demo", dir.path()),
        &[("mode", "loop")],
        &log,
    );
    req.limits.timeout = Duration::from_millis(300);
    let failure = engine
        .run(&plugin, req)
        .await
        .expect_err("a loop cannot finish");
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure}");
    assert_eq!(failure.message, "did not finish within 300ms");
    assert_still_works(&engine, &plugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_hits_the_memory_limit() {
    let engine = engine();
    let plugin = hostile(&engine).await;
    let (result, _) = run_mode(&engine, &plugin, "alloc").await;
    let failure = result.expect_err("allocation is capped");
    assert_eq!(failure.kind, FailureKind::MemoryLimit, "{failure}");
    assert!(
        failure.message.contains(&(64u64 << 20).to_string()),
        "{failure}"
    );
    assert_still_works(&engine, &plugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_trap_with_the_panic_message_in_the_log() {
    let engine = engine();
    let plugin = hostile(&engine).await;
    let (result, log) = run_mode(&engine, &plugin, "panic").await;
    let failure = result.expect_err("a panic fails the run");
    assert_eq!(failure.kind, FailureKind::Trap, "{failure}");
    assert!(failure.message.contains("unreachable"), "{failure}");
    let stderr = log.of(Stream::Stderr).join("\n");
    assert!(
        stderr.contains("boom from the hostile plugin"),
        "panic message in the log: {stderr}"
    );
    assert_still_works(&engine, &plugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_error_keeps_its_own_kind_and_message() {
    let engine = engine();
    let plugin = hostile(&engine).await;
    let (result, _) = run_mode(&engine, &plugin, "error").await;
    let failure = result.expect_err("the plugin reports failure");
    assert_eq!(failure.kind, FailureKind::PluginError);
    assert_eq!(
        failure.message,
        "failed: the plugin reports a failure of its own"
    );

    let dir = project_dir();
    let log = Log::default();
    let missing = engine
        .run(
            &plugin,
            request(ProjectScope::new("demo", dir.path()), &[], &log),
        )
        .await;
    let failure = missing.expect_err("mode is required");
    assert_eq!(failure.kind, FailureKind::PluginError);
    assert_eq!(failure.message, "invalid: missing required param `mode`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_escapes_are_refused_and_nothing_outside_is_touched() {
    let engine = engine();
    let plugin = hostile(&engine).await;
    let root = tempfile::TempDir::new().expect("temp");
    let project = root.path().join("project");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(project.join("sub")).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(root.path().join("outside.txt"), "secret").expect("write");
    std::fs::write(outside.join("outside.txt"), "secret").expect("write");
    symlink(&outside, project.join("link")).expect("plant a symlink pointing outside");
    let secret_abs = outside.join("outside.txt");

    let log = Log::default();
    let req = request(
        ProjectScope::new("demo", &project),
        &[
            ("mode", "escape"),
            ("outside", secret_abs.to_str().expect("utf-8 path")),
        ],
        &log,
    );
    let report: Value =
        serde_json::from_str(&engine.run(&plugin, req).await.expect("runs")).expect("JSON");
    for (attempt, outcome) in report.as_object().expect("report object") {
        if attempt == "write_inside" {
            assert!(
                outcome.get("ok").is_some(),
                "writing inside the project works: {outcome}"
            );
        } else {
            assert!(
                outcome.get("err").is_some(),
                "{attempt} must be refused, got {outcome}"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(project.join("inside.txt")).expect("inside"),
        "fine"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("outside.txt")).expect("kept"),
        "secret"
    );
    assert_eq!(
        std::fs::read_to_string(&secret_abs).expect("kept"),
        "secret"
    );
    let mut outside_entries: Vec<_> = std::fs::read_dir(&outside)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    outside_entries.sort();
    assert_eq!(outside_entries, ["outside.txt"], "nothing created outside");
    let mut root_entries: Vec<_> = std::fs::read_dir(root.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    root_entries.sort();
    assert_eq!(
        root_entries,
        ["outside", "outside.txt", "project"],
        "nothing created beside the project"
    );
    assert_still_works(&engine, &plugin).await;
}

/// Start `req`, cancel it once it is under way, and return how it ended.
async fn run_then_cancel(
    engine: &Engine,
    plugin: &Plugin,
    req: bosun::plugins::RunRequest,
) -> bosun::plugins::RunFailure {
    let cancel = req.cancel.clone();
    let run = tokio::spawn({
        let engine = engine.clone();
        let plugin = plugin.clone();
        async move { engine.run(&plugin, req).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the run ends once cancelled")
        .expect("no panic")
        .expect_err("cancelled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_stops_a_running_loop() {
    let engine = engine();
    let plugin = hostile(&engine).await;
    let dir = project_dir();
    let log = Log::default();
    let req = request(
        ProjectScope::new("demo", dir.path()),
        &[("mode", "loop")],
        &log,
    );
    let failure = run_then_cancel(&engine, &plugin, req).await;
    assert_eq!(failure.kind, FailureKind::Cancelled);
    assert_still_works(&engine, &plugin).await;
}

/// A process backend whose `wait_ready` never returns, and which notes when
/// the host call's future is dropped.
#[derive(Default)]
struct StuckProcesses {
    dropped: Arc<AtomicBool>,
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl ProcessControl for StuckProcesses {
    async fn list(&self) -> Vec<ProcessInfo> {
        Vec::new()
    }
    async fn start(&self, _: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        Ok(Vec::new())
    }
    async fn stop(&self, _: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        Ok(Vec::new())
    }
    async fn restart(&self, _: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        Ok(Vec::new())
    }
    async fn signal(&self, _: Option<&str>, _: UnixSignal) -> Result<Vec<ProcessInfo>, CallError> {
        Ok(Vec::new())
    }
    async fn wait_ready(
        &self,
        _: Option<&str>,
        _: Duration,
    ) -> Result<Vec<ProcessInfo>, CallError> {
        let _guard = SetOnDrop(self.dropped.clone());
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_cuts_off_a_host_call_in_flight() {
    let engine = engine();
    let plugin = hostile(&engine).await;
    let dir = project_dir();
    let stuck = Arc::new(StuckProcesses::default());
    let dropped = stuck.dropped.clone();
    let log = Log::default();
    let mut req = request(
        ProjectScope::new("demo", dir.path()).with_processes(stuck),
        &[("mode", "wait")],
        &log,
    );
    req.limits.timeout = Duration::from_millis(300);
    let failure = engine
        .run(&plugin, req)
        .await
        .expect_err("the host call never returns");
    assert_eq!(failure.kind, FailureKind::Timeout);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the in-flight host call was dropped"
    );
    assert_still_works(&engine, &plugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_cuts_off_a_host_call_in_flight() {
    let engine = engine();
    let plugin = hostile(&engine).await;
    let dir = project_dir();
    let stuck = Arc::new(StuckProcesses::default());
    let dropped = stuck.dropped.clone();
    let log = Log::default();
    let req = request(
        ProjectScope::new("demo", dir.path()).with_processes(stuck),
        &[("mode", "wait")],
        &log,
    );
    let failure = run_then_cancel(&engine, &plugin, req).await;
    assert_eq!(failure.kind, FailureKind::Cancelled);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the in-flight host call was dropped"
    );
}

/// A process backend that records what it was asked.
#[derive(Default)]
struct RecordingProcesses {
    calls: Mutex<Vec<String>>,
}

fn web(state: ProcessState) -> ProcessInfo {
    ProcessInfo {
        name: "web".into(),
        instance: 0,
        pid: Some(4242),
        state,
        restarts: 1,
        uptime_ms: 1500,
        exit_code: None,
        exit_signal: None,
        cpu_percent: 0.5,
        rss_bytes: 1 << 20,
    }
}

#[async_trait]
impl ProcessControl for RecordingProcesses {
    async fn list(&self) -> Vec<ProcessInfo> {
        self.calls.lock().expect("lock").push("list".into());
        vec![web(ProcessState::Stopped)]
    }
    async fn start(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        self.calls
            .lock()
            .expect("lock")
            .push(format!("start {name:?}"));
        Ok(vec![web(ProcessState::Running)])
    }
    async fn stop(&self, _: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        Err(CallError::Failed("not expected".into()))
    }
    async fn restart(&self, _: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        Err(CallError::Failed("not expected".into()))
    }
    async fn signal(&self, _: Option<&str>, _: UnixSignal) -> Result<Vec<ProcessInfo>, CallError> {
        Err(CallError::Failed("not expected".into()))
    }
    async fn wait_ready(
        &self,
        _: Option<&str>,
        _: Duration,
    ) -> Result<Vec<ProcessInfo>, CallError> {
        Err(CallError::Failed("not expected".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_reach_the_project_backend_and_nothing_else() {
    let engine = engine();
    let plugin = hostile(&engine).await;
    let dir = project_dir();
    let recorder = Arc::new(RecordingProcesses::default());
    let log = Log::default();
    let req = request(
        ProjectScope::new("demo", dir.path()).with_processes(recorder.clone()),
        &[("mode", "processes")],
        &log,
    );
    let out: Value =
        serde_json::from_str(&engine.run(&plugin, req).await.expect("runs")).expect("JSON");
    assert_eq!(
        *recorder.calls.lock().expect("lock"),
        ["start Some(\"web\")", "list"]
    );
    assert_eq!(out["started"][0]["state"], "running");
    assert_eq!(out["started"][0]["pid"], 4242);
    assert_eq!(out["listed"][0]["state"], "stopped");

    // A project without a process backend has no processes at all.
    let (result, _) = run_mode(&engine, &plugin, "processes").await;
    let failure = result.expect_err("no process named web");
    assert_eq!(failure.kind, FailureKind::PluginError);
    assert_eq!(
        failure.message,
        "not found: this project has no process named `web`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_against_the_published_0_1_0_contract_still_runs() {
    // Built from `wit/published/0.1.0`: its imports name `@0.1.0`, the
    // host links 0.1.1.
    let engine = engine();
    let plugin = engine
        .load("old", &guest("fixture_contract_0_1_0"))
        .await
        .expect("an 0.1.0 plugin loads");
    let dir = project_dir();
    let log = Log::default();
    let req = request(
        ProjectScope::new("demo", dir.path())
            .with_processes(Arc::new(RecordingProcesses::default())),
        &[],
        &log,
    );
    assert_eq!(engine.run(&plugin, req).await.expect("runs"), "web:4242");
    let bytes = guest("fixture_contract_0_1_0");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("bosun:plugin/processes@0.1.0") && !text.contains("@0.1.1"),
        "the fixture targets 0.1.0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_beyond_the_concurrency_limit_wait_for_a_slot() {
    let state = tempfile::TempDir::new().expect("temp");
    let engine = Engine::new(&bosun::plugins::EngineConfig {
        state_dir: state.path().to_path_buf(),
        max_concurrent_runs: 1,
        max_memory: 1 << 30,
        pooling: true,
        compiler: None,
    })
    .expect("engine");
    let plugin = hostile(&engine).await;
    let dir = project_dir();
    let log = Log::default();
    let blocker = request(
        ProjectScope::new("demo", dir.path()).with_processes(Arc::new(StuckProcesses::default())),
        &[("mode", "wait")],
        &log,
    );
    let unblock = blocker.cancel.clone();
    let first = tokio::spawn({
        let (engine, plugin) = (engine.clone(), plugin.clone());
        async move { engine.run(&plugin, blocker).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = tokio::spawn({
        let (engine, plugin) = (engine.clone(), plugin.clone());
        let req = request(
            ProjectScope::new("demo", dir.path()),
            &[("mode", "noop")],
            &log,
        );
        async move { engine.run(&plugin, req).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second run waits while the only slot is taken"
    );
    unblock.cancel();
    assert_eq!(
        first.await.expect("no panic").expect_err("cancelled").kind,
        FailureKind::Cancelled
    );
    let second = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("gets the slot");
    assert_eq!(second.expect("no panic"), Ok(String::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_exporting_the_wrong_world_is_an_invalid_plugin() {
    let engine = engine();
    let err = match engine.load("wrong", &guest("fixture_wrong_export")).await {
        Ok(_) => panic!("a component without the action export must not load"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), FailureKind::InvalidPlugin);
    assert_eq!(err.plugin, "wrong");
    assert!(
        err.reason.contains("does not export `bosun:plugin/action`"),
        "{err}"
    );
    let plugin = hostile(&engine).await;
    assert_still_works(&engine, &plugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_with_an_unknown_import_is_an_invalid_plugin_naming_it() {
    let engine = engine();
    let err = match engine.load("later", &guest("fixture_unknown_import")).await {
        Ok(_) => panic!("an import the host does not provide must not load"),
        Err(e) => e,
    };
    assert!(
        err.reason
            .contains("does not fit the imports of the action-plugin world"),
        "{err}"
    );
    assert!(
        err.reason.contains("fixture:later/secrets"),
        "names the import: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_components_are_refused_with_a_reason() {
    let engine = engine();
    let cases: [(&[u8], &str); 4] = [
        (b"", "the file is empty"),
        (b"#!/bin/sh\necho hi\n", "is not a WebAssembly file"),
        (
            b"\0asm\x01\0\0\0",
            "is a core WebAssembly module, not a component",
        ),
        (b"\0asm\x0d\0\x01\0\xff\xff", "not a valid component"),
    ];
    for (bytes, expected) in cases {
        let err = match engine.load("bad", bytes).await {
            Ok(_) => panic!("{bytes:?} must not load"),
            Err(e) => e,
        };
        assert!(
            err.reason.contains(expected),
            "{bytes:?}: expected `{expected}` in `{err}`"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_components_are_cached_and_a_tampered_cache_is_not_trusted() {
    let state = tempfile::TempDir::new().expect("temp");
    let wasm = guest("fixture_hostile");
    let first = common::engine_in(state.path(), true)
        .load("h", &wasm)
        .await
        .expect("loads");
    assert_eq!(first.origin(), bosun::plugins::Origin::Compiled);
    let engine = common::engine_in(state.path(), true);
    let second = engine.load("h", &wasm).await.expect("loads");
    assert_eq!(
        second.origin(),
        bosun::plugins::Origin::Cache,
        "a new engine reuses the compiled code"
    );
    assert_still_works(&engine, &second).await;

    let dir = state.path().join("cache/components");
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut bytes = std::fs::read(&entries[0]).expect("read entry");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&entries[0], bytes).expect("tamper");
    let engine = common::engine_in(state.path(), true);
    let third = engine.load("h", &wasm).await.expect("still loads");
    assert_eq!(
        third.origin(),
        bosun::plugins::Origin::Compiled,
        "a tampered entry is recompiled, not loaded"
    );
    assert_still_works(&engine, &third).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_falls_back_to_on_demand_when_pooling_cannot_reserve_memory() {
    let state = tempfile::TempDir::new().expect("temp");
    // 4 runs x 8 memories x 2^46 bytes is more address space than x86_64 has.
    let engine = Engine::new(&bosun::plugins::EngineConfig {
        state_dir: state.path().to_path_buf(),
        max_concurrent_runs: 4,
        max_memory: 1 << 46,
        pooling: true,
        compiler: None,
    })
    .expect("engine starts anyway");
    assert_eq!(engine.allocation(), Allocation::OnDemand);
    let plugin = hostile(&engine).await;
    assert_still_works(&engine, &plugin).await;

    assert_eq!(
        common::engine_in(state.path(), true).allocation(),
        Allocation::Pooling
    );
    assert_eq!(
        common::engine_in(state.path(), false).allocation(),
        Allocation::OnDemand
    );
}
