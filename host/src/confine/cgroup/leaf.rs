//! A program's cgroup2 leaf, and what bosun does with a cgroup's
//! processes: list, signal, kill, wait for them to go.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::write_file;

/// One program's (or instance's) cgroup2 leaf. Dropping it kills what is
/// still in it and removes it.
#[derive(Debug)]
pub struct Leaf {
    pub(super) dir: PathBuf,
    pub(super) procs: Arc<OwnedFd>,
}

impl Leaf {
    /// Keep the leaf and what runs in it: an upgrade hands them to the
    /// next bosun image, which opens the leaf again by name.
    pub fn keep(self) {
        std::mem::forget(self);
    }

    /// Its name in its project's cgroup, which an upgrade hands over.
    pub fn name(&self) -> Option<String> {
        Some(self.dir.file_name()?.to_string_lossy().into_owned())
    }

    /// The fd a child writes "0" to, to join.
    pub(crate) fn procs(&self) -> Arc<OwnedFd> {
        self.procs.clone()
    }

    /// Whether any process is left in it.
    pub fn is_empty(&self) -> bool {
        pids(&self.dir).is_empty()
    }

    /// Send `signal` to every process in it for which `pick` holds.
    pub fn signal_where(&self, signal: Signal, pick: impl Fn(i32) -> bool) {
        for pid in pids(&self.dir).into_iter().filter(|p| pick(*p)) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Kill every process in it.
    pub fn kill(&self) {
        kill_all(&self.dir);
    }

    /// Wait until it is empty; false on timeout.
    pub async fn wait_empty(&self, timeout: Duration) -> bool {
        wait_empty(&self.dir, timeout).await
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        // Usually empty by now (its program was stopped); otherwise killed
        // processes take a moment to go.
        drain(&self.dir, Duration::from_millis(100));
        if std::fs::remove_dir(&self.dir).is_ok() {
            return;
        }
        let dir = std::mem::take(&mut self.dir);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                wait_empty(&dir, Duration::from_secs(10)).await;
                let _ = std::fs::remove_dir(&dir);
            });
        }
    }
}

/// The pids in cgroup `dir` (not counting its children).
pub(super) fn pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

pub(super) fn signal_all(dir: &Path, signal: Signal) {
    for pid in pids(dir) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// `cgroup.kill` where the kernel has it (5.14), else SIGKILL to each pid
/// until none is left (a fork between the read and the kill is caught by
/// the next round).
pub(super) fn kill_all(dir: &Path) {
    if write_file(&dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for _ in 0..100 {
        let left = pids(dir);
        if left.is_empty() {
            return;
        }
        for pid in left {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Kill what is in cgroup `dir` and wait (blocking, `timeout` at most)
/// until it is empty: for drops and the final cleanup, where nothing
/// should be left and waiting is rare and short.
pub(super) fn drain(dir: &Path, timeout: Duration) {
    if pids(dir).is_empty() {
        return;
    }
    kill_all(dir);
    let deadline = std::time::Instant::now() + timeout;
    while !pids(dir).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Wait until cgroup `dir` holds no process: polled from 1 ms, doubling
/// to 20 ms, like a process group's stop.
pub(super) async fn wait_empty(dir: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut poll = Duration::from_millis(1);
    loop {
        if pids(dir).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(Duration::from_millis(20));
    }
}
