//! The process a worker runs: one it spawned, or one a previous bosun image
//! spawned and handed over in an upgrade; and the worker's side of a
//! handover, both ways.
//!
//! A handed-over child is still this pid's child after the `execve`, but
//! tokio never spawned it and cannot wait for it. It is waited for by pid:
//! `waitpid(pid, WNOHANG)` at every SIGCHLD (and once a second, since
//! signals coalesce). Nothing here waits for any other pid, so tokio's
//! own children keep their exit statuses.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::status::State;
use super::worker::{Handed, Worker};
use crate::handoff::{HandedInstance, HandedPipe};
use crate::lines::Stream;

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

/// How long an upgrade waits for a pipe's reader to stop.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);

/// One run of a worker's process: spawned, or adopted.
pub(super) struct Run {
    pub(super) proc: Proc,
    pub(super) pgid: i32,
}

impl Worker {
    /// Adopt the running process the previous image handed over: its
    /// status and its pipes carry on where they were.
    pub(super) async fn adopted(&mut self, handed: HandedInstance) -> Run {
        let pid = handed.pid.unwrap_or_default();
        if let Some((_, flag)) = &self.sink.ready {
            flag.send_replace(handed.ready);
        }
        for (stream, pipe) in [
            (Stream::Stdout, handed.stdout),
            (Stream::Stderr, handed.stderr),
        ] {
            if let Some(pipe) = pipe {
                self.read_from(stream, crate::handoff::adopt_fd(pipe.fd), pipe.partial);
            }
        }
        let since = Instant::now()
            .checked_sub(Duration::from_millis(handed.uptime_ms))
            .unwrap_or_else(Instant::now);
        self.set(|s| s.restarts = handed.restarts);
        self.now_running(pid, since, handed.ready || self.spec.ready.is_none());
        self.sink
            .note(format!("adopted from the previous bosun (pid {pid})"))
            .await;
        Run {
            proc: Proc::Adopted(Adopted::new(pid)),
            pgid: pid as i32,
        }
    }

    /// Stop reading the run's pipes and hand them over with the process:
    /// the descriptors stay owned (and close-on-exec) until the handoff
    /// naming them is written.
    pub(super) async fn hand_over(&mut self, pgid: i32) -> Handed {
        self.handing.cancel();
        let mut pipes: [Option<HandedPipe>; 2] = [None, None];
        let mut kept: [Option<OwnedFd>; 2] = [None, None];
        for (stream, mut reader) in std::mem::take(&mut self.captures) {
            // A reader stuck on a full writer gives up its pipe: the process
            // is still handed over, its output from then on is lost.
            let handed = tokio::time::timeout(HANDOVER_WAIT, &mut reader).await;
            let Ok(Ok(Some((fd, partial)))) = handed else {
                reader.abort();
                continue;
            };
            // The newest run's pipe per stream; an older run's (kept open
            // by a process that inherited it) is closed here.
            let slot = usize::from(stream != Stream::Stdout);
            pipes[slot] = Some(HandedPipe {
                fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
                partial,
            });
            kept[slot] = Some(fd);
        }
        let mut instance = self.handed(Some(pgid as u32));
        [instance.stdout, instance.stderr] = pipes;
        // Kept, with what runs in it, for the next image: its drop would
        // kill them.
        if let Some(leaf) = self.leaf.take() {
            instance.leaf = leaf.name();
            leaf.keep();
        }
        (instance, kept.into_iter().flatten().collect())
    }

    /// The instance as the next image takes it over.
    pub(super) fn handed(&self, pid: Option<u32>) -> HandedInstance {
        let status = self.status.borrow();
        HandedInstance {
            key: format!("{}/{}", self.spec.project, self.spec.label),
            pid,
            state: status.state,
            exit_code: status.exit_code,
            exit_signal: status.exit_signal,
            message: status.message.clone(),
            stdout: None,
            stderr: None,
            leaf: None,
            restarts: status.restarts,
            ready: status.state == State::Running,
            uptime_ms: u64::try_from(status.uptime().as_millis()).unwrap_or(u64::MAX),
        }
    }
}
