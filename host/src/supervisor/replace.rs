//! A restart that drops nothing, for a process with `sockets`: the new
//! process starts beside the old one (both hold the same listening
//! sockets, whose queue bosun keeps), and the old one is stopped only once
//! the new one is ready. If the new one exits or is not ready in time, it
//! is stopped and the old one goes on serving: the restart fails, and says
//! why.
//!
//! The new process's readiness must be its own. Through a shared socket an
//! HTTP probe could be accepted by any other holder of it: the old process,
//! or another instance. So the probe connects while the others are held
//! still, and lets them go as soon as the socket's accept queue is empty:
//! the probe's connection is then the new process's, which may take its
//! time to answer it. The others are held for as long as they take to stop
//! and the new one takes to accept, [`ACCEPT_WAIT`] at most each; probes
//! come 0.1 s after the start, then ever further apart up to
//! [`PROBE_EVERY`], and a process's replacements probe one at a time. The
//! requests the others hold wait rather than fail.
//!
//! Held still means their cgroup leaves frozen (cgroup2's `cgroup.freeze`:
//! every process at once, no pid named; see `confine::Frozen`). Without a
//! cgroup2 freezer, the old process group gets SIGSTOP and SIGCONT
//! instead, and the other instances are not held: with several instances
//! there, a probe may be answered by one of them. A probe on a port bosun
//! does not hold is made whole with the others held (a second at most).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::group::{StopOutcome, signal_group, stop_group_after};
use super::probe;
use super::readiness::CHECK_EVERY;
use super::running::{Proc, Run};
use super::spawn::{LeafFor, spawn};
use super::spec::Ready;
use super::worker::{Order, Reaction, Situation, Worker, describe_exit};
use crate::confine::{Frozen, Leaf};

/// How long a probe waits, with the others held, for them to stop and
/// then for the new process to accept its connection.
const ACCEPT_WAIT: Duration = Duration::from_millis(200);
/// The longest time between two probes of a replacement (the first come
/// closer: 0.1, 0.2, 0.4, 0.8 s).
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// An accepted probe, waiting for its answer.
type Answer = Pin<Box<dyn Future<Output = bool> + Send>>;

/// What one probe of a replacement found.
enum Probe {
    /// Not ready (yet).
    No,
    /// Ready.
    Passed,
    /// The new process took the probe's connection; its answer is to come.
    Accepted(Answer),
}

impl Worker {
    /// Replace `run` by a new run of the process, as above.
    pub(super) async fn replace(&mut self, run: &mut Run) -> Result<(), String> {
        let old = run.pgid;
        let name = format!("proc.{}.{}", self.spec.label, uuid::Uuid::now_v7().simple());
        let Some(turn) = self.forks.turn().await else {
            return Err("bosun is stopping".into());
        };
        let (leaf, spawned) = spawn(
            &self.spec,
            self.persist.marker(),
            LeafFor::Create(name.clone()),
            turn,
        )
        .await;
        let child = match spawned {
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
        // The new run's lines raise a readiness flag of their own: a line
        // of the old process must not pass the new one's check.
        let fresh = self
            .sink
            .ready
            .as_ref()
            .map(|(pattern, _)| (pattern.clone(), watch::Sender::new(false)));
        let old_ready = std::mem::replace(&mut self.sink.ready, fresh);
        self.take_output(&mut new.proc);
        self.sink
            .note(format!(
                "starting its replacement (pid {pid}); pid {old} serves until it is ready"
            ))
            .await;
        match self.until_ready(&mut new, &name, old).await {
            Ok(()) => {
                // The new pid is the instance's before the old one stops:
                // as PID 1, bosun's reaper leaves alone only pids it knows.
                let old_leaf = std::mem::replace(&mut self.leaf, leaf);
                self.persist.record_group(&self.spec, pid as i32);
                self.set(|s| s.restarts += 1);
                self.now_running(pid, Instant::now(), true);
                let grace = self.spec.config.kill_timeout;
                let how = self.stop_run(run, old_leaf.as_ref(), grace).await;
                *run = new;
                self.sink
                    .note(format!("replaced pid {old} ({how}) by pid {pid}"))
                    .await;
                Ok(())
            }
            Err(why) => {
                self.sink.ready = old_ready;
                // An upgrade waits for this worker: no grace for a process
                // that never served.
                let grace = match self.deferred {
                    Some(Order::Handover(_)) => Duration::ZERO,
                    _ => self.spec.config.kill_timeout,
                };
                let how = self.stop_run(&mut new, leaf.as_ref(), grace).await;
                let why = format!(
                    "its replacement (pid {pid}) did not become ready: {why} ({how}); \
                     pid {old} keeps running"
                );
                self.sink.note(why.clone()).await;
                Err(why)
            }
        }
    }

    /// Wait until the new run (in leaf `new_leaf`) is ready by the
    /// process's check (at once without one), while the old run (group
    /// `old`) serves. Commands are answered all along.
    async fn until_ready(&mut self, new: &mut Run, new_leaf: &str, old: i32) -> Result<(), String> {
        let Some((check, timeout)) = self.spec.ready.clone() else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        let mut logged = self.sink.ready.as_ref().map(|(_, flag)| flag.subscribe());
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut between = CHECK_EVERY;
        let mut next_probe = Instant::now() + between;
        let mut answer: Option<Answer> = None;
        loop {
            tokio::select! {
                status = new.proc.wait() => {
                    return Err(status.map_or_else(|e| e.to_string(), describe_exit));
                }
                order = self.commands.recv() => match self.answer(order, Situation::Replacing(old)) {
                    Reaction::Defer(order) => {
                        self.deferred = Some(order);
                        return Err("another command came first".into());
                    }
                    Reaction::Done => return Err("bosun is stopping".into()),
                    _ => {}
                },
                Ok(()) = async { logged.as_mut().expect("guarded").changed().await }, if logged.is_some() => {
                    if logged.as_mut().is_some_and(|rx| *rx.borrow_and_update()) {
                        return Ok(());
                    }
                }
                passed = async { answer.as_mut().expect("guarded").await }, if answer.is_some() => {
                    answer = None;
                    if passed {
                        return Ok(());
                    }
                }
                _ = tick.tick() => {
                    if answer.is_none() && Instant::now() >= next_probe {
                        between = (between * 2).min(PROBE_EVERY);
                        next_probe = Instant::now() + between;
                        match self.probe_alone(&check, new_leaf, old, deadline).await {
                            Probe::Passed => return Ok(()),
                            Probe::Accepted(pending) => answer = Some(pending),
                            Probe::No => {}
                        }
                    }
                    if Instant::now() >= deadline {
                        return Err(format!("not ready within {timeout:?}"));
                    }
                }
            }
        }
    }

    /// Probe `check` so that only the new run can answer (see the module
    /// docs). An accepted probe may take until `deadline` to be answered.
    async fn probe_alone(
        &self,
        check: &Ready,
        new_leaf: &str,
        old: i32,
        deadline: Instant,
    ) -> Probe {
        let Ready::Http(addr, path) = check else {
            return Probe::No;
        };
        let _probing = self.spec.sockets.probing.lock().await;
        let held = self.hold_others(new_leaf, old);
        let stopping = Instant::now() + ACCEPT_WAIT;
        while !held.settled() {
            if Instant::now() >= stopping {
                return Probe::No;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let Some(listener) = self.spec.sockets.listening_on(*addr) else {
            return match probe::passes(check).await {
                true => Probe::Passed,
                false => Probe::No,
            };
        };
        let connected = tokio::time::timeout(probe::PROBE_TIMEOUT, TcpStream::connect(addr)).await;
        let Ok(Ok(stream)) = connected else {
            return Probe::No;
        };
        let waited = Instant::now() + ACCEPT_WAIT;
        while probe::queued(&listener).is_some_and(|n| n > 0) {
            if Instant::now() >= waited {
                // Not accepting yet: another holder takes the probe once
                // let go, and its answer is not looked at.
                return Probe::No;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(held);
        let (addr, path) = (*addr, path.clone());
        let left = deadline.saturating_duration_since(Instant::now());
        Probe::Accepted(Box::pin(async move {
            tokio::time::timeout(left, probe::http_answer(stream, addr, &path))
                .await
                .unwrap_or(false)
        }))
    }

    /// Hold still every other holder of the process's sockets: the leaves
    /// of its instances but `new_leaf` frozen; the old group stopped when
    /// it has no leaf, or nothing can be frozen.
    fn hold_others(&self, new_leaf: &str, old: i32) -> Held<'_> {
        let name = &self.spec.config.name;
        let frozen = self
            .spec
            .jail
            .freeze(|leaf| leaf != new_leaf && is_instance_leaf(leaf, name));
        match (frozen, &self.leaf) {
            (Some(frozen), Some(_)) => Held::Frozen(frozen, None),
            (Some(frozen), None) => Held::Frozen(frozen, Some(Paused::new(old, None))),
            (None, leaf) => Held::Stopped(Paused::new(old, leaf.as_ref())),
        }
    }

    /// Stop `run` (in `leaf`) by the process's rules, SIGKILL after
    /// `grace`; says how it ended.
    async fn stop_run(&self, run: &mut Run, leaf: Option<&Leaf>, grace: Duration) -> String {
        let cfg = &self.spec.config;
        let proc = &mut run.proc;
        let exited = async {
            let _ = proc.wait().await;
        };
        let outcome = stop_group_after(run.pgid, leaf, cfg.stop_signal, grace, exited).await;
        let _ = run.proc.wait().await;
        match outcome {
            StopOutcome::Graceful => format!("stopped by {}", cfg.stop_signal),
            StopOutcome::Killed => format!("killed after {grace:?}"),
        }
    }
}

/// Whether cgroup leaf `leaf` is one of process `name`'s instances:
/// `proc.<name>-<instance>`, or a replacement's `proc.<name>-<instance>.<id>`.
fn is_instance_leaf(leaf: &str, name: &str) -> bool {
    leaf.strip_prefix("proc.")
        .and_then(|rest| rest.strip_prefix(name))
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.split('.').next())
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The other holders of a socket, held still until dropped.
enum Held<'a> {
    Frozen(Frozen, Option<Paused<'a>>),
    Stopped(Paused<'a>),
}

impl Held<'_> {
    /// Whether all of them have stopped.
    fn settled(&self) -> bool {
        match self {
            Held::Frozen(frozen, paused) => {
                frozen.settled() && paused.as_ref().is_none_or(Paused::stopped)
            }
            Held::Stopped(paused) => paused.stopped(),
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

#[cfg(test)]
mod tests {
    use super::is_instance_leaf;

    #[test]
    fn only_the_processes_own_instance_leaves_are_its() {
        for leaf in ["proc.web-0", "proc.web-12", "proc.web-1.0193ab"] {
            assert!(is_instance_leaf(leaf, "web"), "{leaf}");
        }
        for leaf in [
            "proc.web",
            "proc.web-",
            "proc.web-x",
            "proc.webby-0",
            "cmd.web-0",
            "proc.web-1-0",
        ] {
            assert!(!is_instance_leaf(leaf, "web"), "{leaf}");
        }
    }
}
