//! One no-op action run, end to end: a slot, a fresh `Store` with its WASI
//! context and project preopen, instantiate from the cached `InstancePre`,
//! `run(params)` (the SDK checks the params), drop. Measured with the pooling
//! allocator and with on-demand allocation.
//!
//! Run with: cargo bench -p bosun --bench plugin_run
//! (set BENCH_RUNS to change the number of timed runs; default 20000)

mod common;

use common::env_count;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun::plugins::{
    Allocation, Engine, EngineConfig, LogSink, ProjectScope, RunLimits, RunRequest,
};
use tokio_util::sync::CancellationToken;

const WARMUP: usize = 1_000;

fn main() {
    let runs: usize = env_count("BENCH_RUNS", 20_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let wasm_path = std::path::Path::new(env!("BOSUN_GUEST_DIR")).join("fixture_hostile.wasm");
    let wasm = std::fs::read(&wasm_path).expect("the hostile fixture is built by build.rs");
    let project = tempfile::TempDir::new().expect("temp project");

    println!("no-op action run: {runs} timed runs after {WARMUP} warm-up runs, one at a time\n");
    println!("| allocator | median | p99 | runs/s |");
    println!("|---|---|---|---|");
    for pooling in [true, false] {
        let state = tempfile::TempDir::new().expect("temp state");
        let engine = Engine::new(&EngineConfig {
            state_dir: state.path().to_path_buf(),
            max_concurrent_runs: 16,
            max_memory: 1 << 30,
            pooling,
            compiler: None,
        })
        .expect("engine");
        let plugin = rt.block_on(engine.load("noop", &wasm)).expect("loads");
        let sink: LogSink = Arc::new(|_, _| {});
        let one_run = || {
            let req = RunRequest {
                scope: ProjectScope::new("bench", project.path()),
                action: "noop".into(),
                job_id: "bench".into(),
                params: vec![("mode".into(), "noop".into())],
                limits: RunLimits {
                    timeout: Duration::from_secs(10),
                    memory: 64 << 20,
                    max_output: 1 << 20,
                },
                log: sink.clone(),
                cancel: CancellationToken::new(),
            };
            rt.block_on(engine.run(&plugin, req))
                .expect("a no-op run succeeds");
        };
        for _ in 0..WARMUP {
            one_run();
        }
        let mut times = Vec::with_capacity(runs);
        let start = Instant::now();
        for _ in 0..runs {
            let t = Instant::now();
            one_run();
            times.push(t.elapsed());
        }
        let total = start.elapsed();
        times.sort();
        let name = match engine.allocation() {
            Allocation::Pooling => "pooling",
            Allocation::OnDemand => "on-demand",
        };
        println!(
            "| {name} | {:.1} µs | {:.1} µs | {:.0} |",
            micros(times[runs / 2]),
            micros(times[runs * 99 / 100]),
            runs as f64 / total.as_secs_f64()
        );
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
