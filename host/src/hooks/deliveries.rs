//! Every delivery a webhook received, in `hooks.db` in the state dir.
//!
//! - **Exactly once.** A proven delivery that was accepted or ignored is
//!   found again by its id, or by the SHA-256 of what its signature covers
//!   (a captured payload replayed under a new id, or re-signed as another
//!   forge's, is the same push), for 30 days: a redelivery answers with the
//!   first job. A refused one may come again and run, unless a push to the
//!   same ref was accepted since ([`Deliveries::superseded`]).
//! - **Bounded against strangers.** Anyone can post a bad signature, so
//!   per project only the newest [`KEEP_UNPROVEN`] of those are kept, and
//!   apart from them the newest [`KEEP_PROVEN`] proven ones (which only the
//!   secret's holder can make): a flood of strangers cannot erase what
//!   replays are checked against.
//! - A file of its own, apart from `jobs.db`: deliveries are few, and their
//!   writes must never wait behind the job writer's batches. One connection
//!   behind a mutex, used from blocking threads.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use utoipa::ToSchema;

use crate::jobs::{now_ms, open_private};

/// How long deliveries are remembered.
pub const KEEP_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// Unproven deliveries (bad signatures) kept per project: anyone can
/// make them.
pub const KEEP_UNPROVEN: u32 = 1000;
/// Proven deliveries kept per project (within the 30 days): only the
/// secret's holder makes them, but a tenant may make many.
pub const KEEP_PROVEN: u32 = 10_000;

/// Why the deliveries store failed.
#[derive(Debug, thiserror::Error)]
#[error("webhook deliveries: {0:#}")]
pub struct DeliveryError(#[from] anyhow::Error);

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It started a job.
    Accepted,
    /// The same delivery (or body) was accepted before; its job is named.
    Duplicate,
    /// Proven, but nothing to run: a tag, a deleted or unwatched branch,
    /// another event, a commit already deployed.
    Ignored,
    /// A forge's "is this hook set up?".
    Ping,
    /// Its signature (or token) was missing or wrong.
    BadSignature,
    /// Proven, but its payload is not what the forge sends.
    Invalid,
    /// Proven and wanted, but no job could be taken (a full queue,
    /// shutdown, an action that cannot run).
    Refused,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Ping => "ping",
            Self::BadSignature => "bad_signature",
            Self::Invalid => "invalid",
            Self::Refused => "refused",
        }
    }

    fn parse(text: &str) -> Self {
        [
            Self::Accepted,
            Self::Duplicate,
            Self::Ignored,
            Self::Ping,
            Self::BadSignature,
            Self::Invalid,
        ]
        .into_iter()
        .find(|v| v.as_str() == text)
        .unwrap_or(Self::Refused)
    }
}

/// One delivery, as stored and listed.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its place in the log (newer is larger); `before` pages by it.
    pub seq: i64,
    /// The project.
    pub project: String,
    /// When it arrived, in milliseconds since the Unix epoch.
    pub received_at: u64,
    /// The forge its headers named, if any.
    pub forge: Option<String>,
    /// The event, as the forge named it.
    pub event: String,
    /// The forge's delivery id, or the body's SHA-256 when it sends none.
    pub delivery: String,
    /// The SHA-256 of its body.
    pub body_sha: String,
    /// The ref pushed, for a proven push.
    pub git_ref: Option<String>,
    /// The commit pushed, for a proven push.
    pub after: Option<String>,
    /// What became of it.
    pub verdict: Verdict,
    /// Why, for every verdict but `accepted`.
    pub reason: Option<String>,
    /// The job it started (or, for a duplicate, the first one's).
    pub job_id: Option<String>,
    /// The address it came from.
    pub source: String,
}

/// A delivery seen before.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `accepted` or `ignored`.
    pub verdict: Verdict,
    /// The job it started.
    pub job_id: Option<String>,
    /// Why it was ignored.
    pub reason: Option<String>,
}

/// The deliveries store. Cheap to clone.
#[derive(Clone)]
pub struct Deliveries {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    project     TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    forge       TEXT,
    event       TEXT NOT NULL,
    delivery    TEXT NOT NULL,
    body_sha    TEXT NOT NULL,
    git_ref     TEXT,
    after       TEXT,
    verdict     TEXT NOT NULL,
    reason      TEXT,
    job_id      TEXT,
    source      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_project ON deliveries(project, seq);
CREATE INDEX IF NOT EXISTS accepted_by_id ON deliveries(project, delivery) WHERE verdict = 'accepted';
CREATE INDEX IF NOT EXISTS accepted_by_body ON deliveries(project, body_sha) WHERE verdict = 'accepted';
CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries(received_at);
CREATE INDEX IF NOT EXISTS unproven_by_project ON deliveries(project, seq) WHERE verdict = 'bad_signature';
CREATE INDEX IF NOT EXISTS proven_by_project ON deliveries(project, seq) WHERE verdict != 'bad_signature';
";

/// Deliveries that arrived before this (ms since the epoch) are forgotten.
fn cutoff() -> i64 {
    now_ms().saturating_sub(KEEP_FOR.as_millis() as u64) as i64
}

impl Deliveries {
    /// Open (or create) `hooks.db` in `state_dir`, bosun's alone.
    pub fn open(state_dir: &Path) -> Result<Self, DeliveryError> {
        let (_, conn) = open_private(state_dir, "hooks.db")?;
        conn.execute_batch(SCHEMA).context("creating the schema")?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, DeliveryError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .context("the deliveries thread panicked")?
        .map_err(DeliveryError)
    }

    /// An earlier push to `project` with this id or payload that was proven
    /// and taken (accepted or ignored) within the last 30 days: its verdict,
    /// its job and its reason. Other events do not count: their event
    /// header is not signed, so a push replayed as one must not mark the
    /// real push seen.
    pub async fn seen(
        &self,
        project: &str,
        delivery: &str,
        body_sha: &str,
    ) -> Result<Option<Seen>, DeliveryError> {
        let (project, delivery, body_sha) = (
            project.to_string(),
            delivery.to_string(),
            body_sha.to_string(),
        );
        let since = cutoff();
        self.with(move |conn| {
            conn.query_row(
                "SELECT verdict, job_id, reason FROM deliveries WHERE project = ?1 \
                 AND (delivery = ?2 OR body_sha = ?3) AND verdict IN ('accepted', 'ignored') \
                 AND git_ref IS NOT NULL AND received_at >= ?4 \
                 ORDER BY verdict = 'accepted' DESC, seq LIMIT 1",
                params![project, delivery, body_sha, since],
                |row| {
                    Ok(Seen {
                        verdict: Verdict::parse(&row.get::<_, String>(0)?),
                        job_id: row.get(1)?,
                        reason: row.get(2)?,
                    })
                },
            )
            .optional()
            .context("looking up earlier deliveries")
        })
        .await
    }

    /// Whether a push to `git_ref` was accepted after this delivery (found
    /// by its id or its payload: the id is not signed) first arrived,
    /// refused say: redelivered or replayed late, it must not deploy an
    /// older commit over the newer one.
    pub async fn superseded(
        &self,
        project: &str,
        delivery: &str,
        body_sha: &str,
        git_ref: &str,
    ) -> Result<bool, DeliveryError> {
        let (project, delivery, body_sha, git_ref) = (
            project.to_string(),
            delivery.to_string(),
            body_sha.to_string(),
            git_ref.to_string(),
        );
        self.with(move |conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE project = ?1 \
                 AND verdict = 'accepted' AND git_ref = ?3 AND seq > \
                 (SELECT MIN(seq) FROM deliveries WHERE project = ?1 \
                  AND (delivery = ?2 OR body_sha = ?4)))",
                params![project, delivery, git_ref, body_sha],
                |row| row.get(0),
            )
            .context("looking for newer pushes")
        })
        .await
    }

    /// Store `d`, and forget what is past the bounds. Returns its `seq`.
    pub async fn record(&self, d: Delivery) -> Result<i64, DeliveryError> {
        self.with(move |conn| {
            let tx = conn.transaction().context("starting a transaction")?;
            tx.execute(
                "INSERT INTO deliveries (project, received_at, forge, event, delivery, body_sha, \
                 git_ref, after, verdict, reason, job_id, source) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    d.project,
                    d.received_at as i64,
                    d.forge,
                    d.event,
                    d.delivery,
                    d.body_sha,
                    d.git_ref,
                    d.after,
                    d.verdict.as_str(),
                    d.reason,
                    d.job_id,
                    d.source
                ],
            )
            .context("storing a delivery")?;
            let seq = tx.last_insert_rowid();
            tx.execute(
                "DELETE FROM deliveries WHERE received_at < ?1",
                params![cutoff()],
            )
            .context("forgetting old deliveries")?;
            // Only this delivery's own kind can have gone past its bound.
            let (unproven, keep) = match d.verdict {
                Verdict::BadSignature => ("=", KEEP_UNPROVEN),
                _ => ("!=", KEEP_PROVEN),
            };
            tx.execute(
                &format!(
                    "DELETE FROM deliveries WHERE project = ?1 AND verdict {unproven} 'bad_signature' \
                     AND seq <= (SELECT seq FROM deliveries WHERE project = ?1 \
                     AND verdict {unproven} 'bad_signature' ORDER BY seq DESC LIMIT 1 OFFSET ?2)"
                ),
                params![d.project, keep],
            )
            .context("forgetting the oldest deliveries")?;
            tx.commit().context("committing a delivery")?;
            Ok(seq)
        })
        .await
    }

    /// `project`'s deliveries, newest first: at most `limit`, older than
    /// `before` when given.
    pub async fn list(
        &self,
        project: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Delivery>, DeliveryError> {
        let project = project.to_string();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT seq, received_at, forge, event, delivery, git_ref, after, verdict, \
                     reason, job_id, source, body_sha, project FROM deliveries \
                     WHERE project = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
                )
                .context("preparing the deliveries list")?;
            let rows = stmt
                .query_map(params![project, before.unwrap_or(i64::MAX), limit], |row| {
                    Ok(Delivery {
                        seq: row.get(0)?,
                        received_at: row.get(1)?,
                        forge: row.get(2)?,
                        event: row.get(3)?,
                        delivery: row.get(4)?,
                        git_ref: row.get(5)?,
                        after: row.get(6)?,
                        verdict: Verdict::parse(&row.get::<_, String>(7)?),
                        reason: row.get(8)?,
                        job_id: row.get(9)?,
                        source: row.get(10)?,
                        body_sha: row.get(11)?,
                        project: row.get(12)?,
                    })
                })
                .context("listing deliveries")?;
            rows.collect::<Result<Vec<_>, _>>()
                .context("reading deliveries")
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(project: &str, id: &str, verdict: Verdict) -> Delivery {
        Delivery {
            seq: 0,
            received_at: now_ms(),
            forge: Some("github".into()),
            event: "push".into(),
            delivery: id.into(),
            git_ref: Some("refs/heads/main".into()),
            after: None,
            verdict,
            reason: None,
            job_id: (verdict == Verdict::Accepted).then(|| format!("job-{id}")),
            source: "192.0.2.1".into(),
            body_sha: format!("sha-{id}"),
            project: project.into(),
        }
    }

    #[tokio::test]
    async fn a_flood_of_strangers_keeps_the_accepted_deliveries() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Deliveries::open(dir.path()).expect("open");
        store
            .record(delivery("shop", "good", Verdict::Accepted))
            .await
            .expect("record");
        store
            .record(delivery("shop", "stale", Verdict::Ignored))
            .await
            .expect("record");
        for i in 0..KEEP_UNPROVEN + 50 {
            store
                .record(delivery("shop", &format!("bad-{i}"), Verdict::BadSignature))
                .await
                .expect("record");
        }
        let all = store.list("shop", None, 5000).await.expect("list");
        assert_eq!(all.len(), KEEP_UNPROVEN as usize + 2);
        let stale = store.seen("shop", "stale", "-").await.expect("lookup");
        assert_eq!(stale.map(|s| s.verdict), Some(Verdict::Ignored));
        let job = |seen: Option<Seen>| seen.and_then(|s| s.job_id);
        let by_id = store.seen("shop", "good", "other").await.expect("lookup");
        assert_eq!(job(by_id).as_deref(), Some("job-good"));
        let by_body = store
            .seen("shop", "new-id", "sha-good")
            .await
            .expect("lookup");
        assert_eq!(job(by_body).as_deref(), Some("job-good"));
        // Another project's deliveries are its own.
        let other = store
            .seen("cafe", "good", "sha-good")
            .await
            .expect("lookup");
        assert!(other.is_none());
        // A refused delivery does not count as seen.
        store
            .record(delivery("shop", "full", Verdict::Refused))
            .await
            .expect("record");
        let refused = store
            .seen("shop", "full", "sha-full")
            .await
            .expect("lookup");
        assert!(refused.is_none());
        // Redelivered after a newer push to its ref was accepted: too late.
        let late = delivery("shop", "late", Verdict::Refused);
        store.record(late).await.expect("record");
        let main_ref = "refs/heads/main";
        assert!(
            !store
                .superseded("shop", "late", "-", main_ref)
                .await
                .expect("lookup")
        );
        let newer = delivery("shop", "newer", Verdict::Accepted);
        store.record(newer).await.expect("record");
        assert!(
            store
                .superseded("shop", "late", "-", main_ref)
                .await
                .expect("lookup")
        );
        // Replayed under a new id, it is found by its payload.
        let replayed = store.superseded("shop", "new-id", "sha-late", main_ref);
        assert!(replayed.await.expect("lookup"));
        let other_ref = "refs/heads/other";
        assert!(
            !store
                .superseded("shop", "late", "-", other_ref)
                .await
                .expect("lookup")
        );
        assert!(
            !store
                .superseded("shop", "unknown", "-", main_ref)
                .await
                .expect("lookup")
        );
    }
}
