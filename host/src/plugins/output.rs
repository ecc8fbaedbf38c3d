//! A plugin's stdout and stderr, turned into log lines as they are written.
//!
//! Guests write in arbitrary pieces (WASI splits writes at 4 KiB, `print!`
//! writes fragments). Each stream keeps its own partial line, so a line is
//! only ever emitted whole and stdout never splices into stderr. Output past
//! the run's byte cap is dropped, with one note when it starts and a count at
//! the end. Writes still succeed, so a chatty plugin is cut short in the log
//! but not failed. Host memory stays bounded by the cap on one line.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

pub use crate::lines::Stream;
use crate::lines::{LineAssembler, to_text};

/// Receives each log line as it is completed. Called with a lock held, in
/// order; keep it quick (push to a channel or a buffer).
pub type LogSink = Arc<dyn Fn(Stream, &str) + Send + Sync>;

/// The shared state of one run's stdout and stderr.
#[derive(Clone)]
pub(crate) struct OutputCapture {
    inner: Arc<Mutex<Capture>>,
}

struct Capture {
    sink: LogSink,
    cap: usize,
    remaining: usize,
    dropped: u64,
    streams: [LineAssembler; 2],
}

impl OutputCapture {
    pub(crate) fn new(sink: LogSink, cap: usize) -> Self {
        let capture = Capture {
            sink,
            cap,
            remaining: cap,
            dropped: 0,
            streams: Default::default(),
        };
        Self {
            inner: Arc::new(Mutex::new(capture)),
        }
    }

    /// A pipe to give the guest as its stdout or stderr.
    pub(crate) fn pipe(&self, stream: Stream) -> CapturePipe {
        CapturePipe {
            capture: self.clone(),
            stream,
        }
    }

    /// Emit what is left of unfinished lines, and how much was dropped.
    pub(crate) fn finish(&self) {
        let mut c = self.lock();
        c.flush_partials();
        if c.dropped > 0 {
            let note = format!("[bosun] {} bytes of plugin output were dropped", c.dropped);
            (c.sink)(Stream::Host, &note);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Capture> {
        // A panicking sink must not turn every later write into a panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Capture {
    fn push(&mut self, stream: Stream, bytes: &[u8]) {
        if self.remaining == 0 {
            self.dropped += bytes.len() as u64;
            return;
        }
        let take = bytes.len().min(self.remaining);
        self.remaining -= take;
        let slot = usize::from(stream == Stream::Stderr);
        let sink = &self.sink;
        self.streams[slot].push(&bytes[..take], |line, split| {
            sink(stream, &to_text(line, split))
        });
        if take < bytes.len() {
            self.dropped += (bytes.len() - take) as u64;
            self.flush_partials();
            let note = format!(
                "[bosun] output cap of {} bytes reached; further output is dropped",
                self.cap
            );
            (self.sink)(Stream::Host, &note);
        }
    }

    fn flush_partials(&mut self) {
        let sink = &self.sink;
        for (slot, stream) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
            self.streams[slot].finish(|line, split| sink(stream, &to_text(line, split)));
        }
    }
}

/// One of a run's output streams, as WASI sees it.
#[derive(Clone)]
pub(crate) struct CapturePipe {
    capture: OutputCapture,
    stream: Stream,
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.capture.lock().push(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: the capture never blocks the guest.
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CapturePipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.capture.lock().push(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Lines = Arc<Mutex<Vec<(Stream, String)>>>;

    fn collect(cap: usize) -> (OutputCapture, Lines) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink_lines = lines.clone();
        let sink: LogSink =
            Arc::new(move |s, l| sink_lines.lock().expect("lock").push((s, l.to_string())));
        (OutputCapture::new(sink, cap), lines)
    }

    #[test]
    fn reassembles_lines_per_stream_across_writes() {
        let (cap, lines) = collect(1 << 20);
        let mut out = cap.pipe(Stream::Stdout);
        let mut err = cap.pipe(Stream::Stderr);
        out.write(Bytes::from_static(b"hel")).expect("write");
        err.write(Bytes::from_static(b"oops\r\nhalf"))
            .expect("write");
        out.write(Bytes::from_static(b"lo\nworld\n"))
            .expect("write");
        err.write(Bytes::from_static(b" done")).expect("write");
        cap.finish();
        let got = lines.lock().expect("lock").clone();
        assert_eq!(
            got,
            vec![
                (Stream::Stderr, "oops".to_string()),
                (Stream::Stdout, "hello".to_string()),
                (Stream::Stdout, "world".to_string()),
                (Stream::Stderr, "half done".to_string()),
            ]
        );
    }

    #[test]
    fn drops_past_the_cap_and_says_so() {
        let (cap, lines) = collect(10);
        let mut out = cap.pipe(Stream::Stdout);
        out.write(Bytes::from_static(b"12345\n67890abc\n"))
            .expect("write is never refused");
        out.write(Bytes::from_static(b"more\n"))
            .expect("write is never refused");
        cap.finish();
        let got = lines.lock().expect("lock").clone();
        assert_eq!(got[0], (Stream::Stdout, "12345".to_string()));
        assert_eq!(got[1], (Stream::Stdout, "6789".to_string()));
        assert_eq!(got[2].0, Stream::Host);
        assert!(got[2].1.contains("cap of 10 bytes"), "{got:?}");
        assert_eq!(
            got[3],
            (
                Stream::Host,
                "[bosun] 10 bytes of plugin output were dropped".to_string()
            )
        );
    }
}
