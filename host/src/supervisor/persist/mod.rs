//! What must survive bosun itself: which processes should run, and which
//! process groups are out there.
//!
//! - **Desired state.** A stop or start through bosun is recorded, so a
//!   restart of bosun brings back exactly the set that was running, not the
//!   config's `autostart` view of it.
//! - **Group records.** Each running group is recorded as (pgid, start time,
//!   boot id). If bosun is killed, its children live on; the next boot stops
//!   the recorded groups whose leader is still the recorded process (same
//!   start time): a pid the kernel has since reused has another.
//! - **Marker.** Every process carries `BOSUN_SUPERVISOR=<canonical state
//!   dir>` in its environment. A record is written just after a spawn, so a
//!   bosun killed in that instant leaves a group with no record; and a group
//!   whose leader has exited cannot be told by its id alone from a new
//!   group that reused it. So beyond the verified groups, the boot sweep
//!   stops only the live processes that carry this bosun's marker, one by
//!   one, never a whole group it cannot vouch for. Another bosun (another
//!   state dir) is never touched.
//!
//! How it is kept on disk, a snapshot and a journal of changes, so that a
//! change costs what changed: see `disk`. A change of what should run (a
//! stop or start through bosun) waits until it is on disk; a group record
//! need not, as the marker finds what a lost record missed.

mod disk;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;

use super::group::{signal_group, stop_group};
use super::procfs;
use super::spec::InstanceSpec;
use disk::{Change, GroupRecord, Shared, State};

/// The environment variable that marks a process as supervised by the bosun
/// of one state dir.
pub(crate) const MARKER_VAR: &str = "BOSUN_SUPERVISOR";

/// The supervisor's persisted state.
pub(crate) struct Persist {
    marker: String,
    boot_id: String,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

fn key(spec: &InstanceSpec) -> String {
    format!("{}/{}", spec.project, spec.label)
}

impl Persist {
    /// Load the state of `state_dir` (none yet is an empty state), and
    /// start its writer.
    pub(crate) fn load(state_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let canonical = state_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", state_dir.display()))?;
        let marker = canonical.to_string_lossy().into_owned();
        let (shared, writer) = Shared::load(state_dir)?;
        let shared = Arc::new(shared);
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("bosun-state".into())
                .spawn(move || writer.run(&shared))
                .context("starting the state writer")?
        };
        Ok(Self {
            marker,
            boot_id: procfs::boot_id(),
            shared,
            writer: Some(writer),
        })
    }

    /// This bosun's marker value, for `MARKER_VAR` in every spawned process.
    pub(crate) fn marker(&self) -> &str {
        &self.marker
    }

    /// Whether the instance was last meant to run; `None` if never recorded.
    pub(crate) fn desired(&self, spec: &InstanceSpec) -> Option<bool> {
        self.lock().data.desired.get(&key(spec)).copied()
    }

    /// Record what should run, and wait until it is on disk: a bosun killed
    /// right after a stop must not start the process again at its next boot.
    pub(crate) fn set_desired(&self, spec: &InstanceSpec, running: bool) {
        let change = Change::Desired {
            key: key(spec),
            running,
        };
        if let Some(version) = self.change(change) {
            self.shared.wait_written(version);
        }
    }

    /// Forget an instance a reload removed: a later one of the same name
    /// starts per its own `autostart`, not as this one was left.
    pub(crate) fn forget(&self, spec: &InstanceSpec) {
        if let Some(version) = self.change(Change::Forget { key: key(spec) }) {
            self.shared.wait_written(version);
        }
    }

    pub(crate) fn record_group(&self, spec: &InstanceSpec, pgid: i32) {
        let stat = procfs::stat(pgid);
        let mut state = self.lock();
        if state.data.closed {
            // The supervisor was dropped between this spawn and now.
            let _ = signal_group(pgid, Signal::SIGKILL);
            return;
        }
        let Some(stat) = stat else {
            return;
        };
        let record = GroupRecord {
            pgid,
            start_time: stat.start_time,
            boot_id: self.boot_id.clone(),
        };
        let change = Change::Group {
            key: key(spec),
            record,
        };
        self.shared.change(&mut state, change);
    }

    pub(crate) fn clear_group(&self, spec: &InstanceSpec) {
        self.change(Change::Ungroup { key: key(spec) });
    }

    /// The safety net of a dropped supervisor: SIGKILL every recorded group
    /// that is still the one recorded, and from now on any group recorded.
    /// A worker between its spawn and its record when this runs therefore
    /// kills its own group, which it could not if this read the statuses.
    /// The records stay on disk, for the next boot's sweep.
    pub(crate) fn kill_all(&self) {
        let mut state = self.lock();
        state.data.closed = true;
        for record in state.data.groups.values() {
            if is_leftover(record) {
                let _ = signal_group(record.pgid, Signal::SIGKILL);
            }
        }
    }

    /// Stop what a previous bosun of this state dir left running: the
    /// recorded groups whose leader is still the recorded process, and
    /// every other live process carrying this bosun's marker. Then forget
    /// the records. Returns how many groups were stopped.
    pub(crate) async fn sweep_leftovers(&self, grace: Duration) -> usize {
        let records: Vec<(String, GroupRecord)> = std::mem::take(&mut self.lock().data.groups)
            .into_iter()
            .collect();
        let mut groups = BTreeSet::new();
        for (name, record) in records {
            if record.boot_id == self.boot_id && leader_is_recorded(&record) {
                tracing::warn!(process = %name, pgid = record.pgid, "stopping a process group left by a previous bosun");
                groups.insert(record.pgid);
            }
        }
        let entry = format!("{MARKER_VAR}={}", self.marker);
        let own_group = nix::unistd::getpgrp().as_raw();
        let mut marked: BTreeMap<i32, Vec<procfs::ProcStat>> = BTreeMap::new();
        for p in procfs::all() {
            if p.is_live()
                && p.pgrp != own_group
                && !groups.contains(&p.pgrp)
                && procfs::environ_has(p.pid, &entry)
            {
                marked.entry(p.pgrp).or_default().push(p);
            }
        }
        for (pgid, members) in &marked {
            tracing::warn!(
                pgid,
                processes = members.len(),
                "stopping unrecorded processes left by a previous bosun"
            );
        }
        // All at once: N groups that ignore SIGTERM cost one grace, not N.
        let marked_groups = marked.len();
        let groups_stopped = futures_util::future::join_all(
            groups
                .iter()
                .map(|&pgid| stop_group(pgid, None, Signal::SIGTERM, grace)),
        );
        let marked_stopped = stop_processes(marked.into_values().flatten().collect(), grace);
        tokio::join!(groups_stopped, marked_stopped);
        self.change(Change::NoGroups);
        groups.len() + marked_groups
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Apply `change`; if it changed anything, have it written, and return
    /// the version to wait for.
    fn change(&self, change: Change) -> Option<u64> {
        self.shared.change(&mut self.lock(), change)
    }
}

/// The last changes are written before the supervisor's state goes.
impl Drop for Persist {
    fn drop(&mut self) {
        self.shared.close();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Whether the recorded group still has live members that are the recorded
/// ones: the leader with the same start time, or (leader gone) members that
/// started no earlier than it. A pid reused by a new group leader has a
/// different start time and is left alone.
fn is_leftover(record: &GroupRecord) -> bool {
    match procfs::stat(record.pgid) {
        Some(leader) if leader.is_live() => {
            leader.start_time == record.start_time && leader.pgrp == record.pgid
        }
        _ => procfs::live_members(record.pgid)
            .iter()
            .any(|p| p.start_time >= record.start_time),
    }
}

/// Whether a recorded group's leader is alive and is the recorded process.
fn leader_is_recorded(record: &GroupRecord) -> bool {
    procfs::stat(record.pgid).is_some_and(|leader| {
        leader.is_live() && leader.start_time == record.start_time && leader.pgrp == record.pgid
    })
}

/// Stop `processes` one by one: SIGTERM, up to `grace` for them to exit,
/// then SIGKILL. Each is signalled only while it is still the process that
/// was found (same start time), so a pid reused meanwhile is left alone.
async fn stop_processes(processes: Vec<procfs::ProcStat>, grace: Duration) {
    let still = |p: &procfs::ProcStat| {
        procfs::stat(p.pid).is_some_and(|now| now.is_live() && now.start_time == p.start_time)
    };
    let signal = |signal: Signal| {
        for p in processes.iter().filter(|p| still(p)) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), signal);
        }
    };
    signal(Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while processes.iter().any(still) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(Signal::SIGKILL);
}
