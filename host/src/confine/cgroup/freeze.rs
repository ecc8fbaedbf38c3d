//! Freezing leaves (cgroup v2's `cgroup.freeze`, Linux 5.2+): every
//! process in them stops at once, whatever it does with signals, and no pid
//! is named (so none can be one reused meanwhile). A replacement's
//! readiness probe uses it to keep the other holders of a shared socket
//! from answering.
//!
//! A freeze must never outlast its use, whatever happens to the task that
//! made it: a program spawned into a frozen leaf stops before its exec, and
//! std's spawn waits for that exec on a runtime thread. So besides the
//! guard's drop, a plain thread thaws the leaves after [`HARD_LIMIT`].

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// The longest a freeze lasts, even if its guard is never dropped.
const HARD_LIMIT: Duration = Duration::from_secs(3);

/// Leaves frozen until this is dropped.
pub struct Frozen {
    dirs: Vec<PathBuf>,
    /// Dropped with the guard: the watchdog then exits without thawing.
    _watchdog: mpsc::Sender<()>,
}

impl Frozen {
    /// Freeze every leaf in `dirs` that holds a process; `None` (and
    /// nothing left frozen) where a leaf cannot be frozen (no
    /// `cgroup.freeze` before Linux 5.2).
    pub(super) fn new(dirs: Vec<PathBuf>) -> Option<Self> {
        let dirs: Vec<PathBuf> = dirs.into_iter().filter(|d| populated(d)).collect();
        for (i, dir) in dirs.iter().enumerate() {
            if std::fs::write(dir.join("cgroup.freeze"), "1").is_err() {
                thaw(&dirs[..i]);
                return None;
            }
        }
        let (tx, rx) = mpsc::channel::<()>();
        let watched = dirs.clone();
        std::thread::Builder::new()
            .name("bosun-thaw".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(HARD_LIMIT) {
                    thaw(&watched);
                }
            })
            .map_err(|_| thaw(&dirs))
            .ok()?;
        Some(Self {
            dirs,
            _watchdog: tx,
        })
    }

    /// Whether every leaf has frozen (`frozen 1` in `cgroup.events`): only
    /// then has each of its processes stopped.
    pub fn settled(&self) -> bool {
        self.dirs.iter().all(|dir| {
            events(dir)
                .map(|events| events.lines().any(|l| l == "frozen 1"))
                // A leaf removed meanwhile holds nothing.
                .unwrap_or(true)
        })
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        thaw(&self.dirs);
    }
}

fn thaw(dirs: &[PathBuf]) {
    for dir in dirs {
        let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
    }
}

fn events(dir: &std::path::Path) -> std::io::Result<String> {
    std::fs::read_to_string(dir.join("cgroup.events"))
}

/// Whether a process is in the leaf: an empty one is not frozen, so that a
/// program started into it meanwhile never stops before its exec.
fn populated(dir: &std::path::Path) -> bool {
    events(dir).is_ok_and(|events| events.lines().any(|l| l == "populated 1"))
}
