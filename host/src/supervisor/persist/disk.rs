//! How the supervisor's state is kept on disk: a snapshot,
//! `supervisor.json`, and a journal of the changes made since,
//! `supervisor.journal`, one JSON line each.
//!
//! A change costs what changed: a line appended and one `fdatasync`,
//! however many processes there are. (Rewriting the whole file for each
//! change made starting N processes cost N writes of N entries.) When the
//! journal outgrows the snapshot (and [`FOLD_AT`]), the writer folds it in:
//! a new snapshot of the next generation, written whole (a temp file,
//! fsynced, renamed over the old one, the dir fsynced, so a power cut
//! leaves the old file or the new one), then a fresh journal naming that
//! generation, written the same way. Each fold costs the size of the state
//! once per at least as many bytes of changes, so a change costs its own
//! size on average.
//!
//! Loading replays the journal over the snapshot. A journal of another
//! generation (bosun stopped between the two renames of a fold) is in the
//! snapshot already and is ignored; a line that does not parse (a crash
//! mid-append) ends the replay. In both cases, and when a write failed, the
//! next write folds, so nothing is ever appended after a bad line. A
//! snapshot that does not parse (a disk fault, a hand edit) is moved aside
//! with a loud log line, for an empty state: the marker sweep still finds
//! what was running.
//!
//! One thread of its own writes, the changes made since its last write
//! at once: a crash-looping tenant must not have its fsyncs run on (and
//! stall) the threads that serve everyone.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The journal is folded into the snapshot once it holds more bytes than
/// this and than the snapshot.
const FOLD_AT: u64 = 64 * 1024;

/// The state, as the snapshot holds it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Data {
    /// `project/name-instance` → should run.
    pub desired: BTreeMap<String, bool>,
    /// `project/name-instance` → its running group.
    pub groups: BTreeMap<String, GroupRecord>,
    /// Which journal continues this snapshot (0: none yet).
    #[serde(default)]
    pub generation: u64,
    /// Set by `Persist::kill_all`: every group recorded later is killed
    /// on the spot instead.
    #[serde(skip)]
    pub closed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct GroupRecord {
    pub pgid: i32,
    pub start_time: u64,
    pub boot_id: String,
}

/// One change of the state: a line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Change {
    Desired {
        key: String,
        running: bool,
    },
    Forget {
        key: String,
    },
    Group {
        key: String,
        record: GroupRecord,
    },
    Ungroup {
        key: String,
    },
    /// Every group record gone (the boot sweep has stopped them).
    NoGroups,
}

impl Data {
    /// Apply `change`; whether it changed anything (`NoGroups` always
    /// does: it is written even when no group was recorded).
    pub(super) fn apply(&mut self, change: &Change) -> bool {
        match change {
            Change::Desired { key, running } => {
                self.desired.insert(key.clone(), *running) != Some(*running)
            }
            Change::Forget { key } => self.desired.remove(key).is_some(),
            Change::Group { key, record } => {
                self.groups.insert(key.clone(), record.clone());
                true
            }
            Change::Ungroup { key } => self.groups.remove(key).is_some(),
            Change::NoGroups => {
                self.groups.clear();
                true
            }
        }
    }
}

/// The journal's first line: the generation of the snapshot it continues.
#[derive(Serialize, Deserialize)]
struct Header {
    generation: u64,
}

/// What the writer thread shares with everyone else.
pub(super) struct Shared {
    snapshot: PathBuf,
    journal: PathBuf,
    state: Mutex<State>,
    /// Rung on a change (for the writer) and on a write (for waiters).
    rung: Condvar,
}

pub(super) struct State {
    pub data: Data,
    /// Applied since the last write, in order.
    pending: Vec<Change>,
    /// Changes made, and the count written at the last write.
    version: u64,
    written: u64,
    /// Set when the owner goes: write what is left, then end.
    pub closing: bool,
    /// Set when the writer thread has ended, however it ended.
    writer_gone: bool,
}

impl Shared {
    /// Load `state_dir`'s snapshot and replay its journal; the state, and
    /// the writer to run on a thread of its own.
    pub(super) fn load(state_dir: &Path) -> anyhow::Result<(Self, Writer)> {
        let snapshot = state_dir.join("supervisor.json");
        let journal = state_dir.join("supervisor.journal");
        let (mut data, mut fold, snapshot_bytes) = match std::fs::read(&snapshot) {
            Ok(bytes) => match serde_json::from_slice::<Data>(&bytes) {
                Ok(data) => (data, false, bytes.len() as u64),
                Err(e) => (set_aside(&snapshot, &e)?, true, 0),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Data::default(), true, 0),
            Err(e) => return Err(e).with_context(|| format!("reading {}", snapshot.display())),
        };
        let lines = match std::fs::read(&journal) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", journal.display())),
        };
        let journal_bytes = lines.len() as u64;
        if !fold {
            fold = !replay(&mut data, &lines, &journal);
        }
        let shared = Shared {
            snapshot,
            journal,
            state: Mutex::new(State {
                data,
                pending: Vec::new(),
                version: 0,
                written: 0,
                closing: false,
                writer_gone: false,
            }),
            rung: Condvar::new(),
        };
        let writer = Writer {
            journal: None,
            fold,
            appended: !fold && lines.iter().filter(|b| **b == b'\n').count() > 1,
            journal_bytes,
            snapshot_bytes,
        };
        Ok((shared, writer))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Apply `change` (under `state`, locked); if it changed anything, have
    /// it written, and return the version to wait for.
    pub(super) fn change(&self, state: &mut State, change: Change) -> Option<u64> {
        if !state.data.apply(&change) {
            return None;
        }
        state.pending.push(change);
        state.version += 1;
        self.rung.notify_all();
        Some(state.version)
    }

    /// Have the writer end once what is left is written.
    pub(super) fn close(&self) {
        self.lock().closing = true;
        self.rung.notify_all();
    }

    /// Wait until `version` (or a later one) is written, or the writer is
    /// gone.
    pub(super) fn wait_written(&self, version: u64) {
        let mut state = self.lock();
        while state.written < version && !state.writer_gone {
            state = self
                .rung
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Replay the journal `lines` over `data`; whether it can be appended to
/// (of the snapshot's generation, every line whole and read).
fn replay(data: &mut Data, lines: &[u8], path: &Path) -> bool {
    let mut lines = lines.split_inclusive(|b| *b == b'\n');
    let header = lines
        .next()
        .and_then(|l| serde_json::from_slice::<Header>(l).ok());
    if header.is_none_or(|h| h.generation != data.generation) {
        return false;
    }
    for line in lines {
        let change = line
            .strip_suffix(b"\n")
            .and_then(|l| serde_json::from_slice::<Change>(l).ok());
        let Some(change) = change else {
            tracing::warn!(
                file = %path.display(),
                "the supervisor journal ends in a line cut short (bosun stopped while \
                 writing it); the changes before it are kept"
            );
            return false;
        };
        data.apply(&change);
    }
    true
}

/// The writer thread's own: the open journal and the sizes that decide a
/// fold.
pub(super) struct Writer {
    journal: Option<File>,
    fold: bool,
    /// Changes were appended since the last fold.
    appended: bool,
    journal_bytes: u64,
    snapshot_bytes: u64,
}

/// What one write does, decided under the lock and done outside it.
enum Work {
    Fold { snapshot: Vec<u8>, generation: u64 },
    Append(Vec<u8>),
}

impl Writer {
    /// The writer thread: whenever something changed since the last write,
    /// append it (or fold); end once closing with nothing left to write. A
    /// failed write is logged and counted as written, so no waiter hangs on
    /// a full disk; the next write folds, which writes everything.
    pub(super) fn run(mut self, shared: &Shared) {
        let _gone = WriterGone(shared);
        let mut state = shared.lock();
        loop {
            if state.written < state.version {
                let version = state.version;
                let changes = std::mem::take(&mut state.pending);
                let work = if self.fold || self.journal_bytes > FOLD_AT.max(self.snapshot_bytes) {
                    fold(&mut state.data)
                } else {
                    Work::Append(journal_lines(&changes))
                };
                drop(state);
                self.save(shared, work);
                state = shared.lock();
                state.written = version;
                shared.rung.notify_all();
            } else if state.closing {
                // Folded on the way out: a clean stop leaves the whole state
                // in the snapshot (for a bosun before the journal, too).
                if self.appended || self.fold {
                    let work = fold(&mut state.data);
                    drop(state);
                    self.save(shared, work);
                }
                return;
            } else {
                state = shared
                    .rung
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// Do `work`; a failure is logged, and the next write folds.
    fn save(&mut self, shared: &Shared, work: Work) {
        if let Err(e) = self.write(shared, work) {
            tracing::error!(path = %shared.snapshot.display(), "saving supervisor state: {e:#}");
            self.journal = None;
            self.fold = true;
        }
    }

    fn write(&mut self, shared: &Shared, work: Work) -> anyhow::Result<()> {
        match work {
            Work::Fold {
                snapshot,
                generation,
            } => {
                write_atomic(&shared.snapshot, &snapshot)?;
                let mut header = serde_json::to_vec(&Header { generation })?;
                header.push(b'\n');
                write_atomic(&shared.journal, &header)?;
                self.journal = Some(
                    File::options()
                        .append(true)
                        .open(&shared.journal)
                        .context("opening the supervisor journal")?,
                );
                self.snapshot_bytes = snapshot.len() as u64;
                self.journal_bytes = header.len() as u64;
                self.fold = false;
                self.appended = false;
            }
            Work::Append(lines) => {
                let journal = match &mut self.journal {
                    Some(file) => file,
                    None => self.journal.insert(
                        File::options()
                            .append(true)
                            .open(&shared.journal)
                            .context("opening the supervisor journal")?,
                    ),
                };
                journal.write_all(&lines)?;
                journal.sync_data()?;
                self.journal_bytes += lines.len() as u64;
                self.appended = true;
            }
        }
        Ok(())
    }
}

/// A fold of `data`: the snapshot of its next generation.
fn fold(data: &mut Data) -> Work {
    data.generation += 1;
    Work::Fold {
        snapshot: serde_json::to_vec_pretty(data).expect("the state serializes"),
        generation: data.generation,
    }
}

fn journal_lines(changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::new();
    for change in changes {
        serde_json::to_writer(&mut out, change).expect("a change serializes");
        out.push(b'\n');
    }
    out
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
                path = %self.0.snapshot.display(),
                "the supervisor state writer stopped with changes unwritten; the marker sweep \
                 finds what the file misses"
            );
        }
        self.0.rung.notify_all();
    }
}

/// Move an unreadable snapshot aside, loudly, for an empty state.
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
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;
    use std::sync::Arc;

    use super::*;

    /// A loaded state dir with its writer running; dropping it writes what
    /// is left and ends the writer.
    struct Running {
        shared: Arc<Shared>,
        writer: Option<std::thread::JoinHandle<()>>,
    }

    impl Running {
        fn load(dir: &Path) -> Self {
            let (shared, writer) = Shared::load(dir).expect("load");
            let shared = Arc::new(shared);
            let thread = {
                let shared = shared.clone();
                std::thread::spawn(move || writer.run(&shared))
            };
            Self {
                shared,
                writer: Some(thread),
            }
        }

        /// Make `change` and wait until it is on disk.
        fn write(&self, change: Change) {
            let version = self.shared.change(&mut self.shared.lock(), change);
            if let Some(version) = version {
                self.shared.wait_written(version);
            }
        }

        fn desired(&self) -> BTreeMap<String, bool> {
            self.shared.lock().data.desired.clone()
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.shared.close();
            if let Some(writer) = self.writer.take() {
                writer.join().expect("the writer ends");
            }
        }
    }

    fn group(key: &str, pgid: i32) -> Change {
        Change::Group {
            key: key.into(),
            record: GroupRecord {
                pgid,
                start_time: 1,
                boot_id: "boot".into(),
            },
        }
    }

    fn desired(key: &str, running: bool) -> Change {
        Change::Desired {
            key: key.into(),
            running,
        }
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn a_change_at_a_thousand_processes_appends_one_line_and_leaves_the_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = Running::load(dir.path());
        for i in 0..1000 {
            running.write(group(&format!("p{}/web-{i}", i % 100), 1000 + i));
        }
        let snapshot = dir.path().join("supervisor.json");
        let journal = dir.path().join("supervisor.journal");
        // Folded at least once (the first write, and whenever the journal
        // outgrew the snapshot), so the snapshot holds most of the records.
        let before = std::fs::metadata(&snapshot).expect("a snapshot");
        let journal_before = size(&journal);
        running.write(desired("p7/web-7", false));
        let after = std::fs::metadata(&snapshot).expect("a snapshot");
        assert_eq!(
            (before.ino(), before.mtime_nsec(), before.len()),
            (after.ino(), after.mtime_nsec(), after.len()),
            "one change rewrote the snapshot of 1,000 records"
        );
        let line = size(&journal) - journal_before;
        assert!(
            (10..100).contains(&line),
            "one change appended {line} bytes; the snapshot is {} bytes",
            after.len()
        );
        drop(running);
        let again = Running::load(dir.path());
        assert_eq!(again.shared.lock().data.groups.len(), 1000);
        assert_eq!(again.desired().get("p7/web-7"), Some(&false));
    }

    #[test]
    fn the_journal_folds_into_the_snapshot_once_it_outgrows_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = Running::load(dir.path());
        let journal = dir.path().join("supervisor.journal");
        let mut largest = 0;
        for i in 0..5000 {
            running.write(desired("app/web-0", i % 2 == 0));
            largest = largest.max(size(&journal));
        }
        assert!(
            largest <= FOLD_AT + 200,
            "the journal grew to {largest} bytes for a state of one entry"
        );
        let generation = running.shared.lock().data.generation;
        assert!(generation > 1, "never folded: generation {generation}");
        drop(running);
        assert_eq!(
            Running::load(dir.path()).desired().get("app/web-0"),
            Some(&false)
        );
    }

    #[test]
    fn a_line_cut_short_ends_the_replay_and_the_next_write_folds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = Running::load(dir.path());
        running.write(desired("app/a-0", true));
        running.write(desired("app/b-0", true));
        drop(running);
        let journal = dir.path().join("supervisor.journal");
        let mut file = File::options().append(true).open(&journal).expect("open");
        file.write_all(br#"{"desired":{"key":"app/c-0","runn"#)
            .expect("a torn line");
        drop(file);
        let running = Running::load(dir.path());
        let seen = running.desired();
        assert_eq!(seen.get("app/a-0"), Some(&true));
        assert_eq!(seen.get("app/b-0"), Some(&true));
        assert_eq!(seen.get("app/c-0"), None);
        // Nothing is appended after the torn line: the next write folds.
        running.write(desired("app/d-0", false));
        let text = std::fs::read_to_string(&journal).expect("journal");
        assert!(!text.contains("runn"), "appended after a torn line: {text}");
        drop(running);
        let seen = Running::load(dir.path()).desired();
        assert_eq!(
            (seen.get("app/a-0"), seen.get("app/d-0")),
            (Some(&true), Some(&false))
        );
    }

    #[test]
    fn a_clean_stop_leaves_the_whole_state_in_the_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = Running::load(dir.path());
        running.write(desired("app/web-0", true));
        running.write(desired("app/web-0", false));
        running.write(group("app/web-0", 42));
        let journal = dir.path().join("supervisor.journal");
        assert!(
            std::fs::read_to_string(&journal)
                .expect("journal")
                .lines()
                .count()
                > 1,
            "the changes went to the journal"
        );
        drop(running);
        let saved: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("supervisor.json")).expect("snapshot"),
        )
        .expect("JSON");
        assert_eq!(saved["desired"]["app/web-0"], false);
        assert_eq!(saved["groups"]["app/web-0"]["pgid"], 42);
        let text = std::fs::read_to_string(&journal).expect("journal");
        assert_eq!(text.lines().count(), 1, "only the header is left: {text}");
    }

    #[test]
    fn a_journal_of_another_generation_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = Running::load(dir.path());
        running.write(desired("app/web-0", true));
        drop(running);
        // As left by a bosun stopped between a fold's two renames: the new
        // snapshot, and the journal it already holds.
        let journal = dir.path().join("supervisor.journal");
        let stale = format!(
            "{{\"generation\":999}}\n{}\n",
            serde_json::to_string(&desired("app/web-0", false)).expect("JSON")
        );
        std::fs::write(&journal, stale).expect("a stale journal");
        let running = Running::load(dir.path());
        assert_eq!(running.desired().get("app/web-0"), Some(&true));
    }

    #[test]
    fn a_snapshot_without_a_journal_is_read_as_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("supervisor.json"),
            r#"{"desired": {"app/web-0": false}, "groups": {}}"#,
        )
        .expect("a snapshot of an earlier bosun");
        let running = Running::load(dir.path());
        assert_eq!(running.desired().get("app/web-0"), Some(&false));
        running.write(desired("app/worker-0", true));
        drop(running);
        let seen = Running::load(dir.path()).desired();
        assert_eq!(
            (seen.get("app/web-0"), seen.get("app/worker-0")),
            (Some(&false), Some(&true))
        );
    }
}
