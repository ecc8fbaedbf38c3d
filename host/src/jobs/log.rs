//! A job's log: what its plugin printed, kept within a byte cap, and sent to
//! live followers as it comes.
//!
//! The cap keeps the head *and* the tail: the first lines say what a deploy
//! set out to do, the last ones why it failed; the middle is what a flood
//! would push out. Followers see every line live, cap or not (the engine's
//! own `max_output` bounds that).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;

/// Lines a slow follower may fall behind before it is told it skipped some.
const FOLLOW_BUFFER: usize = 1024;

/// One job's log.
pub struct JobLog {
    inner: Mutex<Kept>,
}

struct Kept {
    half: usize,
    head: Vec<Arc<str>>,
    head_bytes: usize,
    tail: VecDeque<Arc<str>>,
    tail_bytes: usize,
    cut_lines: u64,
    cut_bytes: u64,
    /// Lines added since the log was last saved.
    unsaved: bool,
    /// Created by the first follower: most jobs have none, and a channel
    /// costs a 1,024-slot buffer.
    followers: Option<broadcast::Sender<Arc<str>>>,
}

impl JobLog {
    /// An empty log keeping at most about `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Kept {
                half: max_bytes / 2,
                head: Vec::new(),
                head_bytes: 0,
                tail: VecDeque::new(),
                tail_bytes: 0,
                cut_lines: 0,
                cut_bytes: 0,
                unsaved: false,
                followers: None,
            }),
        }
    }

    /// An already-finished log, as stored.
    pub fn stored(text: &str) -> Vec<Arc<str>> {
        text.lines().map(Arc::from).collect()
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add a line.
    pub fn push(&self, line: &str) {
        let line: Arc<str> = Arc::from(line);
        let mut k = self.lock();
        k.unsaved = true;
        let size = line.len() + 1;
        if k.tail.is_empty() && k.head_bytes + size <= k.half {
            k.head_bytes += size;
            k.head.push(line.clone());
        } else {
            k.tail_bytes += size;
            k.tail.push_back(line.clone());
            while k.tail_bytes > k.half {
                let Some(old) = k.tail.pop_front() else { break };
                k.tail_bytes -= old.len() + 1;
                k.cut_lines += 1;
                k.cut_bytes += old.len() as u64 + 1;
            }
        }
        // Sent under the lock, so a follower's snapshot and its stream
        // never miss or repeat a line.
        if let Some(followers) = &k.followers {
            let _ = followers.send(line);
        }
    }

    /// The lines kept, with a note where lines were cut.
    pub fn lines(&self) -> Vec<Arc<str>> {
        Self::kept(&self.lock())
    }

    fn kept(k: &Kept) -> Vec<Arc<str>> {
        let mut out = k.head.clone();
        if k.cut_lines > 0 {
            out.push(Arc::from(format!(
                "[bosun] {} lines ({} bytes) cut from the log here",
                k.cut_lines, k.cut_bytes
            )));
        }
        out.extend(k.tail.iter().cloned());
        out
    }

    /// The kept lines as text, one per line.
    pub fn text(&self) -> String {
        crate::lines::join(self.lines())
    }

    /// The kept lines as text if lines were added since the last call.
    pub fn take_unsaved(&self) -> Option<String> {
        let mut k = self.lock();
        if !std::mem::take(&mut k.unsaved) {
            return None;
        }
        Some(crate::lines::join(Self::kept(&k)))
    }

    /// The lines so far and every later line, with none missed or repeated.
    pub fn follow(&self) -> (Vec<Arc<str>>, broadcast::Receiver<Arc<str>>) {
        let mut k = self.lock();
        let rx = k
            .followers
            .get_or_insert_with(|| broadcast::channel(FOLLOW_BUFFER).0)
            .subscribe();
        (Self::kept(&k), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_head_and_tail_and_notes_the_cut() {
        let log = JobLog::new(40);
        for i in 0..20 {
            log.push(&format!("line {i:02}"));
        }
        let lines: Vec<String> = log.lines().iter().map(|l| l.to_string()).collect();
        assert_eq!(lines[0], "line 00");
        assert_eq!(lines[1], "line 01");
        assert!(
            lines[2].contains("lines") && lines[2].contains("cut"),
            "{lines:?}"
        );
        assert_eq!(lines.last().map(String::as_str), Some("line 19"));
        let kept_bytes: usize = lines
            .iter()
            .filter(|l| l.starts_with("line"))
            .map(|l| l.len() + 1)
            .sum();
        assert!(kept_bytes <= 40, "{kept_bytes}");
    }

    #[test]
    fn take_unsaved_reports_only_changes() {
        let log = JobLog::new(1024);
        assert_eq!(log.take_unsaved(), None);
        log.push("a");
        assert_eq!(log.take_unsaved().as_deref(), Some("a\n"));
        assert_eq!(log.take_unsaved(), None);
    }
}
