//! A plugin that writes 100 MB to stdout: the run succeeds, the log is cut at
//! the cap with notes saying so, and the host does not buffer the flood.
//! Alone in its test binary so the process's peak RSS means something.
//!
//! Run with: cargo test --test plugin_output

mod common;

use bosun::plugins::{ProjectScope, Stream};
use common::{Log, engine, guest, project_dir, request};

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .expect("value")
        .parse()
        .expect("number");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_flood_is_truncated_and_host_memory_stays_bounded() {
    let engine = engine();
    let plugin = engine
        .load("hostile", &guest("fixture_hostile"))
        .await
        .expect("loads");
    let dir = project_dir();
    let log = Log::default();
    let req = request(
        ProjectScope::new("demo", dir.path()),
        &[("mode", "flood")],
        &log,
    );
    let cap = req.limits.max_output;
    let peak_before = peak_rss_bytes();
    let result = engine.run(&plugin, req).await;
    let peak_growth = peak_rss_bytes().saturating_sub(peak_before);

    assert_eq!(
        result,
        Ok("flooded".to_string()),
        "a flood is cut short in the log, not failed"
    );
    let stdout = log.of(Stream::Stdout);
    // Every line but the last had its newline; the last was cut mid-line.
    let kept: usize = stdout.iter().map(|l| l.len() + 1).sum::<usize>() - 1;
    assert_eq!(kept, cap, "exactly the cap is kept");
    let (last, whole) = stdout.split_last().expect("some output");
    assert!(
        whole.iter().all(|l| l.len() == 99),
        "whole lines up to the cut"
    );
    assert_eq!(last.len(), cap % 100, "the cut line is kept up to the cap");
    let host = log.of(Stream::Host);
    assert_eq!(
        host,
        [
            format!("[bosun] output cap of {cap} bytes reached; further output is dropped"),
            format!(
                "[bosun] {} bytes of plugin output were dropped",
                100_000_000 - cap
            ),
        ]
    );
    assert!(
        peak_growth < 32 << 20,
        "peak RSS grew by {peak_growth} bytes during a 100 MB flood"
    );
}
