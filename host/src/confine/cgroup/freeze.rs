//! Freezing leaves (cgroup v2's `cgroup.freeze`): every process in them
//! stops at once, whatever it does with signals, and no pid is named (so
//! none can be one reused meanwhile). A replacement's readiness probe uses
//! it to keep the other holders of a shared socket from answering.

use std::path::PathBuf;

/// Leaves frozen until this is dropped.
pub struct Frozen {
    dirs: Vec<PathBuf>,
}

impl Frozen {
    /// Freeze every leaf in `dirs`.
    pub(super) fn new(dirs: Vec<PathBuf>) -> Self {
        for dir in &dirs {
            let _ = std::fs::write(dir.join("cgroup.freeze"), "1");
        }
        Self { dirs }
    }

    /// Whether every leaf has frozen (`frozen 1` in `cgroup.events`): only
    /// then has each of its processes stopped.
    pub fn settled(&self) -> bool {
        self.dirs.iter().all(|dir| {
            std::fs::read_to_string(dir.join("cgroup.events"))
                .map(|events| events.lines().any(|l| l == "frozen 1"))
                // A leaf removed meanwhile holds nothing.
                .unwrap_or(true)
        })
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
        }
    }
}
