//! The job history: one SQLite file in the state dir.
//!
//! - **Embedded.** An operator has no database server to run or back up
//!   apart from the state dir; `sqlite3 jobs.db .backup` works on a live file.
//! - **WAL, `synchronous = NORMAL`.** A write is durable once it returns as
//!   far as a crash of bosun goes (SIGKILL, OOM): that is what "a job is
//!   acknowledged only once stored" promises. A power cut may lose the last
//!   few commits; `synchronous = FULL` would cost an fsync per job.
//! - **Group commit.** Job writes go to one writer thread, which commits
//!   whatever is waiting as one transaction and only then answers each
//!   caller. Under load a single commit covers dozens of jobs; alone, a job
//!   waits for nobody. (A connection behind a mutex, one transaction per
//!   write, managed 1.5k jobs/s here; this does several times that.)
//! - **Retention is a write like any other.** Its deletes go through the
//!   writer too: run from a second connection they held SQLite's write lock,
//!   and the writer slept in the busy handler (up to tens of milliseconds).
//! - **Retention is per project.** Counted globally, one tenant firing
//!   cheap jobs deleted every other tenant's history. Each project keeps its
//!   `keep` newest finished jobs within `max_bytes` (params, result, error
//!   and log, kept in a `size` column as rows are written), so a tenant's
//!   history only ever pushes out its own, and the file is bounded by
//!   projects × `max_bytes`. A pass over a project walks only its newest
//!   rows up to the bound, and the rows it deletes.
//! - Reads and boot recovery use a second connection from blocking threads;
//!   WAL lets reads run beside the writer.

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use tokio::sync::oneshot;

use super::model::{Job, JobError, JobErrorKind, JobState, now_ms};
use crate::config::JobsConfig;

/// Why the job store failed.
#[derive(Debug, thiserror::Error)]
#[error("job store: {0:#}")]
pub struct StoreError(#[from] anyhow::Error);

/// What `GET /v1/jobs` may filter on.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only these projects (the caller's scope); `None` means any.
    pub projects: Option<Vec<String>>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only jobs created before the job with this id (the next page).
    pub before: Option<String>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// What recovery at boot found.
pub struct Recovered {
    /// Jobs that were running when bosun died, now `interrupted`.
    pub interrupted: usize,
    /// Jobs still queued, oldest first: they run now.
    pub queued: Vec<Job>,
}

/// The job store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: mpsc::Sender<Write>,
    reader: Arc<Mutex<Connection>>,
}

/// How often the WAL is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Writes committed together at most.
const MAX_BATCH: usize = 512;

/// A write for the writer thread.
enum Op {
    Insert(Job),
    Update(Job, Option<String>),
    SaveLog(String, String),
    /// Retention, for one project or (`None`) every project.
    Prune(Retention, Option<String>),
}

/// What the history keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Finished jobs kept per project, newest first.
    pub keep: u64,
    /// Bytes of finished jobs kept per project (the newest job is kept
    /// whatever its size).
    pub max_bytes: u64,
    /// Finished jobs older than this go.
    pub keep_for: Duration,
}

impl From<&JobsConfig> for Retention {
    fn from(cfg: &JobsConfig) -> Self {
        Self {
            keep: cfg.keep,
            max_bytes: cfg.max_bytes.as_u64(),
            keep_for: cfg.keep_for,
        }
    }
}

struct Write {
    op: Op,
    /// Answered once committed, with the rows the write changed.
    done: oneshot::Sender<Result<usize, String>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    project       TEXT NOT NULL,
    action        TEXT NOT NULL,
    params        TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    state         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    result        TEXT,
    error_kind    TEXT,
    error_message TEXT,
    log           TEXT NOT NULL DEFAULT '',
    size          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_project ON jobs(project, seq);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, seq);
";

const COLUMNS: &str = "id, project, action, params, requested_by, state, created_at, \
                       started_at, finished_at, result, error_kind, error_message";

impl Store {
    /// Open (or create) `jobs.db` in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        // Every tenant's job logs are in it.
        let (path, writer) = open_private(state_dir, "jobs.db")?;
        writer
            .execute_batch(SCHEMA)
            .context("creating the schema")?;
        add_sizes(&writer).context("adding job sizes to an older jobs.db")?;
        // Checkpoints (the WAL's fsync) happen beside the writer, not in it:
        // inline, one job in a hundred waited several milliseconds for one.
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .context("turning off inline checkpoints")?;
        let reader = Arc::new(Mutex::new(connect(&path)?));
        let checkpointer = Arc::downgrade(&reader);
        std::thread::Builder::new()
            .name("bosun-job-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpointer))
            .context("starting the job store's checkpointer")?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("bosun-job-store".into())
            .spawn(move || write_loop(writer, rx))
            .context("starting the job store's writer")?;
        Ok(Self { writer: tx, reader })
    }

    /// Hand `op` to the writer now; the future resolves once it is
    /// committed. Sending before the first poll lets a caller put several
    /// writes into one commit.
    fn write(&self, op: Op) -> impl Future<Output = Result<usize, StoreError>> + Send + 'static {
        let (done, committed) = oneshot::channel();
        let sent = self.writer.send(Write { op, done }).is_ok();
        async move {
            let gone = || StoreError(anyhow::anyhow!("the writer thread is gone"));
            if !sent {
                return Err(gone());
            }
            committed
                .await
                .map_err(|_| gone())?
                .map_err(|e| StoreError(anyhow::anyhow!(e)))
        }
    }

    /// [`Self::write`] for a caller that does not need the rows changed.
    fn write_only(&self, op: Op) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let written = self.write(op);
        async move { written.await.map(drop) }
    }

    /// Run `f` on the reading connection in a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.reader.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .context("the store's thread panicked")?;
        Ok(joined?)
    }

    /// Store a new job.
    pub fn insert(&self, job: &Job) -> impl Future<Output = Result<(), StoreError>> + 'static {
        self.write_only(Op::Insert(job.clone()))
    }

    /// Write a job's state, times, outcome and (when given) its log.
    pub fn update(
        &self,
        job: &Job,
        log: Option<String>,
    ) -> impl Future<Output = Result<(), StoreError>> + 'static {
        self.write_only(Op::Update(job.clone(), log))
    }

    /// Save a running job's log so far.
    pub fn save_log(
        &self,
        id: &str,
        log: String,
    ) -> impl Future<Output = Result<(), StoreError>> + 'static {
        self.write_only(Op::SaveLog(id.to_string(), log))
    }

    /// The job with `id`.
    pub async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let id = id.to_string();
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                read_job,
            )
            .optional()
            .context("reading a job")
        })
        .await
    }

    /// The stored log of the job with `id`.
    pub async fn log(&self, id: &str) -> Result<Option<String>, StoreError> {
        let id = id.to_string();
        self.with(move |c| {
            c.query_row("SELECT log FROM jobs WHERE id = ?1", [id], |r| r.get(0))
                .optional()
                .context("reading a job log")
        })
        .await
    }

    /// Jobs matching `filter`, newest first.
    pub async fn list(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        self.with(move |c| {
            let mut sql = format!("SELECT {COLUMNS} FROM jobs WHERE 1 = 1");
            let mut args: Vec<String> = Vec::new();
            // The same project bound applies to the `before` job, so a job
            // id of a project out of the caller's reach finds nothing, as an
            // unknown id does: its existence and age are not told.
            let mut in_projects = String::new();
            if let Some(projects) = &filter.projects {
                let marks: Vec<String> = projects
                    .iter()
                    .map(|p| {
                        args.push(p.clone());
                        format!("?{}", args.len())
                    })
                    .collect();
                in_projects = format!(" AND project IN ({})", marks.join(", "));
                sql.push_str(&in_projects);
            }
            if let Some(action) = &filter.action {
                args.push(action.clone());
                sql.push_str(&format!(" AND action = ?{}", args.len()));
            }
            if let Some(state) = filter.state {
                args.push(state.as_str().to_string());
                sql.push_str(&format!(" AND state = ?{}", args.len()));
            }
            if let Some(before) = &filter.before {
                args.push(before.clone());
                sql.push_str(&format!(
                    " AND seq < (SELECT seq FROM jobs WHERE id = ?{}{in_projects})",
                    args.len()
                ));
            }
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", filter.limit));
            let mut stmt = c.prepare(&sql).context("preparing the job list")?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), read_job)
                .context("listing jobs")?;
            rows.collect::<Result<Vec<_>, _>>()
                .context("reading the job list")
        })
        .await
    }

    /// At boot: mark jobs that were running `interrupted`, and return the
    /// queued ones, oldest first.
    pub async fn recover(&self) -> Result<Recovered, StoreError> {
        self.with(|c| {
            let interrupted = c
                .execute(
                    "UPDATE jobs SET state = ?2, finished_at = ?1, error_kind = ?3,
                            error_message = 'bosun stopped while the job was running'
                     WHERE state = ?4",
                    params![
                        now_ms() as i64,
                        JobState::Interrupted.as_str(),
                        JobErrorKind::Interrupted.as_str(),
                        JobState::Running.as_str(),
                    ],
                )
                .context("marking interrupted jobs")?;
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE state = ?1 ORDER BY seq"
            ))?;
            let queued = stmt
                .query_map([JobState::Queued.as_str()], read_job)?
                .collect::<Result<Vec<_>, _>>()
                .context("reading queued jobs")?;
            Ok(Recovered {
                interrupted,
                queued,
            })
        })
        .await
    }

    /// Apply `retention` to `project`'s history, or to every project's.
    /// Returns how many jobs were deleted.
    pub async fn prune(
        &self,
        retention: Retention,
        project: Option<&str>,
    ) -> Result<usize, StoreError> {
        self.write(Op::Prune(retention, project.map(str::to_string)))
            .await
    }
}

/// The bytes a row holds, as SQL over its columns.
const SIZE: &str = "length(CAST(params AS BLOB)) + length(CAST(log AS BLOB)) \
                    + coalesce(length(CAST(result AS BLOB)), 0) \
                    + coalesce(length(CAST(error_message AS BLOB)), 0)";

/// A `jobs.db` from before sizes were kept gets the column, filled in.
fn add_sizes(conn: &Connection) -> anyhow::Result<()> {
    let has: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('jobs') WHERE name = 'size'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has {
        conn.execute_batch(&format!(
            "BEGIN;
             ALTER TABLE jobs ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
             UPDATE jobs SET size = {SIZE};
             COMMIT;"
        ))?;
    }
    Ok(())
}

/// Open (or create) the SQLite file `name` in `state_dir`, bosun's alone
/// whatever the umask: its mode is set before SQLite opens it, which gives
/// its -wal and -shm files the database's mode.
pub(crate) fn open_private(
    state_dir: &Path,
    name: &str,
) -> anyhow::Result<(std::path::PathBuf, Connection)> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let path = state_dir.join(name);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .and_then(|_| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)))
        .with_context(|| format!("making {} bosun's alone", path.display()))?;
    let conn = connect(&path)?;
    Ok((path, conn))
}

fn connect(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))
        .context("setting the busy timeout")?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .context("switching to WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .context("setting synchronous")?;
    Ok(conn)
}

/// Every second, copy the WAL into the database (a passive checkpoint never
/// blocks the writer); ends when the store is dropped.
fn checkpoint_loop(reader: &std::sync::Weak<Mutex<Connection>>) {
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(conn) = reader.upgrade() else { return };
        let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("job store checkpoint: {e}");
        }
    }
}

/// The writer thread: commit what is waiting, together, then answer each.
/// If a batch fails, its writes are retried one by one, so one bad write
/// cannot fail its neighbours.
fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Write>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        if let Ok(changed) = commit(&mut conn, &batch) {
            for (w, n) in batch.into_iter().zip(changed) {
                let _ = w.done.send(Ok(n));
            }
            continue;
        }
        for w in batch {
            let result = commit(&mut conn, std::slice::from_ref(&w))
                .map(|changed| changed[0])
                .map_err(|e| format!("{e:#}"));
            let _ = w.done.send(result);
        }
    }
}

/// Apply `batch` in one transaction; returns the rows each write changed.
fn commit(conn: &mut Connection, batch: &[Write]) -> anyhow::Result<Vec<usize>> {
    let tx = conn.transaction().context("starting a transaction")?;
    let changed = batch
        .iter()
        .map(|w| apply(&tx, &w.op))
        .collect::<anyhow::Result<_>>()?;
    tx.commit().context("committing")?;
    Ok(changed)
}

fn apply(tx: &Transaction<'_>, op: &Op) -> anyhow::Result<usize> {
    Ok(match op {
        Op::Insert(job) => tx
            .prepare_cached(
                "INSERT INTO jobs (id, project, action, params, requested_by, state, created_at, size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, length(CAST(?4 AS BLOB)))",
            )?
            .execute(params![
                job.id,
                job.project,
                job.action,
                serde_json::to_string(&job.params)?,
                job.requested_by,
                job.state.as_str(),
                job.created_at as i64
            ])
            .context("inserting a job")?,
        Op::Update(job, log) => {
            let (kind, message) = match &job.error {
                Some(e) => (Some(e.kind.as_str()), Some(e.message.as_str())),
                None => (None, None),
            };
            tx.prepare_cached(
                "UPDATE jobs SET state = ?2, started_at = ?3, finished_at = ?4, result = ?5,
                        error_kind = ?6, error_message = ?7, log = COALESCE(?8, log),
                        size = length(CAST(params AS BLOB))
                             + coalesce(length(CAST(?5 AS BLOB)), 0)
                             + coalesce(length(CAST(?7 AS BLOB)), 0)
                             + length(CAST(COALESCE(?8, log) AS BLOB))
                 WHERE id = ?1",
            )?
            .execute(params![
                job.id,
                job.state.as_str(),
                job.started_at.map(|t| t as i64),
                job.finished_at.map(|t| t as i64),
                job.result,
                kind,
                message,
                log
            ])
            .context("updating a job")?
        }
        Op::SaveLog(id, log) => tx
            .prepare_cached(
                "UPDATE jobs SET log = ?2,
                        size = length(CAST(params AS BLOB)) + length(CAST(?2 AS BLOB))
                             + coalesce(length(CAST(result AS BLOB)), 0)
                             + coalesce(length(CAST(error_message AS BLOB)), 0)
                 WHERE id = ?1",
            )?
            .execute(params![id, log])
            .context("saving a job log")?,
        Op::Prune(retention, project) => {
            prune(tx, retention, project.as_deref()).context("retention")?
        }
    })
}

const FINISHED: &str = "state NOT IN ('queued', 'running')";

/// Delete finished jobs older than `keep_for`, then, per project, those
/// past its newest `keep` or past `max_bytes`. `seq` follows creation, so
/// the age bound is found by walking the primary key oldest first, and a
/// project's bounds by walking its index newest first, instead of scanning
/// the table.
fn prune(tx: &Transaction<'_>, r: &Retention, project: Option<&str>) -> anyhow::Result<usize> {
    let cutoff = now_ms().saturating_sub(u64::try_from(r.keep_for.as_millis())?);
    // The oldest job young enough to keep: jobs before it are candidates
    // (each still checked by its own time, as clocks may step).
    let young: Option<i64> = tx
        .query_row(
            "SELECT seq FROM jobs WHERE created_at >= ?1 ORDER BY seq LIMIT 1",
            [cutoff as i64],
            |r| r.get(0),
        )
        .optional()?;
    let mut deleted = tx.execute(
        &format!("DELETE FROM jobs WHERE seq < ?1 AND created_at < ?2 AND {FINISHED}"),
        params![young.unwrap_or(i64::MAX), cutoff as i64],
    )?;
    let projects = match project {
        Some(p) => vec![p.to_string()],
        None => tx
            .prepare("SELECT DISTINCT project FROM jobs")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?,
    };
    for project in projects {
        deleted += prune_project(tx, r, &project)?;
    }
    Ok(deleted)
}

/// Delete `project`'s finished jobs past its newest `keep`, or past
/// `max_bytes` counted from the newest.
fn prune_project(tx: &Transaction<'_>, r: &Retention, project: &str) -> anyhow::Result<usize> {
    let mut newest = tx.prepare_cached(&format!(
        "SELECT seq, size FROM jobs WHERE project = ?1 AND {FINISHED} ORDER BY seq DESC"
    ))?;
    let mut rows = newest.query([project])?;
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut first_gone = None;
    while let Some(row) = rows.next()? {
        count += 1;
        bytes = bytes.saturating_add(u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0));
        if count > r.keep || (bytes > r.max_bytes && count > 1) {
            first_gone = Some(row.get::<_, i64>(0)?);
            break;
        }
    }
    drop(rows);
    let Some(seq) = first_gone else { return Ok(0) };
    Ok(tx
        .prepare_cached(&format!(
            "DELETE FROM jobs WHERE project = ?1 AND seq <= ?2 AND {FINISHED}"
        ))?
        .execute(params![project, seq])?)
}

fn read_job(row: &Row<'_>) -> rusqlite::Result<Job> {
    let params: String = row.get(3)?;
    let state: String = row.get(5)?;
    let kind: Option<String> = row.get(10)?;
    let message: Option<String> = row.get(11)?;
    let ms = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(row.get::<_, Option<i64>>(i)?.map(|t| t.max(0) as u64))
    };
    Ok(Job {
        id: row.get(0)?,
        project: row.get(1)?,
        action: row.get(2)?,
        params: serde_json::from_str(&params).unwrap_or_default(),
        requested_by: row.get(4)?,
        state: JobState::parse(&state).unwrap_or(JobState::Interrupted),
        created_at: ms(6)?.unwrap_or(0),
        started_at: ms(7)?,
        finished_at: ms(8)?,
        result: row.get(9)?,
        // A kind this version does not know (a newer bosun's) reads as a
        // host error, its message kept.
        error: kind.map(|kind| {
            JobError::new(
                JobErrorKind::parse(&kind).unwrap_or(JobErrorKind::HostError),
                message.unwrap_or_default(),
            )
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_jobs_db_gets_its_sizes() {
        let dir = tempfile::TempDir::new().expect("temp");
        let old = Connection::open(dir.path().join("jobs.db")).expect("open");
        old.execute_batch(&SCHEMA.replace(",\n    size          INTEGER NOT NULL DEFAULT 0", ""))
            .expect("the schema before sizes");
        old.execute(
            "INSERT INTO jobs (id, project, action, params, requested_by, state, created_at, log)
             VALUES ('j', 'p', 'a', '{}', 'k', 'succeeded', 0, 'héllo')",
            [],
        )
        .expect("a job");
        drop(old);
        drop(Store::open(dir.path()).expect("opens"));
        let conn = Connection::open(dir.path().join("jobs.db")).expect("open");
        let size: i64 = conn
            .query_row("SELECT size FROM jobs WHERE id = 'j'", [], |r| r.get(0))
            .expect("a size");
        assert_eq!(size, 2 + "héllo".len() as i64);
    }
}
