//! The worker's side of an upgrade in place, both ways: adopting the
//! process the previous image handed over, and handing its own over to the
//! next (see `handoff`).

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use super::handoff::{HandedInstance, HandedPipe, adopt_fd};
use super::running::{Adopted, Proc, Run};
use super::status::State;
use super::worker::{Handed, Worker};
use crate::lines::Stream;

/// How long an upgrade waits for a pipe's reader to stop.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);

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
                self.read_from(stream, adopt_fd(pipe.fd), pipe.partial);
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
