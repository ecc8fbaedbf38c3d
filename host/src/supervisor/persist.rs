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
//! The file is small, so it is rewritten whole: a temp file, fsynced,
//! renamed over the old one, and the dir fsynced, so a power cut leaves the
//! old file or the new one, never an empty one. A writer thread of its own
//! does that, for the latest state, however many changes came meanwhile: a
//! restart changes it twice, and a crash-looping tenant must not have its
//! fsyncs run on (and stall) the threads that serve everyone. A change of
//! what should run (a stop or start through bosun) waits for its write; a
//! group record need not, as the marker finds what a lost record missed. A file that does not parse anyway (a disk fault, a
//! hand edit) is moved aside with a loud log line and bosun starts with an
//! empty state: the marker sweep still finds what was running.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::group::{signal_group, stop_group};
use super::procfs;
use super::spec::InstanceSpec;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Data {
    /// `project/name-instance` → should run.
    desired: BTreeMap<String, bool>,
    /// `project/name-instance` → its running group.
    groups: BTreeMap<String, GroupRecord>,
    /// Set by [`Persist::kill_all`]: every group recorded later is killed
    /// on the spot instead.
    #[serde(skip)]
    closed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupRecord {
    pgid: i32,
    start_time: u64,
    boot_id: String,
}

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

/// What the writer thread shares with everyone else.
struct Shared {
    path: PathBuf,
    state: Mutex<State>,
    /// Rung on a change (for the writer) and on a write (for waiters).
    rung: Condvar,
}

struct State {
    data: Data,
    /// Changes made, and the count written at the last write.
    version: u64,
    written: u64,
    /// Set when the owner goes: write what is left, then end.
    closing: bool,
    /// Set when the writer thread has ended, however it ended.
    writer_gone: bool,
}

fn key(spec: &InstanceSpec) -> String {
    format!("{}/{}", spec.project, spec.label)
}

impl Persist {
    /// Load `state_dir/supervisor.json`; a missing file is an empty state.
    pub(crate) fn load(state_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let canonical = state_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", state_dir.display()))?;
        let marker = canonical.to_string_lossy().into_owned();
        let path = state_dir.join("supervisor.json");
        let data = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(data) => data,
                Err(e) => set_aside(&path, &e)?,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Data::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let shared = Arc::new(Shared {
            path,
            state: Mutex::new(State {
                data,
                version: 0,
                written: 0,
                closing: false,
                writer_gone: false,
            }),
            rung: Condvar::new(),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("bosun-state".into())
                .spawn(move || write_loop(&shared))
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
        if let Some(version) =
            self.update(|d| d.desired.insert(key(spec), running) != Some(running))
        {
            self.shared.wait_written(version);
        }
    }

    /// Forget an instance a reload removed: a later one of the same name
    /// starts per its own `autostart`, not as this one was left.
    pub(crate) fn forget(&self, spec: &InstanceSpec) {
        if let Some(version) = self.update(|d| d.desired.remove(&key(spec)).is_some()) {
            self.shared.wait_written(version);
        }
    }

    pub(crate) fn record_group(&self, spec: &InstanceSpec, pgid: i32) {
        let stat = procfs::stat(pgid);
        self.update(|d| {
            if d.closed {
                // The supervisor was dropped between this spawn and now.
                let _ = signal_group(pgid, Signal::SIGKILL);
                return false;
            }
            let Some(stat) = stat else {
                return false;
            };
            let record = GroupRecord {
                pgid,
                start_time: stat.start_time,
                boot_id: self.boot_id.clone(),
            };
            d.groups.insert(key(spec), record);
            true
        });
    }

    pub(crate) fn clear_group(&self, spec: &InstanceSpec) {
        self.update(|d| d.groups.remove(&key(spec)).is_some());
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
        self.update(|_| true);
        groups.len() + marked_groups
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Apply `change`; if it says something changed, have it written, and
    /// return the version to wait for.
    fn update(&self, change: impl FnOnce(&mut Data) -> bool) -> Option<u64> {
        let mut state = self.lock();
        if !change(&mut state.data) {
            return None;
        }
        state.version += 1;
        self.shared.rung.notify_all();
        Some(state.version)
    }
}

/// The last changes are written before the supervisor's state goes.
impl Drop for Persist {
    fn drop(&mut self) {
        self.lock().closing = true;
        self.shared.rung.notify_all();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait until `version` (or a later one) is written, or the writer is
    /// gone.
    fn wait_written(&self, version: u64) {
        let mut state = self.lock();
        while state.written < version && !state.writer_gone {
            state = self
                .rung
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Marks the writer gone when its thread ends, a panic included, so no
/// stop or start waits for a write that will never come.
struct WriterGone<'a>(&'a Shared);

impl Drop for WriterGone<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.writer_gone = true;
        if state.written < state.version {
            tracing::error!(
                path = %self.0.path.display(),
                "the supervisor state writer stopped with changes unwritten; the marker sweep \
                 finds what the file misses"
            );
        }
        self.0.rung.notify_all();
    }
}

/// The writer thread: whenever the state has changed since the last write,
/// write it as it is now; end once closing with nothing left to write. A
/// failed write is logged and counted as written (the next change tries
/// again), so no waiter hangs on a full disk.
fn write_loop(shared: &Shared) {
    let _gone = WriterGone(shared);
    let mut state = shared.lock();
    loop {
        if state.written < state.version {
            let version = state.version;
            let bytes = serde_json::to_vec_pretty(&state.data);
            drop(state);
            let written = bytes
                .map_err(anyhow::Error::from)
                .and_then(|bytes| write_atomic(&shared.path, &bytes));
            if let Err(e) = written {
                tracing::error!(path = %shared.path.display(), "saving supervisor state: {e:#}");
            }
            state = shared.lock();
            state.written = version;
            shared.rung.notify_all();
        } else if state.closing {
            return;
        } else {
            state = shared
                .rung
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
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

/// Move an unreadable state file aside, loudly, for an empty state.
fn set_aside(path: &Path, e: &serde_json::Error) -> anyhow::Result<Data> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let aside = path.with_extension(format!("json.bad-{now}"));
    std::fs::rename(path, &aside)
        .with_context(|| format!("moving the unreadable {} aside", path.display()))?;
    tracing::error!(
        file = %path.display(),
        moved_to = %aside.display(),
        "the supervisor state does not parse ({e}); starting without it: processes start as \
         the config says (autostart), and leftovers are found by their marker"
    );
    Ok(Data::default())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("state file has a parent dir")?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    // Durable before it replaces the old file, and the rename durable too:
    // a power cut must not leave an empty file behind.
    tmp.as_file().sync_all()?;
    tmp.persist(path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
