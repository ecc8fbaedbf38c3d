//! When a connection is idle: no request in flight, since when.
//!
//! hyper closes an HTTP/1 connection whose next request headers are late,
//! but nothing in hyper or hyper-util closes a connection that never sends
//! a first byte (protocol detection waits forever), nor an HTTP/2
//! connection that stays open with no stream. The listener watches this
//! instead: a request is in flight from its arrival until its response
//! body has been sent or dropped, so a streamed log keeps its connection
//! busy for as long as it streams, and a silent connection is idle from
//! the moment it was accepted.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use hyper::body::{Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::Instant;

/// Requests in flight on one connection, and when it last had none.
#[derive(Clone, Copy)]
struct Load {
    in_flight: usize,
    idle_since: Instant,
    /// Requests begun so far.
    seen: u64,
}

/// The busy side: counts requests in and out.
#[derive(Clone)]
pub struct Activity(Arc<watch::Sender<Load>>);

/// The watching side.
pub struct Idle(watch::Receiver<Load>);

/// A new connection's activity: idle from now.
pub fn track() -> (Activity, Idle) {
    let (tx, rx) = watch::channel(Load {
        in_flight: 0,
        idle_since: Instant::now(),
        seen: 0,
    });
    (Activity(Arc::new(tx)), Idle(rx))
}

impl Activity {
    /// A request arrived; it is in flight until the guard drops.
    pub fn begin(&self) -> Busy {
        self.0.send_modify(|l| {
            l.in_flight += 1;
            l.seen += 1;
        });
        Busy(self.0.clone())
    }
}

/// One request in flight.
pub struct Busy(Arc<watch::Sender<Load>>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|l| {
            l.in_flight -= 1;
            if l.in_flight == 0 {
                l.idle_since = Instant::now();
            }
        });
    }
}

impl Idle {
    /// Resolves once the connection's first request has begun (at once if
    /// it has); never once every [`Activity`] is gone.
    pub async fn first_request(&mut self) {
        if self.0.wait_for(|l| l.seen > 0).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once the connection has had no request in flight for
    /// `limit`. Never resolves once every [`Activity`] is gone (the
    /// connection is ending anyway).
    pub async fn for_longer_than(&mut self, limit: Duration) {
        loop {
            let load = *self.0.borrow_and_update();
            if load.in_flight > 0 {
                if self.0.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep_until(load.idle_since + limit) => return,
                changed = self.0.changed() => if changed.is_err() {
                    std::future::pending::<()>().await;
                },
            }
        }
    }
}

/// A response body that keeps its request in flight until it is sent or
/// dropped.
struct Tracked {
    body: Body,
    _busy: Busy,
}

/// `body`, keeping `busy` until it is sent or dropped.
pub fn tracked(body: Body, busy: Busy) -> Body {
    Body::new(Tracked { body, _busy: busy })
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_request_out() {
        let (activity, mut idle) = track();
        let busy = activity.begin();
        let watch = tokio::spawn(async move {
            idle.for_longer_than(Duration::from_secs(10)).await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!watch.is_finished(), "idle while a request is in flight");
        let out = Instant::now();
        drop(busy);
        let fired = watch.await.expect("watch");
        assert_eq!(fired - out, Duration::from_secs(10));
    }
}
