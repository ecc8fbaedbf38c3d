//! Whether a starting run is ready yet, and when it has failed to be.
//!
//! A run is `starting` until its check passes: its log printed the `ready`
//! pattern (the log sink raises a flag when a line matches), or a probe
//! (`probe`: a TCP connect, an HTTP request) succeeds, tried every
//! [`CHECK_EVERY`]. Not ready within the check's timeout, the run is
//! treated like a crash. A run without a check is running at once.
//!
//! A replacement started new-first (`replace`) uses [`CHECK_EVERY`] and
//! the same probes, but in a loop of its own: its probe must not be
//! answered by the process it replaces.

use std::future::pending;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::Interval;

use super::logs::LineSink;
use super::probe;
use super::spec::{InstanceSpec, Ready};
use super::status::{State, Status};

/// How often readiness by port or HTTP is probed.
pub(super) const CHECK_EVERY: Duration = Duration::from_millis(100);

/// What [`Readiness::next`] found.
pub(super) enum Verdict {
    /// The run is ready (or its log said so).
    Ready,
    /// The run was not ready within its check's timeout; why, in words.
    NotReady(String),
}

/// The readiness of one run, from the moment it is supervised.
pub(super) struct Readiness {
    /// Raised by the log sink when a line matches the `ready` pattern;
    /// `None` once seen (or without a pattern).
    logged: Option<watch::Receiver<bool>>,
    check: Option<(Ready, Duration)>,
    status: Arc<watch::Sender<Status>>,
    started: Instant,
    tick: Interval,
}

impl Readiness {
    /// Watch the run of `spec` whose status is `status`.
    pub(super) fn new(
        sink: &LineSink,
        spec: &InstanceSpec,
        status: Arc<watch::Sender<Status>>,
    ) -> Self {
        Self {
            logged: sink.ready.as_ref().map(|(_, flag)| flag.subscribe()),
            check: spec.ready.clone(),
            status,
            started: Instant::now(),
            tick: tokio::time::interval(CHECK_EVERY),
        }
    }

    /// Whether the log said ready before the run was watched (an adopted
    /// run's, or a line read at once).
    pub(super) fn logged_already(&mut self) -> bool {
        let logged = self
            .logged
            .as_mut()
            .is_some_and(|rx| *rx.borrow_and_update());
        if logged {
            self.logged = None;
        }
        logged
    }

    /// The next finding: resolves when the log says ready, a probe passes
    /// or the timeout passes while the run is `starting`; never otherwise.
    /// Cancel-safe: a `select!` may drop it and call it again.
    pub(super) async fn next(&mut self) -> Verdict {
        loop {
            tokio::select! {
                Ok(()) = async { self.logged.as_mut().expect("guarded").changed().await }, if self.logged.is_some() => {
                    self.logged = None;
                    return Verdict::Ready;
                }
                _ = self.tick.tick() => {
                    if self.status.borrow().state != State::Starting {
                        continue;
                    }
                    let Some((check, timeout)) = &self.check else {
                        // Starting without a check happens only before the
                        // first checkout, which the worker waits for itself.
                        return pending().await;
                    };
                    if probe::passes(check).await {
                        return Verdict::Ready;
                    }
                    if self.started.elapsed() >= *timeout {
                        return Verdict::NotReady(format!("not ready within {timeout:?}; restarting"));
                    }
                }
            }
        }
    }
}
