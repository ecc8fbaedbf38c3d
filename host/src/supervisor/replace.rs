//! A restart that drops nothing, for a process with `sockets`: the new
//! process starts beside the old one (both hold the same listening
//! sockets, whose queue bosun keeps), and the old one is stopped only once
//! the new one is ready. If the new one exits or is not ready in time, it
//! is stopped and the old one goes on serving: the restart fails, and says
//! why.
//!
//! The new process's readiness must be its own. Through a shared socket an
//! HTTP probe could be accepted by the old process, so the probe connects
//! with the old process group paused (SIGSTOP) and resumes it (SIGCONT) as
//! soon as the socket's accept queue is empty: the probe's connection is
//! then the new process's, which may take its time to answer it. The old
//! process is paused for as long as the new one takes to accept, at most
//! [`ACCEPT_WAIT`]; the requests it holds wait rather than fail. A probe on
//! a port bosun does not hold is made whole with the old process paused
//! (a second at most).

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use nix::sys::signal::Signal;

use super::adopt::{Proc, Run};
use super::group::{StopOutcome, signal_group, stop_group_after};
use super::probe;
use super::spawn::spawn;
use super::spec::Ready;
use super::worker::{CHECK_EVERY, Command, Worker, describe_exit};
use crate::confine::Leaf;

/// How long a probe waits, with the old process paused, for the new one
/// to accept its connection.
const ACCEPT_WAIT: Duration = Duration::from_millis(200);

impl Worker {
    /// Replace `run` by a new run of the process, as above.
    pub(super) async fn replace(&mut self, run: &mut Run) -> Result<(), String> {
        let old = run.pgid;
        let name = format!("proc.{}.{}", self.spec.label, uuid::Uuid::now_v7().simple());
        let leaf = self.spec.jail.leaf(&name).unwrap_or_else(|e| {
            tracing::error!(project = %self.spec.project, process = %self.spec.label, "creating its cgroup: {e}");
            None
        });
        let child = match spawn(&self.spec, self.persist.marker(), leaf.as_ref()) {
            Ok(child) => child,
            Err(failure) => {
                let why = format!(
                    "its replacement could not start: {}; pid {old} keeps running",
                    failure.message
                );
                self.sink.note(why.clone()).await;
                return Err(why);
            }
        };
        let pid = child.id().expect("a just-spawned child has a pid");
        let mut new = Run {
            proc: Proc::Spawned(child),
            pgid: pid as i32,
        };
        self.take_output(&mut new.proc);
        self.sink
            .note(format!(
                "starting its replacement (pid {pid}); pid {old} serves until it is ready"
            ))
            .await;
        match self.until_ready(&mut new, old).await {
            Ok(()) => {
                let old_leaf = std::mem::replace(&mut self.leaf, leaf);
                let how = self.stop_run(run, old_leaf.as_ref()).await;
                *run = new;
                self.persist.record_group(&self.spec, pid as i32);
                self.set(|s| s.restarts += 1);
                self.now_running(pid, Instant::now(), true);
                self.sink
                    .note(format!("replaced pid {old} ({how}) by pid {pid}"))
                    .await;
                Ok(())
            }
            Err(why) => {
                let how = self.stop_run(&mut new, leaf.as_ref()).await;
                let why = format!(
                    "its replacement (pid {pid}) did not become ready: {why} ({how}); \
                     pid {old} keeps running"
                );
                self.sink.note(why.clone()).await;
                Err(why)
            }
        }
    }

    /// Wait until the new run is ready by the process's check (at once
    /// without one), while the old run (group `old`) serves.
    async fn until_ready(&mut self, new: &mut Run, old: i32) -> Result<(), String> {
        let Some((check, timeout)) = self.spec.ready.clone() else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        let mut logged = self.sink.ready.as_ref().map(|(_, flag)| flag.subscribe());
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                status = new.proc.wait() => {
                    return Err(status.map_or_else(|e| e.to_string(), describe_exit));
                }
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Start(ack) | Command::Restart(ack)) => {
                        let _ = ack.send(Ok(()));
                    }
                    Some(Command::Signal(sig, ack)) => {
                        let sent = signal_group(old, sig).map_err(|e| format!("sending {sig}: {e}"));
                        let _ = ack.send(sent);
                    }
                    // A stop, a shutdown or a handover: acted on once the
                    // replacement is undone.
                    Some(other) => {
                        self.deferred = Some(other);
                        return Err("a stop came first".into());
                    }
                    None => return Err("bosun is stopping".into()),
                },
                Ok(()) = async { logged.as_mut().expect("guarded").changed().await }, if logged.is_some() => {
                    if logged.as_mut().is_some_and(|rx| *rx.borrow_and_update()) {
                        return Ok(());
                    }
                }
                _ = tick.tick() => {
                    if self.probe_alone(&check, old, deadline).await {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        return Err(format!("not ready within {timeout:?}"));
                    }
                }
            }
        }
    }

    /// Probe `check` so that only the new run can answer: with the old
    /// run (group `old`, and its leaf) paused until the new one has
    /// accepted the probe's connection, or for the whole probe. An
    /// accepted probe may take until `deadline` to be answered.
    async fn probe_alone(&self, check: &Ready, old: i32, deadline: Instant) -> bool {
        let Ready::Http(addr, path) = check else {
            return false;
        };
        let Some(listener) = self.spec.sockets.listening_on(addr.port()) else {
            let _paused = Paused::new(old, self.leaf.as_ref());
            return probe::passes(check).await;
        };
        let paused = Paused::new(old, self.leaf.as_ref());
        // A thread of the old process woken in accept() takes a connection
        // already queued before it stops: connect only once it has.
        let stopping = Instant::now() + ACCEPT_WAIT;
        while !paused.stopped() {
            if Instant::now() >= stopping {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let connected = tokio::time::timeout(probe::PROBE_TIMEOUT, TcpStream::connect(addr)).await;
        let Ok(Ok(stream)) = connected else {
            return false;
        };
        let waited = Instant::now() + ACCEPT_WAIT;
        while probe::queued(&listener).is_some_and(|n| n > 0) {
            if Instant::now() >= waited {
                // Not accepting yet: the old process takes the probe.
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(paused);
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, probe::http_answer(stream, *addr, path))
            .await
            .unwrap_or(false)
    }

    /// Stop `run` (in `leaf`) by the process's rules; says how it ended.
    async fn stop_run(&self, run: &mut Run, leaf: Option<&Leaf>) -> String {
        let cfg = &self.spec.config;
        let proc = &mut run.proc;
        let exited = async {
            let _ = proc.wait().await;
        };
        let outcome =
            stop_group_after(run.pgid, leaf, cfg.stop_signal, cfg.kill_timeout, exited).await;
        let _ = run.proc.wait().await;
        match outcome {
            StopOutcome::Graceful => format!("stopped by {}", cfg.stop_signal),
            StopOutcome::Killed => format!("killed after {:?}", cfg.kill_timeout),
        }
    }
}

/// A process group (and its leaf) stopped with SIGSTOP until dropped.
struct Paused<'a> {
    pgid: i32,
    leaf: Option<&'a Leaf>,
}

impl<'a> Paused<'a> {
    fn new(pgid: i32, leaf: Option<&'a Leaf>) -> Self {
        let _ = signal_group(pgid, Signal::SIGSTOP);
        if let Some(leaf) = leaf {
            leaf.signal_where(Signal::SIGSTOP, |_| true);
        }
        Self { pgid, leaf }
    }
}

impl Paused<'_> {
    /// Whether every live process of the group has stopped.
    fn stopped(&self) -> bool {
        super::procfs::live_members(self.pgid)
            .iter()
            .all(|p| matches!(p.state, 'T' | 't'))
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        if let Some(leaf) = self.leaf {
            leaf.signal_where(Signal::SIGCONT, |_| true);
        }
        let _ = signal_group(self.pgid, Signal::SIGCONT);
    }
}
