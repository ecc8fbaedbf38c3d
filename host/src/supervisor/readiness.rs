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

use std::future::{Future, pending};
use std::pin::Pin;
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
    /// The probe under way, if any: at most one, each within
    /// `probe::PROBE_TIMEOUT`.
    probing: Option<Pin<Box<dyn Future<Output = bool> + Send>>>,
}

impl Readiness {
    /// Watch the run of `spec` whose status is `status`.
    pub(super) fn of(
        sink: &LineSink,
        spec: &InstanceSpec,
        status: Arc<watch::Sender<Status>>,
    ) -> Self {
        Self::new(
            sink.ready.as_ref().map(|(_, flag)| flag.subscribe()),
            spec.ready.clone(),
            status,
        )
    }

    fn new(
        logged: Option<watch::Receiver<bool>>,
        check: Option<(Ready, Duration)>,
        status: Arc<watch::Sender<Status>>,
    ) -> Self {
        Self {
            logged,
            check,
            status,
            started: Instant::now(),
            tick: tokio::time::interval(CHECK_EVERY),
            probing: None,
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
    /// Cancel-safe: a `select!` may drop it and call it again, and a probe
    /// under way is kept (in `probing`) and carries on at the next call,
    /// so a busy worker cannot starve its probes or its timeout.
    pub(super) async fn next(&mut self) -> Verdict {
        let Self {
            logged,
            check,
            status,
            started,
            tick,
            probing,
        } = self;
        loop {
            tokio::select! {
                Ok(()) = async { logged.as_mut().expect("guarded").changed().await }, if logged.is_some() => {
                    *logged = None;
                    return Verdict::Ready;
                }
                passed = async { probing.as_mut().expect("guarded").await }, if probing.is_some() => {
                    *probing = None;
                    if passed {
                        return Verdict::Ready;
                    }
                }
                _ = tick.tick(), if probing.is_none() => {
                    if status.borrow().state != State::Starting {
                        continue;
                    }
                    let Some((check, timeout)) = check else {
                        // Starting without a check happens only before the
                        // first checkout, which the worker waits for itself.
                        return pending().await;
                    };
                    if started.elapsed() >= *timeout {
                        return Verdict::NotReady(format!("not ready within {timeout:?}; restarting"));
                    }
                    let check = check.clone();
                    *probing = Some(Box::pin(async move { probe::passes(&check).await }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller whose `select!` drops `next()` every 50 ms (a busy worker)
    /// still gets the deadline: the probe under way (an HTTP check that a
    /// port accepts and never answers, 1 s each) is kept across the drops.
    #[tokio::test]
    async fn a_busy_caller_still_gets_the_deadline_of_a_hanging_probe() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("its address");
        let holding = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let status = Arc::new(watch::Sender::new(Status::new("web", 0, true)));
        let check = Ready::Http(addr, "/healthz".into());
        let mut readiness = Readiness::new(None, Some((check, Duration::from_millis(300))), status);
        // 600 drops of 50 ms: 30 s, ten times what the fix needs.
        let mut verdict = None;
        for _ in 0..600 {
            if let Ok(found) =
                tokio::time::timeout(Duration::from_millis(50), readiness.next()).await
            {
                verdict = Some(found);
                break;
            }
        }
        holding.abort();
        match verdict {
            Some(Verdict::NotReady(why)) => assert_eq!(why, "not ready within 300ms; restarting"),
            Some(Verdict::Ready) => panic!("a probe nobody answered passed"),
            None => panic!("the deadline never came while next() was dropped every 50 ms"),
        }
    }
}
