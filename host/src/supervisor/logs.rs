//! A supervised process's output: whole lines per stream, optionally without
//! ANSI codes and with a timestamp, into a ring of recent lines, to live
//! followers, and to the log files.
//!
//! Each of a process's two pipes has its own reader and line assembler, so a
//! line is only ever emitted whole. Writing goes through the project's one
//! writer (see `logfile`), so the merged file never interleaves two lines.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use regex::Regex;

use tokio::net::unix::pipe;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::log_line::LogLine;
use super::logfile::{FileSpec, WriteMsg};
use crate::config::{resolved, resolved_short_of};
use crate::lines::{LineAssembler, Stream, to_text};

/// Recent lines kept per process for `logs`.
pub const RING_LINES: usize = 1000;
/// Bytes of text those lines may hold together: a line may be 16 KiB, and
/// 1,000 of them (16 MiB per instance, in bosun's memory) are the tenant's
/// to choose. The oldest lines go first.
pub const RING_BYTES: usize = 1 << 20;
/// Lines a slow follower may fall behind before it skips ahead. The slots
/// are paid for up front, so this stays small (at 100 processes a 4,096-slot
/// buffer alone cost 20 MiB of bosun's RSS), and only while somebody
/// follows: the channel is made by the first follower and dropped once none
/// is left.
const FOLLOW_BUFFER: usize = 256;
/// Bytes read from a pipe at once: as much as a pipe holds, so a fast
/// writer is drained in one read. The buffer is the reading thread's, not
/// each process's: a fleet of processes costs no buffers.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
}
/// After a read that found less than a full chunk, let the pipe fill this
/// long before reading again. A program that flushes every line otherwise
/// has bosun wake, read and hand over one line at a time; with this a line
/// reaches the log at most ~1 ms later, and the pipe's 64 KiB hold far more
/// than any program writes in that time. Measured with a writer flushing
/// each of 1M lines: its run time under bosun went from ~2.45 s to ~2.0 s,
/// where the same writer piped into `cat` takes ~1.9 s.
const COALESCE: Duration = Duration::from_millis(1);

/// The recent lines and live followers of one process instance.
pub(crate) struct ProcessLog {
    ring: Mutex<Ring>,
}

/// The recent lines and the bytes of text they hold, and the channel to
/// the live followers while there are any.
#[derive(Default)]
struct Ring {
    lines: VecDeque<Arc<LogLine>>,
    bytes: usize,
    followers: Option<broadcast::Sender<Arc<LogLine>>>,
}

impl std::ops::Deref for Ring {
    type Target = VecDeque<Arc<LogLine>>;

    fn deref(&self) -> &Self::Target {
        &self.lines
    }
}

impl ProcessLog {
    pub(crate) fn new() -> Self {
        Self {
            ring: Mutex::new(Ring::default()),
        }
    }

    fn push(&self, line: Arc<LogLine>) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.bytes += line.text.len();
        ring.lines.push_back(line.clone());
        while ring.lines.len() > RING_LINES || (ring.bytes > RING_BYTES && ring.lines.len() > 1) {
            if let Some(old) = ring.lines.pop_front() {
                ring.bytes -= old.text.len();
            }
        }
        // Sent under the ring's lock, so `follow` sees each line exactly once.
        if let Some(followers) = &ring.followers
            && followers.send(line).is_err()
        {
            ring.followers = None;
        }
    }

    /// The last `n` lines, oldest first.
    pub(crate) fn recent(&self, n: usize) -> Vec<Arc<LogLine>> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter()
            .skip(ring.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// The last `n` lines and a receiver of every line after them, with no gap
    /// and no repeat between the two.
    pub(crate) fn follow(
        &self,
        n: usize,
    ) -> (Vec<Arc<LogLine>>, broadcast::Receiver<Arc<LogLine>>) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let recent = ring
            .iter()
            .skip(ring.len().saturating_sub(n))
            .cloned()
            .collect();
        let followers = ring
            .followers
            .get_or_insert_with(|| broadcast::channel(FOLLOW_BUFFER).0);
        (recent, followers.subscribe())
    }
}

/// Where one instance's lines go.
#[derive(Clone)]
pub(crate) struct LineSink {
    pub label: Arc<str>,
    pub strip_ansi: bool,
    pub timestamps: bool,
    pub log: Arc<ProcessLog>,
    pub file: Arc<FileSpec>,
    pub writer: mpsc::Sender<Vec<WriteMsg>>,
    /// A readiness pattern and the flag to raise when a line matches it.
    pub ready: Option<(Regex, watch::Sender<bool>)>,
}

impl LineSink {
    /// Record one line: ring, followers, files.
    pub(crate) async fn emit(&self, stream: Stream, text: String) {
        let msg = self.record(stream, text);
        // The writer only goes away at shutdown; then the ring is all there is.
        let _ = self.writer.send(vec![msg]).await;
    }

    /// Record the lines of one read, handing them to the file writer as one
    /// batch: one wake-up of its thread per read, not per line (a writer
    /// flushing every line spent much of bosun's CPU on thread switches).
    async fn emit_all(&self, stream: Stream, lines: &mut Vec<String>) {
        if lines.is_empty() {
            return;
        }
        let batch = lines.drain(..).map(|t| self.record(stream, t)).collect();
        let _ = self.writer.send(batch).await;
    }

    /// Ring and followers; returns the line for the file writer.
    fn record(&self, stream: Stream, text: String) -> WriteMsg {
        let text = if self.strip_ansi { strip(&text) } else { text };
        if let Some((pattern, flag)) = &self.ready
            && pattern.is_match(&text)
        {
            flag.send_replace(true);
        }
        let time = SystemTime::now();
        let text = if self.timestamps {
            format!("{} {text}", humantime::format_rfc3339_millis(time))
        } else {
            text
        };
        let line = Arc::new(LogLine {
            process: self.label.to_string(),
            stream,
            text,
            time,
        });
        self.log.push(line.clone());
        WriteMsg {
            file: self.file.clone(),
            label: self.label.clone(),
            line,
        }
    }

    /// A note from bosun itself about this process ("started", "exited 1").
    pub(crate) async fn note(&self, text: impl Into<String>) {
        self.emit(Stream::Host, format!("[bosun] {}", text.into()))
            .await;
    }
}

fn strip(text: &str) -> String {
    if !text.contains('\x1b') {
        return text.to_string();
    }
    String::from_utf8_lossy(&strip_ansi_escapes::strip(text)).into_owned()
}

/// What a pipe's reader gives back when an upgrade stops it: the pipe and
/// the unfinished line; `None` when the pipe had ended.
pub(crate) type Handback = Option<(OwnedFd, Vec<u8>)>;

/// Read `pipe` to its end, emitting whole lines, starting with `partial`
/// (what an earlier reader had of an unfinished line). When `handover`
/// fires (an upgrade), stop between reads and give the pipe and the
/// unfinished line back, so the next image reads on without losing or
/// breaking a line.
///
/// An idle pipe waits in the runtime's epoll. Once output comes, the pipe
/// leaves the epoll and is read every [`COALESCE`] until it is drained:
/// registered, each `write` of a program flushing every line would wake a
/// thread of bosun's (edge-triggered readiness), a million wakeups for a
/// million lines; out of it, a write wakes nobody.
pub(crate) async fn capture(
    pipe: pipe::Receiver,
    stream: Stream,
    sink: LineSink,
    partial: Vec<u8>,
    handover: CancellationToken,
) -> Handback {
    let mut asm = LineAssembler::resume(partial);
    let mut lines = Vec::new();
    let mut idle = pipe;
    'capture: loop {
        tokio::select! {
            biased;
            () = handover.cancelled() => {
                return idle.into_blocking_fd().ok().map(|fd| (fd, asm.into_partial()));
            }
            ready = idle.readable() => if let Err(e) = ready {
                sink.note(format!("reading {stream:?}: {e}")).await;
                break;
            },
        }
        let busy = match idle.into_nonblocking_fd() {
            Ok(fd) => File::from(fd),
            Err(e) => {
                sink.note(format!("reading {stream:?}: {e}")).await;
                break;
            }
        };
        // What the pipe holds (less than 64 KiB where the kernel gave a
        // small one): a read of less than half of it found the pipe all
        // but empty, and the next may wait.
        let holds = fcntl(&busy, FcntlArg::F_GETPIPE_SZ)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(READ_CHUNK)
            .min(READ_CHUNK);
        loop {
            if handover.is_cancelled() {
                return blocking(busy).map(|fd| (fd, asm.into_partial()));
            }
            // Read and cut into lines with no await between: the thread's
            // buffer is free again before any other reader of this thread
            // runs.
            let read = SCRATCH.with_borrow_mut(|buf| {
                let n = (&busy).read(buf)?;
                asm.push(&buf[..n], |line, split| lines.push(to_text(line, split)));
                Ok::<_, std::io::Error>(n)
            });
            match read {
                Ok(0) => break 'capture,
                Ok(n) => {
                    sink.emit_all(stream, &mut lines).await;
                    if n < holds / 2 {
                        tokio::time::sleep(COALESCE).await;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    sink.note(format!("reading {stream:?}: {e}")).await;
                    break 'capture;
                }
            }
        }
        idle = match pipe::Receiver::from_owned_fd_unchecked(busy.into()) {
            Ok(idle) => idle,
            Err(e) => {
                sink.note(format!("reading {stream:?}: {e}")).await;
                break;
            }
        };
    }
    asm.finish(|line, split| lines.push(to_text(line, split)));
    sink.emit_all(stream, &mut lines).await;
    None
}

/// The pipe back in blocking mode, for the next image.
fn blocking(pipe: File) -> Option<OwnedFd> {
    let flags = OFlag::from_bits_truncate(fcntl(&pipe, FcntlArg::F_GETFL).ok()?);
    fcntl(&pipe, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).ok()?;
    Some(pipe.into())
}

/// A configured log file path with its rotation settings.
pub(crate) fn file_spec(
    path: &Path,
    max_bytes: u64,
    keep: u32,
    project_dir: &Path,
) -> Arc<FileSpec> {
    // Resolved, not only normalised, so a log reached through a link to
    // the project dir (or a project dir that is itself a link) is still in
    // it; but never through a link inside the project dir, which its
    // programs make: `app.log -> /etc/passwd` there must stay a link
    // beneath the dir, which the writer refuses, not become /etc/passwd.
    let project = resolved(project_dir);
    let (path, rel) = resolved_short_of(path, &project);
    Arc::new(FileSpec {
        path,
        beneath: rel.map(|rel| (project, rel)),
        max_bytes,
        keep,
    })
}

/// The default log file `path`, beneath bosun's resolved state dir (in no
/// project dir, and with no link bosun did not make), with its rotation
/// settings.
pub(crate) fn own_file_spec(path: PathBuf, max_bytes: u64, keep: u32) -> Arc<FileSpec> {
    Arc::new(FileSpec {
        path,
        beneath: None,
        max_bytes,
        keep,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: String) -> Arc<LogLine> {
        Arc::new(LogLine {
            process: "web-0".into(),
            stream: Stream::Stdout,
            text,
            time: SystemTime::now(),
        })
    }

    #[test]
    fn the_ring_is_bounded_by_bytes_as_well_as_lines() {
        let log = ProcessLog::new();
        for i in 0..RING_LINES {
            log.push(line(format!("{i:05}{}", "x".repeat(16 << 10))));
        }
        let kept = log.recent(RING_LINES);
        let bytes: usize = kept.iter().map(|l| l.text.len()).sum();
        assert!(bytes <= RING_BYTES, "{bytes} bytes kept");
        assert!(kept.len() < RING_LINES && !kept.is_empty());
        assert!(
            kept.last().expect("newest").text.starts_with("00999"),
            "the newest stay"
        );
        for i in 0..RING_LINES + 5 {
            log.push(line(format!("short {i}")));
        }
        assert_eq!(log.recent(usize::MAX).len(), RING_LINES);
    }

    /// The tenant's links in its dir, in place before bosun starts: the
    /// log itself to a file of the host's, a dir on the way to one of the
    /// host's dirs, and a hard link to a host file. bosun, as root, writes
    /// none of them.
    #[test]
    fn a_log_linked_out_of_the_project_writes_nothing_outside() {
        use std::os::unix::fs::symlink;
        let root = tempfile::TempDir::new().expect("temp");
        let root = root.path().canonicalize().expect("canonical");
        let (project, host) = (root.join("p"), root.join("host"));
        std::fs::create_dir_all(&project).expect("project");
        std::fs::create_dir_all(&host).expect("host");
        std::fs::write(host.join("passwd"), "root:x:0:0\n").expect("a host file");
        symlink(host.join("passwd"), project.join("app.log")).expect("symlink");
        symlink(&host, project.join("logs")).expect("symlink");
        std::fs::write(host.join("shadow"), "root:*:1::::::\n").expect("a host file");
        std::fs::hard_link(host.join("shadow"), project.join("hard.log")).expect("link");
        let (writer, thread) = super::super::logfile::spawn_writer("p", None);
        let paths = ["app.log", "logs/new.log", "hard.log"].map(|p| project.join(p));
        for path in paths {
            let file = file_spec(&path, 1 << 20, 1, &project);
            assert!(file.beneath.is_some(), "{file:?}");
            let message = WriteMsg {
                file,
                label: "web-0".into(),
                line: line("root::0:0::/:/bin/sh".into()),
            };
            writer.blocking_send(vec![message]).expect("sent");
        }
        drop(writer);
        thread.join().expect("the writer ends");
        assert_eq!(
            std::fs::read_to_string(host.join("passwd")).expect("read"),
            "root:x:0:0\n"
        );
        assert!(!host.join("new.log").exists());
        assert_eq!(
            std::fs::read_to_string(host.join("shadow")).expect("read"),
            "root:*:1::::::\n"
        );
    }
}
