//! What the benchmarks share: their knobs, read from the environment, and
//! the runtime they run in. Each bench takes it with `mod common;`.
#![allow(dead_code)] // each bench uses its own subset

/// The count the environment variable `name` gives (`BENCH_REQUESTS=50`),
/// else `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A multi-threaded tokio runtime, as `bosun serve` runs in.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}
