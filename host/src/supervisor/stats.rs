//! CPU and memory of each running instance, sampled from `/proc` once a
//! second. Both cover the whole process group: a shell script's real work
//! happens in its children, and a number for the script alone would hide it.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use nix::unistd::{SysconfVar, sysconf};

use super::Statuses;
use super::procfs;
use super::status::Status;

/// How often stats are sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Sample forever (until the task is aborted) for `instances`.
pub(crate) async fn sample(statuses: Statuses) {
    let ticks_per_sec = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    let page = sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    let mut last: HashMap<i32, (u64, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let mut groups: HashMap<i32, (u64, u64)> = HashMap::new();
        for p in procfs::all().into_iter().filter(|p| p.is_live()) {
            let g = groups.entry(p.pgrp).or_default();
            g.0 += p.cpu_ticks;
            g.1 += p.rss_pages;
        }
        let now = Instant::now();
        let mut seen = HashMap::new();
        let instances = statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for status in &instances {
            // Read first: a let-else keeps the read guard alive in its else
            // block, where the write would deadlock.
            let pid = status.borrow().pid;
            let Some(pid) = pid else {
                status.send_if_modified(clear);
                continue;
            };
            let pgid = pid as i32;
            let (ticks, pages) = groups.get(&pgid).copied().unwrap_or_default();
            let cpu = match last.get(&pgid) {
                Some((before, at)) if ticks >= *before => {
                    let secs = now.duration_since(*at).as_secs_f64().max(1e-3);
                    ((ticks - before) as f64 / ticks_per_sec / secs * 100.0) as f32
                }
                _ => 0.0,
            };
            seen.insert(pgid, (ticks, now));
            status.send_if_modified(|s| {
                let changed = s.cpu_percent != cpu || s.rss_bytes != pages * page;
                s.cpu_percent = cpu;
                s.rss_bytes = pages * page;
                changed
            });
        }
        last = seen;
    }
}

fn clear(s: &mut Status) -> bool {
    let changed = s.cpu_percent != 0.0 || s.rss_bytes != 0;
    s.cpu_percent = 0.0;
    s.rss_bytes = 0;
    changed
}
