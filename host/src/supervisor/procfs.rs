//! What the supervisor reads from `/proc`: each process's group, state,
//! start time, CPU ticks and RSS. Reading it directly (rather than through a
//! crate) keeps one scan cheap enough to run every second for hundreds of
//! processes, and the fields are stable kernel ABI.

use std::fs;

/// The fields of `/proc/<pid>/stat` the supervisor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: i32,
    /// Single-letter state; `Z` is a zombie (exited, not yet reaped).
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, in clock ticks: with the pid, it identifies a
    /// process across pid reuse.
    pub start_time: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

impl ProcStat {
    /// Whether the process still runs (a zombie has exited).
    pub fn is_live(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// Parse one `/proc/<pid>/stat` line. The command name may contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub(crate) fn parse_stat(pid: i32, line: &str) -> Option<ProcStat> {
    let rest = &line[line.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(ProcStat {
        pid,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        cpu_ticks: num(11)? + num(12)?,
        start_time: num(19)?,
        rss_pages: num(21)?,
    })
}

/// The stat of one process, if it exists.
pub(crate) fn stat(pid: i32) -> Option<ProcStat> {
    let line = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &line)
}

/// The stat of every process on the machine.
pub(crate) fn all() -> Vec<ProcStat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        stat(pid)
    })
    .collect()
}

/// Live (non-zombie) members of process group `pgid`.
pub(crate) fn live_members(pgid: i32) -> Vec<ProcStat> {
    all()
        .into_iter()
        .filter(|p| p.pgrp == pgid && p.is_live())
        .collect()
}

/// Whether process `pid` was started with exactly `entry` (`KEY=value`) in
/// its environment.
pub(crate) fn environ_has(pid: i32, entry: &str) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
}

/// This boot's id: start times only compare within one boot.
pub(crate) fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let line = "4242 (my (weird) app) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 123456 1000000 250 18446744073709551615";
        let s = parse_stat(4242, line).expect("parses");
        assert_eq!((s.state, s.ppid, s.pgrp), ('S', 1, 4242));
        assert_eq!(s.cpu_ticks, 10);
        assert_eq!(s.start_time, 123456);
        assert_eq!(s.rss_pages, 250);
    }

    #[test]
    fn reads_this_process() {
        let me = stat(std::process::id() as i32).expect("our own stat");
        assert!(me.is_live());
        assert!(me.start_time > 0);
    }
}
