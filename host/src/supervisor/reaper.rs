//! Reaping adopted orphans when bosun runs as PID 1 (a container's init).
//!
//! Whatever a process's descendants leave behind is reparented to PID 1, and
//! if PID 1 never waits for them the process table fills with zombies. But a
//! blanket `waitpid(-1)` would steal the exit statuses tokio collects for our
//! own children. So the reaper waits only for specific zombies: not a
//! supervised leader, and unreaped for at least [`GRACE`], which is far longer
//! than tokio takes to reap its own on SIGCHLD.

use std::collections::{HashMap, HashSet};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use super::Statuses;
use super::procfs;

/// How long a zombie must stay unreaped before the reaper takes it.
const GRACE: Duration = Duration::from_millis(500);
/// Scan at least this often, even without SIGCHLD.
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// Start the reaper if this process is PID 1.
pub(crate) fn spawn_if_init(statuses: Statuses) -> Option<JoinHandle<()>> {
    if std::process::id() != 1 {
        return None;
    }
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                "running as PID 1 but cannot watch SIGCHLD ({e}); orphans will not be reaped"
            );
            return None;
        }
    };
    tracing::info!("running as PID 1: reaping adopted orphans");
    Some(tokio::spawn(async move {
        let mut seen: HashMap<i32, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(SCAN_EVERY);
        loop {
            tokio::select! {
                _ = sigchld.recv() => {}
                _ = tick.tick() => {}
            }
            let ours: HashSet<i32> = statuses
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter_map(|s| s.borrow().pid)
                .map(|p| p as i32)
                .collect();
            let zombies: Vec<i32> = procfs::all()
                .into_iter()
                .filter(|p| p.ppid == 1 && !p.is_live() && !ours.contains(&p.pid))
                .map(|p| p.pid)
                .collect();
            seen.retain(|pid, _| zombies.contains(pid));
            let now = Instant::now();
            for pid in zombies {
                let first = *seen.entry(pid).or_insert(now);
                if now.duration_since(first) >= GRACE {
                    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
                    seen.remove(&pid);
                }
            }
        }
    }))
}
