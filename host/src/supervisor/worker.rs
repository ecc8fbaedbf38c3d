//! One task per process instance: the state machine.
//!
//! The worker alone owns its child and its schedule position; everything
//! else talks to it through [`Order`]s and watches its [`Status`]. A run
//! ends in one of three ways: the process exits (restart on the schedule),
//! someone asks for a stop or restart (stop the whole group first), or it
//! fails its readiness check or memory cap (treated like a crash).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use std::os::fd::OwnedFd;

use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::group::{StopOutcome, signal_group, stop_group, stop_group_after};
use super::handoff::HandedInstance;
use super::logs::{Handback, LineSink, capture};
use super::persist::Persist;
use super::readiness::{Readiness, Verdict};
use super::running::{Proc, Run};
use super::spawn::{Failure, Forks, LeafFor, Turn, spawn};
use super::spec::InstanceSpec;
use super::status::{State, Status};
use crate::confine::Leaf;
use crate::lines::Stream;
use crate::project::Checkout;

/// Consecutive memory samples (one per `stats::SAMPLE_EVERY`) over
/// `max_memory` before a restart: one spike is not "stays above".
const MEMORY_STRIKES: u32 = 3;

/// The reply to a start or a restart: done, or why not.
pub(crate) type Reply = oneshot::Sender<Result<(), String>>;

/// An order to a worker (named apart from the commands programs run);
/// each carries its reply.
pub(crate) enum Order {
    Start(Reply),
    Stop(oneshot::Sender<()>),
    /// Stop, then start; with sockets, start the new process first and
    /// stop the old one once the new one is ready.
    Restart(Reply),
    /// Run this spec from now on (a reload changed it; the worker's log
    /// sink is the same): a running process is replaced by one of the new
    /// spec, new first, as a restart with sockets; one not running takes
    /// it at its next start. A failed replacement keeps the old spec.
    Respawn(Arc<InstanceSpec>, Reply),
    Signal(Signal, oneshot::Sender<Result<(), String>>),
    /// Stop for bosun's own shutdown: the desired state is kept.
    Shutdown(oneshot::Sender<()>),
    /// Leave the process running and hand it over to the next bosun image
    /// (an upgrade): its pipes and what it had half written. `None` when
    /// nothing runs.
    Handover(oneshot::Sender<Option<Handed>>),
}

/// A running instance handed over, and the descriptors its handoff names.
pub(crate) type Handed = (HandedInstance, Vec<OwnedFd>);

pub(crate) struct Worker {
    pub spec: Arc<InstanceSpec>,
    pub status: Arc<watch::Sender<Status>>,
    pub sink: LineSink,
    pub commands: mpsc::Receiver<Order>,
    pub persist: Arc<Persist>,
    /// The instance's cgroup leaf, kept across its restarts (made at its
    /// first spawn, named `leaf_name`); dropping the worker (an aborted
    /// supervisor) kills what is in it.
    pub leaf: Option<Leaf>,
    pub leaf_name: String,
    /// The supervisor's turns to fork.
    pub forks: Forks,
    /// Whether to start at once.
    pub start: bool,
    /// The project's first checkout, to wait for before the first start.
    pub checkout: Option<Checkout>,
    /// The running process the previous image handed over, adopted
    /// instead of a first spawn.
    pub adopt: Option<HandedInstance>,
    /// The readers of the current run's pipes, and the signal that makes
    /// them give the pipes back.
    pub captures: Vec<(Stream, JoinHandle<Handback>)>,
    pub handing: CancellationToken,
    /// An order that came while a replacement was starting, to act on
    /// next.
    pub deferred: Option<Order>,
    /// Where the instance is in its restart schedule.
    pub backoff: Backoff,
}

/// Where the worker's loop is, and so what it does next. The worker alone
/// moves it, in [`Worker::run`].
enum Phase {
    /// Not meant to run: waits for an order.
    Stopped,
    /// Meant to run: waits for the project's first checkout if it has not
    /// come yet, then spawns (or adopts). The reply, when an order asked
    /// for the start, is answered once the process has started or failed to.
    Starting(Option<Reply>),
    /// Over: a shutdown, a handover, or nobody left to give orders.
    Done,
}

/// Where an order finds the worker.
#[derive(Clone, Copy)]
pub(super) enum Situation<'a> {
    /// Nothing runs, nor is meant to.
    Stopped,
    /// Meant to run and waiting, `doing` so: out a restart delay, or for
    /// the first checkout.
    Waiting(&'a str),
    /// A process runs, leading group `pgid`.
    Running(i32),
    /// A replacement is starting, new first, while the process leading
    /// group `pgid` serves.
    Replacing(i32),
}

/// What an order means to the worker, once [`Worker::answer`] has
/// answered what can be answered at once.
pub(super) enum Reaction {
    /// Answered; carry on.
    Answered,
    /// Start now, or as soon as possible; answer this once started.
    Start(Reply),
    /// Stay stopped, or stop waiting to run.
    Halt,
    /// The worker's work is over.
    Done,
    /// The running process's run ends so.
    End(RunEnd),
    /// Acted on once the replacement under way is undone.
    Defer(Order),
}

/// How one run of the process ended.
pub(super) enum RunEnd {
    Exited(ExitStatus),
    FailedCheck(String),
    Stop(oneshot::Sender<()>),
    Restart(Reply),
    Respawn(Arc<InstanceSpec>, Reply),
    Shutdown(Option<oneshot::Sender<()>>),
    Handover(oneshot::Sender<Option<Handed>>),
}

impl Worker {
    pub(crate) async fn run(mut self) {
        let mut phase = if self.start {
            Phase::Starting(None)
        } else {
            Phase::Stopped
        };
        loop {
            phase = match phase {
                Phase::Stopped => {
                    let order = self.commands.recv().await;
                    match self.answer(order, Situation::Stopped) {
                        Reaction::Start(ack) => Phase::Starting(Some(ack)),
                        Reaction::Done => Phase::Done,
                        _ => Phase::Stopped,
                    }
                }
                Phase::Starting(ack) => self.starting(ack).await,
                Phase::Done => return,
            };
        }
    }

    /// Start the process (after the project's first checkout, if it has
    /// not come) and supervise it until its run ends; the phase after.
    async fn starting(&mut self, mut ack: Option<Reply>) -> Phase {
        // Kept when a stop interrupted the wait: a start after it must wait
        // for the checkout again, not spawn into a missing dir. Not kept
        // once it is done or abandoned (its clone task gone).
        if let Some(mut checkout) = self.checkout.take().filter(|c| !c.is_done()) {
            let next = self.wait_for_checkout(&mut checkout, ack).await;
            if matches!(next, Phase::Stopped) {
                self.checkout = Some(checkout);
            }
            return next;
        }
        let spawned = match self.adopt.take() {
            Some(handed) => Ok(self.adopted(handed).await),
            None => {
                let turn = match self.turn_to_fork(&mut ack).await {
                    Ok(turn) => turn,
                    Err(phase) => return phase,
                };
                let leaf = match self.leaf.take() {
                    Some(leaf) => LeafFor::Kept(leaf),
                    None => LeafFor::Create(self.leaf_name.clone()),
                };
                let (leaf, spawned) = spawn(&self.spec, self.persist.marker(), leaf, turn).await;
                self.leaf = leaf;
                match spawned {
                    Ok(child) => Ok(self.started(child).await),
                    Err(failure) => Err(failure),
                }
            }
        };
        let mut run = match spawned {
            Ok(run) => run,
            Err(failure) if failure.transient && !self.spec.config.never_restarts() => {
                self.sink
                    .note(format!("cannot start for now: {}", failure.message))
                    .await;
                self.set(|s| s.message = Some(failure.message));
                if let Some(ack) = ack.take() {
                    let _ = ack.send(Ok(()));
                }
                return self.back_off(Duration::ZERO).await;
            }
            Err(Failure { message, .. }) => {
                self.sink.note(format!("cannot start: {message}")).await;
                let why = format!("cannot start: {message}");
                self.set(|s| {
                    s.state = State::Fatal;
                    s.pid = None;
                    s.started_at = None;
                    s.message = Some(message);
                });
                if let Some(ack) = ack.take() {
                    let _ = ack.send(Err(why));
                }
                return Phase::Stopped;
            }
        };
        if let Some(ack) = ack.take() {
            let _ = ack.send(Ok(()));
        }
        self.run_to_end(&mut run).await
    }

    /// A process just spawned: its group recorded, its output read, its
    /// status running (or starting, until its readiness check passes).
    async fn started(&mut self, child: Child) -> Run {
        let pid = child.id().expect("a just-spawned child has a pid");
        let mut proc = Proc::Spawned(child);
        self.persist.record_group(&self.spec, pid as i32);
        self.take_output(&mut proc);
        self.now_running(pid, Instant::now(), self.spec.ready.is_none());
        self.sink.note(format!("started (pid {pid})")).await;
        Run {
            proc,
            pgid: pid as i32,
        }
    }

    /// The status of a run of `pid` begun at `since`: running when
    /// `ready`, else starting.
    pub(super) fn now_running(&self, pid: u32, since: Instant, ready: bool) {
        self.set(|s| {
            s.state = if ready {
                State::Running
            } else {
                State::Starting
            };
            s.pid = Some(pid);
            s.started_at = Some(since);
            s.message = None;
        });
    }

    /// Supervise the run of `child` to its end and act on how it ended;
    /// the phase after.
    async fn run_to_end(&mut self, run: &mut Run) -> Phase {
        loop {
            let end = self.supervise(&mut run.proc, run.pgid).await;
            let uptime = self.status.borrow().uptime();
            let pgid = run.pgid;
            return match end {
                // Replaced in place, new process first: the run goes on.
                RunEnd::Restart(ack) if self.spec.sockets.any() => {
                    let _ = ack.send(self.replace(run).await);
                    continue;
                }
                RunEnd::Respawn(spec, ack) => {
                    let old = std::mem::replace(&mut self.spec, spec);
                    let replaced = self.replace(run).await;
                    if replaced.is_err() {
                        self.spec = old;
                    }
                    let _ = ack.send(replaced);
                    continue;
                }
                RunEnd::Stop(ack) => {
                    self.stop(&mut run.proc, pgid).await;
                    self.persist.set_desired(&self.spec, false);
                    self.set(|s| s.state = State::Stopped);
                    let _ = ack.send(());
                    Phase::Stopped
                }
                RunEnd::Shutdown(ack) => {
                    self.stop(&mut run.proc, pgid).await;
                    self.set(|s| s.state = State::Stopped);
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                    Phase::Done
                }
                RunEnd::Handover(ack) => {
                    let handed = self.hand_over(pgid).await;
                    run.proc.leave();
                    let _ = ack.send(Some(handed));
                    Phase::Done
                }
                RunEnd::Restart(ack) => {
                    self.stop(&mut run.proc, pgid).await;
                    self.set(|s| s.restarts += 1);
                    self.backoff.reset();
                    Phase::Starting(Some(ack))
                }
                RunEnd::Exited(status) => {
                    self.sink.note(describe_exit(status)).await;
                    self.set(|s| {
                        s.exit_code = status.code();
                        s.exit_signal = status.signal();
                    });
                    // The leader is gone; leave none of its group behind.
                    self.stop_remains(pgid).await;
                    self.back_off(uptime).await
                }
                RunEnd::FailedCheck(why) => {
                    self.sink.note(why).await;
                    self.stop(&mut run.proc, pgid).await;
                    self.back_off(uptime).await
                }
            };
        }
    }

    /// Wait for the run to end, answering orders and checking readiness
    /// and memory meanwhile.
    async fn supervise(&mut self, child: &mut Proc, pgid: i32) -> RunEnd {
        let mut readiness = Readiness::of(&self.sink, &self.spec, self.status.clone());
        if readiness.logged_already() {
            self.mark_ready().await;
        }
        if let Some(order) = self.deferred.take()
            && let Reaction::End(end) = self.answer(Some(order), Situation::Running(pgid))
        {
            return end;
        }
        let mut strikes = 0;
        let mut memory_tick = tokio::time::interval(super::stats::SAMPLE_EVERY);
        loop {
            tokio::select! {
                status = child.wait() => {
                    return match status {
                        Ok(status) => RunEnd::Exited(status),
                        Err(e) => RunEnd::FailedCheck(format!("lost track of the process: {e}")),
                    };
                }
                order = self.commands.recv() => {
                    if let Reaction::End(end) = self.answer(order, Situation::Running(pgid)) {
                        return end;
                    }
                }
                verdict = readiness.next() => match verdict {
                    Verdict::Ready => self.mark_ready().await,
                    Verdict::NotReady(why) => return RunEnd::FailedCheck(why),
                },
                _ = memory_tick.tick(), if self.spec.config.max_memory.is_some() => {
                    let max = self.spec.config.max_memory.expect("guarded");
                    let rss = self.status.borrow().rss_bytes;
                    strikes = if rss > max.as_u64() { strikes + 1 } else { 0 };
                    if strikes >= MEMORY_STRIKES {
                        return RunEnd::FailedCheck(format!("RSS {rss} bytes stayed above max_memory {max}; restarting"));
                    }
                }
            }
        }
    }

    async fn mark_ready(&self) {
        if self.status.borrow().state == State::Starting {
            // The note first: whoever sees `running` finds the log saying why.
            self.sink.note("ready").await;
            self.set(|s| s.state = State::Running);
        }
    }

    /// Wait out the next restart delay after a run of `uptime`, unless an
    /// order says otherwise meanwhile; the phase after.
    async fn back_off(&mut self, uptime: Duration) -> Phase {
        let cfg = &self.spec.config;
        self.set(|s| {
            s.pid = None;
            s.started_at = None;
        });
        let delay = match cfg.never_restarts() {
            true => None,
            false => self.backoff.next(uptime, &cfg.restart_at, cfg.restart_ok),
        };
        let Some(delay) = delay else {
            self.set(|s| s.state = State::Exited);
            return Phase::Stopped;
        };
        self.set(|s| {
            s.state = State::Backoff;
            s.restarts += 1;
        });
        self.sink.note(format!("restarting in {delay:?}")).await;
        let wake = tokio::time::sleep(delay);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                () = &mut wake => return Phase::Starting(None),
                order = self.commands.recv() => match self.answer(order, Situation::Waiting("waiting to restart")) {
                    Reaction::Start(ack) => return Phase::Starting(Some(ack)),
                    Reaction::Halt => return Phase::Stopped,
                    Reaction::Done => return Phase::Done,
                    _ => {}
                },
            }
        }
    }

    /// Wait for the project's first checkout before the first start. A
    /// start asked for meanwhile is answered at once (it happens once the
    /// checkout is done); a stop or shutdown ends the wait. The phase after.
    async fn wait_for_checkout(&mut self, checkout: &mut Checkout, ack: Option<Reply>) -> Phase {
        self.set(|s| {
            s.state = State::Starting;
            s.message = Some("waiting for the project's first checkout (git clone)".into());
        });
        if let Some(ack) = ack {
            let _ = ack.send(Ok(()));
        }
        loop {
            tokio::select! {
                () = checkout.done() => {
                    self.set(|s| s.message = None);
                    return Phase::Starting(None);
                }
                order = self.commands.recv() => match self.answer(order, Situation::Waiting("waiting for its checkout")) {
                    Reaction::Start(ack) => {
                        let _ = ack.send(Ok(()));
                    }
                    Reaction::Halt => return Phase::Stopped,
                    Reaction::Done => return Phase::Done,
                    _ => {}
                },
            }
        }
    }

    /// Wait for a turn to fork (see `spawn::Forks`), answering orders
    /// meanwhile: a stop or a shutdown that comes first ends the wait, and
    /// nothing is started only to be stopped. `ack`, the start that is
    /// waiting, is answered once it has started, or when a stop ends the
    /// wait.
    async fn turn_to_fork(&mut self, ack: &mut Option<Reply>) -> Result<Turn, Phase> {
        let forks = self.forks.clone();
        let turn = forks.turn();
        tokio::pin!(turn);
        loop {
            tokio::select! {
                turn = &mut turn => return turn.ok_or(Phase::Stopped),
                order = self.commands.recv() => match self.answer(order, Situation::Waiting("waiting for its turn to start")) {
                    Reaction::Start(more) => {
                        let _ = more.send(Ok(()));
                    }
                    Reaction::Halt => {
                        if let Some(ack) = ack.take() {
                            let _ = ack.send(Err("stopped before it started".into()));
                        }
                        return Err(Phase::Stopped);
                    }
                    Reaction::Done => return Err(Phase::Done),
                    _ => {}
                },
            }
        }
    }

    /// The one place an order is answered, in each situation the worker
    /// can be in: what can be answered at once is, and the rest is what
    /// the order means to the caller's loop.
    pub(super) fn answer(&mut self, order: Option<Order>, at: Situation<'_>) -> Reaction {
        use Situation::{Replacing, Running, Stopped, Waiting};
        let Some(order) = order else {
            // Nobody can give orders any more: bosun is going away.
            return match at {
                Running(_) => Reaction::End(RunEnd::Shutdown(None)),
                Stopped | Waiting(_) | Replacing(_) => Reaction::Done,
            };
        };
        let label = &self.spec.label;
        match (order, at) {
            (Order::Start(ack) | Order::Restart(ack), Stopped) => {
                self.persist.set_desired(&self.spec, true);
                self.backoff.reset();
                Reaction::Start(ack)
            }
            (Order::Start(ack) | Order::Restart(ack), Waiting(_)) => Reaction::Start(ack),
            (Order::Start(ack), Running(_))
            | (Order::Start(ack) | Order::Restart(ack), Replacing(_)) => {
                let _ = ack.send(Ok(()));
                Reaction::Answered
            }
            (Order::Restart(ack), Running(_)) => Reaction::End(RunEnd::Restart(ack)),
            (Order::Stop(ack), Running(_)) => Reaction::End(RunEnd::Stop(ack)),
            // An explicit stop of a fatal or exited process is remembered
            // too, so the next boot does not start it.
            (Order::Stop(ack), Stopped | Waiting(_)) => {
                self.persist.set_desired(&self.spec, false);
                self.set(|s| s.state = State::Stopped);
                let _ = ack.send(());
                Reaction::Halt
            }
            (Order::Shutdown(ack), Running(_)) => Reaction::End(RunEnd::Shutdown(Some(ack))),
            (Order::Shutdown(ack), Stopped) => {
                let _ = ack.send(());
                Reaction::Done
            }
            (Order::Shutdown(ack), Waiting(_)) => {
                self.set(|s| s.state = State::Stopped);
                let _ = ack.send(());
                Reaction::Done
            }
            (Order::Handover(ack), Running(_)) => Reaction::End(RunEnd::Handover(ack)),
            // Not running: handed over as it is (an exited one-shot must
            // not run again in the next image). Its leaf is empty and goes.
            (Order::Handover(ack), Stopped) => {
                let _ = ack.send(Some((self.handed(None), Vec::new())));
                Reaction::Done
            }
            // Waiting to run: nothing runs to hand over; the next image
            // starts it anew.
            (Order::Handover(ack), Waiting(_)) => {
                let _ = ack.send(None);
                Reaction::Done
            }
            (Order::Signal(sig, ack), Running(pgid) | Replacing(pgid)) => {
                let sent = signal_group(pgid, sig).map_err(|e| format!("sending {sig}: {e}"));
                let _ = ack.send(sent);
                Reaction::Answered
            }
            (Order::Signal(_, ack), Stopped) => {
                let _ = ack.send(Err(format!("`{label}` is not running")));
                Reaction::Answered
            }
            (Order::Signal(_, ack), Waiting(doing)) => {
                let _ = ack.send(Err(format!("`{label}` is {doing}, not running")));
                Reaction::Answered
            }
            (Order::Respawn(spec, ack), Running(_)) => Reaction::End(RunEnd::Respawn(spec, ack)),
            (Order::Respawn(spec, ack), Stopped | Waiting(_)) => {
                self.spec = spec;
                let _ = ack.send(Ok(()));
                Reaction::Answered
            }
            // A stop, a shutdown, a handover or a new spec: acted on once
            // the replacement is undone.
            (
                order @ (Order::Stop(_)
                | Order::Shutdown(_)
                | Order::Handover(_)
                | Order::Respawn(..)),
                Replacing(_),
            ) => Reaction::Defer(order),
        }
    }

    /// Stop the whole group by the config's rules and reap the leader.
    async fn stop(&self, child: &mut Proc, pgid: i32) {
        self.set(|s| s.state = State::Stopping);
        let cfg = &self.spec.config;
        let leader_exit = async {
            let _ = child.wait().await;
        };
        let outcome = stop_group_after(
            pgid,
            self.leaf.as_ref(),
            cfg.stop_signal,
            cfg.kill_timeout,
            leader_exit,
        )
        .await;
        let status = child.wait().await;
        let how = match outcome {
            StopOutcome::Graceful => format!("stopped by {}", cfg.stop_signal),
            StopOutcome::Killed => format!(
                "killed: still running {:?} after {}",
                cfg.kill_timeout, cfg.stop_signal
            ),
        };
        self.sink.note(how).await;
        self.set(|s| {
            if let Ok(status) = status {
                s.exit_code = status.code();
                s.exit_signal = status.signal();
            }
            s.pid = None;
            s.started_at = None;
        });
        self.persist.clear_group(&self.spec);
    }

    /// After the leader exited on its own: stop what is left of its group.
    async fn stop_remains(&self, pgid: i32) {
        let cfg = &self.spec.config;
        if super::group::has_live_members(pgid, self.leaf.as_ref()) {
            stop_group(pgid, self.leaf.as_ref(), cfg.stop_signal, cfg.kill_timeout).await;
            self.sink
                .note("stopped the processes the exited one left behind")
                .await;
        }
        self.persist.clear_group(&self.spec);
    }

    pub(super) fn take_output(&mut self, child: &mut Proc) {
        if let Some((_, flag)) = &self.sink.ready {
            flag.send_replace(false);
        }
        let Proc::Spawned(child) = child else { return };
        let pipes = [
            (
                Stream::Stdout,
                child.stdout.take().map(|p| p.into_owned_fd()),
            ),
            (
                Stream::Stderr,
                child.stderr.take().map(|p| p.into_owned_fd()),
            ),
        ];
        for (stream, fd) in pipes {
            if let Some(fd) = fd {
                self.read_from(stream, fd, Vec::new());
            }
        }
    }

    /// Read the run's `stream` from `fd`, carrying on from `partial`.
    pub(super) fn read_from(
        &mut self,
        stream: Stream,
        fd: std::io::Result<OwnedFd>,
        partial: Vec<u8>,
    ) {
        match fd.and_then(pipe::Receiver::from_owned_fd) {
            Ok(pipe) => {
                let reader = capture(
                    pipe,
                    stream,
                    self.sink.clone(),
                    partial,
                    self.handing.clone(),
                );
                self.captures.retain(|(_, c)| !c.is_finished());
                self.captures.push((stream, tokio::spawn(reader)));
            }
            Err(e) => tracing::error!(process = %self.spec.label, "reading its {stream:?}: {e}"),
        }
    }

    pub(super) fn set(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(f);
    }
}

pub(super) fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => {
            let name = Signal::try_from(sig)
                .map(|s| s.to_string())
                .unwrap_or_else(|_| sig.to_string());
            format!("killed by {name}")
        }
        (None, None) => "exited".to_string(),
    }
}
