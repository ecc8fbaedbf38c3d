//! Stopping a whole process group: the stop signal, a grace period, SIGKILL.
//!
//! "Stopped" means no live process is left in the group: not just the
//! leader. A shell script's background child or a worker pool would
//! otherwise survive its parent (supervisord orphans it by default). Zombies
//! do not count: they have exited and only wait to be reaped.
//!
//! Where the instance has a cgroup leaf, "the group" is also everything in
//! the leaf: a process that left the group with `setsid` (or a daemon that
//! double-forked) gets the stop signal too, and `cgroup.kill` at the end.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::time::{Instant, sleep};

use super::procfs;
use crate::confine::Leaf;

/// How often a stop checks whether the group is empty: first after 1 ms,
/// doubling up to 20 ms. Most programs exit within a millisecond or two of
/// the signal, and a restart waits for this check before it spawns: a flat
/// 20 ms poll made a restart take 30 ms where a bare kill + spawn takes 4.
const FIRST_POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(20);
/// How long to wait for the kernel to remove SIGKILLed processes.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopOutcome {
    /// Every process exited within the grace period.
    Graceful,
    /// Some were still alive at the deadline and got SIGKILL.
    Killed,
}

/// Send `signal` to every process in group `pgid`. A group that no longer
/// exists is not an error.
pub(crate) fn signal_group(pgid: i32, signal: Signal) -> Result<(), Errno> {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Send `signal` to the processes of `leaf` that are not in group `pgid`
/// (those that are got it already, and some programs read a second stop
/// signal as "stop now").
fn signal_escapees(leaf: Option<&Leaf>, pgid: i32, signal: Signal) {
    if let Some(leaf) = leaf {
        leaf.signal_where(signal, |pid| {
            procfs::stat(pid).is_some_and(|p| p.pgrp != pgid)
        });
    }
}

/// Stop group `pgid` (and `leaf`): `signal`, wait up to `grace` for it to
/// empty, then SIGKILL.
pub(crate) async fn stop_group(
    pgid: i32,
    leaf: Option<&Leaf>,
    signal: Signal,
    grace: Duration,
) -> StopOutcome {
    stop_group_after(pgid, leaf, signal, grace, std::future::ready(())).await
}

/// [`stop_group`] for a group whose leader is bosun's own child:
/// `leader_exit` resolves once the leader has exited. That is awaited first,
/// as an event (SIGCHLD); only the rest of the group, usually nobody, is
/// polled. A restart then spawns the moment the old process is gone.
pub(crate) async fn stop_group_after(
    pgid: i32,
    leaf: Option<&Leaf>,
    signal: Signal,
    grace: Duration,
    leader_exit: impl Future<Output = ()>,
) -> StopOutcome {
    if let Err(e) = signal_group(pgid, signal) {
        tracing::warn!(pgid, "sending {signal} to the process group: {e}");
    }
    signal_escapees(leaf, pgid, signal);
    let deadline = Instant::now() + grace;
    if tokio::time::timeout_at(deadline, leader_exit).await.is_ok()
        && wait_empty(
            pgid,
            leaf,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await
    {
        return StopOutcome::Graceful;
    }
    if let Err(e) = signal_group(pgid, Signal::SIGKILL) {
        tracing::warn!(pgid, "sending SIGKILL to the process group: {e}");
    }
    if let Some(leaf) = leaf {
        leaf.kill();
    }
    if !wait_empty(pgid, leaf, AFTER_KILL).await {
        tracing::error!(pgid, "process group still has live members after SIGKILL");
    }
    StopOutcome::Killed
}

/// Whether group `pgid`, or `leaf`, has any live member. One `kill(0)`
/// answers "nobody at all" without the cost of scanning /proc; only a
/// group with members (maybe just unreaped zombies) is scanned.
pub(crate) fn has_live_members(pgid: i32, leaf: Option<&Leaf>) -> bool {
    let group = match killpg(Pid::from_raw(pgid), None) {
        Err(Errno::ESRCH) => false,
        _ => !procfs::live_members(pgid).is_empty(),
    };
    group || leaf.is_some_and(|l| !l.is_empty())
}

/// Wait until group `pgid` and `leaf` have no live member; false on timeout.
pub(crate) async fn wait_empty(pgid: i32, leaf: Option<&Leaf>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut poll = FIRST_POLL;
    loop {
        if !has_live_members(pgid, leaf) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(poll).await;
        poll = (poll * 2).min(MAX_POLL);
    }
}
