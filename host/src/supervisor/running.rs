//! The process a worker runs: one it spawned, or one a previous bosun image
//! spawned and handed over in an upgrade.
//!
//! A handed-over child is still this pid's child after the `execve`, but
//! tokio never spawned it and cannot wait for it. It is waited for by pid:
//! `waitpid(pid, WNOHANG)` at every SIGCHLD (and once a second, since
//! signals coalesce). Nothing here waits for any other pid, so tokio's
//! own children keep their exit statuses.

use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// How often an adopted child is checked when no SIGCHLD comes.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// A running process of a worker.
pub(crate) enum Proc {
    /// Spawned by this image.
    Spawned(Child),
    /// Handed over by the previous image.
    Adopted(Adopted),
    /// Left running for the next image.
    Left,
}

impl Proc {
    /// Wait for it to exit (again: the status is kept).
    pub(crate) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Self::Spawned(child) => child.wait().await,
            Self::Adopted(adopted) => adopted.wait().await,
            Self::Left => Err(std::io::Error::other("handed over to the next bosun")),
        }
    }

    /// Leave the process running, unreaped, for the next image: tokio
    /// would reap a dropped child of its own, so that handle is forgotten.
    pub(crate) fn leave(&mut self) {
        if let Self::Spawned(child) = std::mem::replace(self, Self::Left) {
            std::mem::forget(child);
        }
    }
}

/// A child this image did not spawn.
pub(crate) struct Adopted {
    pid: Pid,
    sigchld: Option<Signal>,
    exited: Option<ExitStatus>,
}

impl Adopted {
    pub(crate) fn new(pid: u32) -> Self {
        let sigchld = signal(SignalKind::child())
            .inspect_err(|e| tracing::warn!(pid, "cannot watch SIGCHLD ({e}); polling instead"))
            .ok();
        Self {
            pid: Pid::from_raw(pid as i32),
            sigchld,
            exited: None,
        }
    }

    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.exited {
                return Ok(status);
            }
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    self.exited = Some(ExitStatus::from_raw((code & 0xff) << 8));
                }
                Ok(WaitStatus::Signaled(_, sig, core)) => {
                    let raw = sig as i32 | if core { 0x80 } else { 0 };
                    self.exited = Some(ExitStatus::from_raw(raw));
                }
                Ok(_) => {
                    let tick = tokio::time::sleep(POLL_EVERY);
                    match &mut self.sigchld {
                        Some(sigchld) => {
                            tokio::select! {
                                _ = sigchld.recv() => {}
                                () = tick => {}
                            }
                        }
                        None => tick.await,
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// One run of a worker's process: spawned, or adopted.
pub(super) struct Run {
    pub(super) proc: Proc,
    pub(super) pgid: i32,
}
