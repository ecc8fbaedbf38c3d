//! Live log streams: Server-Sent Events when the client asks for
//! `text/event-stream`, chunked plain text otherwise, so `curl -N` shows
//! lines as they happen.
//!
//! A stream is fed by a task through a small channel; when the client goes
//! away the channel closes and the task ends, so a dropped follower costs
//! nothing afterwards.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt as _};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::long_requests::Held;
use super::views::JobView;
use crate::jobs::{Job, LogFollow};
use crate::supervisor::Follow;

/// Items queued for a follower: lines of up to 16 KiB a tenant chose, so
/// few (a follower that falls behind skips ahead).
const STREAM_BUFFER: usize = 64;

/// One thing sent to a follower.
pub enum Item {
    /// A log line.
    Line(Arc<str>),
    /// The stream is over; SSE clients get this JSON as an `end` event.
    End(String),
}

/// Whether the client asked for Server-Sent Events.
pub fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// Lines as a `text/plain` answer, one per line.
pub fn plain<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        crate::lines::join(lines),
    )
        .into_response()
}

/// Stream what arrives on `rx` until it closes or a reload revokes the
/// caller's key; the stream holds `held` until the client has it all or
/// goes away.
pub fn respond(sse: bool, rx: mpsc::Receiver<Item>, held: Held) -> Response {
    let items = Holding {
        items: ReceiverStream::new(rx),
        revoked: Box::pin(held.revoked()),
        _held: held,
    };
    if sse {
        let events = items.map(|item| {
            Ok::<_, Infallible>(match item {
                Item::Line(line) => Event::default().data(&*line),
                Item::End(json) => Event::default().event("end").data(json),
            })
        });
        return Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response();
    }
    let chunks = items.filter_map(|item| async move {
        match item {
            Item::Line(line) => Some(Ok::<_, Infallible>(Bytes::from(format!("{line}\n")))),
            Item::End(_) => None,
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A stream that keeps its long-request place until it is dropped, and
/// ends when its key is revoked.
struct Holding<S> {
    items: S,
    revoked: Pin<Box<dyn Future<Output = ()> + Send>>,
    _held: Held,
}

impl<S: Stream + Unpin> Stream for Holding<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.revoked.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.items).poll_next(cx)
    }
}

/// Feed a job's log to a follower until the job ends; `record` is the job
/// as the caller last saw it, sent at the end if the job was already over.
pub fn job_log(follow: LogFollow, record: Job) -> mpsc::Receiver<Item> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let (lines, mut live, mut job) = match follow {
            LogFollow::Done(lines) => (lines, None, None),
            LogFollow::Live { lines, rx, job } => (lines, Some(rx), Some(job)),
        };
        for line in lines {
            if tx.send(Item::Line(line)).await.is_err() {
                return;
            }
        }
        if let (Some(live), Some(job)) = (&mut live, &mut job) {
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    got = live.recv() => match got {
                        Ok(line) => if tx.send(Item::Line(line)).await.is_err() { return },
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            let note = format!("[bosun] this follower fell behind: {n} lines skipped");
                            if tx.send(Item::Line(Arc::from(note))).await.is_err() { return }
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    () = ended(job) => {
                        // Every line is published before the job turns
                        // terminal: drain what is left, then stop.
                        while let Ok(line) = live.try_recv() {
                            if tx.send(Item::Line(line)).await.is_err() { return }
                        }
                        break;
                    }
                }
            }
        }
        let last = job.map_or(record, |j| j.borrow().clone());
        let end = serde_json::to_string(&JobView::from(&last)).unwrap_or_default();
        let _ = tx.send(Item::End(end)).await;
    });
    rx
}

/// Resolves once the job is over (or its record is gone).
async fn ended(job: &mut tokio::sync::watch::Receiver<Job>) {
    let _ = job.wait_for(|j| j.state.is_terminal()).await;
}

/// Feed a process's log to a follower until the process's log closes.
pub fn process_log(follow: Follow) -> mpsc::Receiver<Item> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let Follow { recent, mut lines } = follow;
        for line in recent {
            if tx.send(Item::Line(format_line(&line))).await.is_err() {
                return;
            }
        }
        loop {
            // A quiet process's follower is let go when its client leaves,
            // not at the next line.
            let line = tokio::select! {
                () = tx.closed() => return,
                line = lines.recv() => line,
            };
            let Some(line) = line else { return };
            if tx.send(Item::Line(format_line(&line))).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// A process log line as served: `<name>-<instance> | <text>`.
pub fn format_line(line: &crate::supervisor::LogLine) -> Arc<str> {
    Arc::from(format!("{} | {}", line.process, line.text))
}
