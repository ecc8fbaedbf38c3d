//! Jobs: every action call, from acknowledgement to outcome.
//!
//! - **Acknowledged once stored.** [`Jobs::submit`] returns only after the job
//!   is in SQLite, so an acknowledged job survives a crash: queued jobs run
//!   after the restart, running ones are marked `interrupted`.
//! - **One at a time per project, in order.** Each project has a FIFO queue
//!   and one runner task; two deploys of one project never overlap, and
//!   projects do not wait for each other (up to the engine's global limit on
//!   concurrent plugin runs).
//! - **Bounded.** A project's queue holds at most `jobs.queue_depth` waiting
//!   jobs; past that, [`SubmitError::QueueFull`] and nothing is stored. A
//!   caller is refused clearly instead of dropped silently.
//!
//! The queues and the runners are owned here; the API reaches them only
//! through a [`Jobs`] handle.

mod log;
mod model;
mod projects;
mod runner;
mod store;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use arc_swap::ArcSwap;
pub use log::JobLog;
pub use model::{Job, JobError, JobErrorKind, JobState, now_ms};
pub use projects::RemovedJobs;
pub(crate) use store::open_private;
pub use store::{JobFilter, Retention, Store, StoreError};

use crate::config::JobsConfig;
use crate::metrics::{FinishedJob, Metrics};
use crate::plugins::{Actions, Engine, ProjectScope};
use crate::project::Checkout;

/// Why an upgrade stopped a job that runs again in the next image.
const REQUEUED: &str = "bosun is upgrading; the job runs again from the start";

/// The shortest time between two retention passes while jobs finish.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The project's queue is full.
    #[error("project `{project}` already has {depth} jobs waiting")]
    QueueFull {
        /// The project.
        project: String,
        /// Its queue bound.
        depth: usize,
    },
    /// The project is not configured.
    #[error("no project `{0}`")]
    UnknownProject(String),
    /// bosun is shutting down and takes no new jobs.
    #[error("bosun is shutting down")]
    ShuttingDown,
    /// The job could not be stored, so it was not accepted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a job could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// No job has that id.
    #[error("no job `{0}`")]
    NotFound(String),
    /// The job has already ended.
    #[error("the job has already ended: {0}")]
    Finished(JobState),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A request for a new job, already checked by the caller.
pub struct NewJob {
    /// The project.
    pub project: String,
    /// The action.
    pub action: String,
    /// The parameters, validated against the action's declaration.
    pub params: Vec<(String, String)>,
    /// The key's name.
    pub requested_by: String,
}

/// A job that is queued or running.
pub(crate) struct ActiveJob {
    job: watch::Sender<Job>,
    log: JobLog,
    cancel: CancellationToken,
    /// Why bosun, not a caller, cancelled the run: shutdown, or a reload
    /// that removed the project.
    interrupted: OnceLock<String>,
}

/// A live view of a job's log.
pub enum LogFollow {
    /// The job is over: its stored log.
    Done(Vec<Arc<str>>),
    /// The job is queued or running: the lines so far, every later line,
    /// and its record, which turns terminal when no more lines will come.
    Live {
        /// The lines so far.
        lines: Vec<Arc<str>>,
        /// Every later line.
        rx: broadcast::Receiver<Arc<str>>,
        /// The job's record.
        job: watch::Receiver<Job>,
    },
}

struct ProjectQueue {
    /// What its jobs may touch; a reload may change it for the next job.
    scope: ArcSwap<ProjectScope>,
    /// Cancelled when bosun stops, an upgrade begins, or a reload removes
    /// the project: the runner takes no further job.
    closing: CancellationToken,
    /// Set when a reload removed the project: it takes no job either.
    removed: AtomicBool,
    /// The project's first checkout: no job runs before it is done.
    checkout: Option<Checkout>,
    /// Held only for a moment: the runner never waits on a submission.
    waiting: Mutex<VecDeque<Arc<ActiveJob>>>,
    /// Held across a submission's insert, so submissions of one project
    /// are stored and queued in the same order, and the bound is exact.
    submitting: tokio::sync::Mutex<()>,
    notify: Notify,
}

impl ProjectQueue {
    fn new(scope: ProjectScope, checkout: Option<Checkout>, starting: &CancellationToken) -> Self {
        Self {
            scope: ArcSwap::from_pointee(scope),
            closing: starting.child_token(),
            removed: AtomicBool::new(false),
            checkout,
            waiting: Mutex::new(VecDeque::new()),
            submitting: tokio::sync::Mutex::new(()),
            notify: Notify::new(),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<ActiveJob>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) struct Inner {
    store: Store,
    engine: Engine,
    registry: Actions,
    /// Held only for a lookup or a reload's insert or removal.
    queues: RwLock<BTreeMap<String, Arc<ProjectQueue>>>,
    active: Mutex<HashMap<String, Arc<ActiveJob>>>,
    cfg: JobsConfig,
    metrics: Metrics,
    stopping: CancellationToken,
    /// A child of `stopping`, and the parent of every queue's `closing`.
    starting: CancellationToken,
    runners: Mutex<BTreeMap<String, JoinHandle<()>>>,
    /// When retention last started.
    /// When each project's history was last pruned.
    pruned_at: Mutex<HashMap<String, Instant>>,
    /// Called after each run, before its job ends (see [`Jobs::after_each_run`]).
    after_run: OnceLock<AfterRun>,
}

/// What runs after each plugin run: given the project and a writer to the
/// job's log.
pub type AfterRun = Arc<
    dyn Fn(
            String,
            Arc<dyn Fn(String) + Send + Sync>,
        ) -> futures_util::future::BoxFuture<'static, ()>
        + Send
        + Sync,
>;

/// The job system. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

/// What [`Jobs::start`] found at boot.
#[derive(Debug, Clone, Copy)]
pub struct BootReport {
    /// Jobs that were running when bosun died, now `interrupted`.
    pub interrupted: usize,
    /// Queued jobs picked up again.
    pub requeued: usize,
    /// Finished jobs deleted by retention.
    pub pruned: usize,
}

impl Jobs {
    /// Call `hook` after each plugin run, before the job ends, so what it
    /// writes lands in the job's log (the daemon loads again the plugins a
    /// job changed in the project's repository). Set once.
    pub fn after_each_run(&self, hook: AfterRun) {
        let _ = self.inner.after_run.set(hook);
    }

    /// Open the store, recover what a previous bosun left, and start a runner
    /// per project.
    pub async fn start(
        store: Store,
        engine: Engine,
        registry: Actions,
        scopes: BTreeMap<String, ProjectScope>,
        cfg: JobsConfig,
        metrics: Metrics,
        checkouts: &BTreeMap<String, Checkout>,
    ) -> Result<(Self, BootReport), StoreError> {
        let recovered = store.recover().await?;
        let pruned = store.prune(Retention::from(&cfg), None).await?;
        let stopping = CancellationToken::new();
        let starting = stopping.child_token();
        let queues = scopes
            .into_iter()
            .map(|(name, scope)| {
                let queue = ProjectQueue::new(scope, checkouts.get(&name).cloned(), &starting);
                (name, Arc::new(queue))
            })
            .collect();
        let inner = Arc::new(Inner {
            store,
            engine,
            registry,
            queues: RwLock::new(queues),
            active: Mutex::new(HashMap::new()),
            cfg,
            metrics,
            stopping,
            starting,
            runners: Mutex::new(BTreeMap::new()),
            pruned_at: Mutex::new(HashMap::new()),
            after_run: OnceLock::new(),
        });
        let requeued = recovered.queued.len();
        for job in recovered.queued {
            inner.requeue(job).await;
        }
        let queues: Vec<_> = inner
            .queues()
            .iter()
            .map(|(name, q)| (name.clone(), q.clone()))
            .collect();
        for (name, queue) in queues {
            inner.start_runner(name, queue);
        }
        let report = BootReport {
            interrupted: recovered.interrupted,
            requeued,
            pruned,
        };
        Ok((Self { inner }, report))
    }

    /// Store a new job and queue it. Returns the job as stored.
    pub async fn submit(&self, new: NewJob) -> Result<Job, SubmitError> {
        self.submit_replacing(new, |_| false)
            .await
            .map(|(job, _)| job)
    }

    /// [`Jobs::submit`], and take the project's queued jobs that `replaces`
    /// picks off its queue: they end `cancelled`, naming the new job, and
    /// do not count against the queue's bound. Returns the new job and the
    /// ids of those it replaced.
    pub async fn submit_replacing(
        &self,
        new: NewJob,
        replaces: impl Fn(&Job) -> bool,
    ) -> Result<(Job, Vec<String>), SubmitError> {
        if self.inner.stopping.is_cancelled() {
            return Err(SubmitError::ShuttingDown);
        }
        let queue = self
            .inner
            .queue(&new.project)
            .ok_or_else(|| SubmitError::UnknownProject(new.project.clone()))?;
        let _turn = queue.submitting.lock().await;
        if self.inner.stopping.is_cancelled() {
            return Err(SubmitError::ShuttingDown);
        }
        if queue.removed.load(Ordering::SeqCst) {
            // Removed by a reload while this waited.
            return Err(SubmitError::UnknownProject(new.project));
        }
        let staying = {
            let waiting = queue.waiting();
            waiting.len() - waiting.iter().filter(|a| replaces(&a.job.borrow())).count()
        };
        if staying >= self.inner.cfg.queue_depth {
            self.inner.metrics.job_refused(&new.project);
            return Err(SubmitError::QueueFull {
                project: new.project,
                depth: self.inner.cfg.queue_depth,
            });
        }
        let job = Job::new(&new.project, &new.action, new.params, &new.requested_by);
        self.inner.store.insert(&job).await?;
        let active = self.inner.activate(job.clone());
        // The runner may have taken some meanwhile: only what still waits
        // is replaced.
        let replaced: Vec<Arc<ActiveJob>> = {
            let mut waiting = queue.waiting();
            let (gone, kept): (VecDeque<_>, VecDeque<_>) =
                waiting.drain(..).partition(|a| replaces(&a.job.borrow()));
            *waiting = kept;
            waiting.push_back(active);
            gone.into()
        };
        queue.notify.notify_one();
        let mut ids = Vec::with_capacity(replaced.len());
        for old in replaced {
            let why = format!("replaced by job {} before it started", job.id);
            ids.push(self.inner.cancel_queued(&old, why).await.id);
        }
        Ok((job, ids))
    }

    /// Whether `project` has a job queued or running.
    pub fn busy(&self, project: &str) -> bool {
        !self.inner.active_of(project).is_empty()
    }

    /// What `project`'s jobs may touch now.
    pub fn scope(&self, project: &str) -> Option<Arc<ProjectScope>> {
        self.inner.queue(project).map(|q| q.scope.load_full())
    }

    /// The job with `id`: its live record while active, else the stored one.
    pub async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        if let Some(active) = self.inner.active(id) {
            return Ok(Some(active.job.borrow().clone()));
        }
        self.inner.store.get(id).await
    }

    /// Jobs matching `filter`, newest first.
    pub async fn list(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        self.inner.store.list(filter).await
    }

    /// Wait up to `timeout` for the job to end; returns its record then, or
    /// as it is when the time is up.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<Job>, StoreError> {
        let Some(active) = self.inner.active(id) else {
            return self.inner.store.get(id).await;
        };
        let mut rx = active.job.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|j| j.state.is_terminal())).await;
        let job = rx.borrow().clone();
        Ok(Some(job))
    }

    /// The job's log so far and, while it is active, every later line.
    pub async fn follow(&self, id: &str) -> Result<Option<LogFollow>, StoreError> {
        if let Some(active) = self.inner.active(id) {
            let (lines, rx) = active.log.follow();
            let job = active.job.subscribe();
            return Ok(Some(LogFollow::Live { lines, rx, job }));
        }
        Ok(self
            .inner
            .store
            .log(id)
            .await?
            .map(|text| LogFollow::Done(JobLog::stored(&text))))
    }

    /// Cancel a job: a queued one ends at once, a running one is stopped
    /// (wasm at its next epoch tick, a host call at once). Returns the
    /// record after waiting up to `wait` for the job to end.
    pub async fn cancel(&self, id: &str, wait: Duration) -> Result<Job, CancelError> {
        let Some(active) = self.inner.active(id) else {
            return match self.inner.store.get(id).await? {
                Some(job) => Err(CancelError::Finished(job.state)),
                None => Err(CancelError::NotFound(id.to_string())),
            };
        };
        let (project, state) = {
            let job = active.job.borrow();
            (job.project.clone(), job.state)
        };
        if state.is_terminal() {
            return Err(CancelError::Finished(state));
        }
        if let Some(queue) = self.inner.queue(&project) {
            let removed = {
                let mut waiting = queue.waiting();
                let pos = waiting.iter().position(|a| Arc::ptr_eq(a, &active));
                pos.and_then(|p| waiting.remove(p))
            };
            if removed.is_some() {
                let job = self
                    .inner
                    .cancel_queued(&active, "cancelled before it started".into())
                    .await;
                return Ok(job);
            }
        }
        active.cancel.cancel();
        let mut rx = active.job.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|j| j.state.is_terminal())).await;
        let job = rx.borrow().clone();
        Ok(job)
    }

    /// Jobs waiting per project (not counting the running one).
    pub fn queue_depths(&self) -> Vec<(String, usize)> {
        self.inner
            .queues()
            .iter()
            .map(|(name, queue)| (name.clone(), queue.waiting().len()))
            .collect()
    }

    /// Stop taking jobs, let running ones finish for up to `grace`, then
    /// cancel the rest and mark them `interrupted`. Queued jobs stay queued
    /// in the store and run after the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop(grace, "bosun shut down before the job finished")
            .await;
    }

    /// Start no further job (an upgrade begins): new jobs are still taken
    /// and stored, and run in the next image.
    pub fn hold_starts(&self) {
        self.inner.starting.cancel();
    }

    /// [`Jobs::shutdown`] for an upgrade: a job still running after
    /// `grace` is stopped and queued again, to run from the start in the
    /// next image; none is lost.
    pub async fn hand_over(&self, grace: Duration) {
        self.stop(grace, REQUEUED).await;
    }

    async fn stop(&self, grace: Duration, why: &str) {
        self.inner.stopping.cancel();
        let runners = std::mem::take(
            &mut *self
                .inner
                .runners
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let mut all = futures_util::future::join_all(runners.into_values());
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            let active: Vec<Arc<ActiveJob>> = self
                .inner
                .active
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .cloned()
                .collect();
            for job in active {
                job.interrupt(why);
            }
            all.await;
        }
    }
}

impl ActiveJob {
    /// Cancel the run on bosun's behalf: it ends `interrupted`, saying `why`.
    fn interrupt(&self, why: impl Into<String>) {
        // A job its caller cancelled already stays cancelled (and is not
        // queued again by an upgrade).
        if !self.cancel.is_cancelled() {
            let _ = self.interrupted.set(why.into());
        }
        self.cancel.cancel();
    }
}

impl Inner {
    fn queues(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<ProjectQueue>>> {
        self.queues.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn queue(&self, project: &str) -> Option<Arc<ProjectQueue>> {
        self.queues().get(project).cloned()
    }

    /// Start `queue`'s runner, known by the project's name.
    fn start_runner(self: &Arc<Self>, name: String, queue: Arc<ProjectQueue>) {
        let runner = tokio::spawn(runner::run_queue(self.clone(), queue));
        self.runners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, runner);
    }

    /// The jobs of `project` that are queued or running.
    fn active_of(&self, project: &str) -> Vec<Arc<ActiveJob>> {
        self.active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|a| a.job.borrow().project == project)
            .cloned()
            .collect()
    }

    fn active(&self, id: &str) -> Option<Arc<ActiveJob>> {
        self.active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn activate(&self, job: Job) -> Arc<ActiveJob> {
        let id = job.id.clone();
        let active = Arc::new(ActiveJob {
            job: watch::Sender::new(job),
            log: JobLog::new(usize::try_from(self.cfg.max_log.as_u64()).unwrap_or(usize::MAX)),
            cancel: CancellationToken::new(),
            interrupted: OnceLock::new(),
        });
        self.active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, active.clone());
        active
    }

    /// Queue a job recovered from the store; a job whose project is gone
    /// from the config fails, saying so.
    async fn requeue(&self, mut job: Job) {
        match self.queue(&job.project) {
            Some(queue) => {
                let active = self.activate(job);
                queue.waiting().push_back(active);
                queue.notify.notify_one();
            }
            None => {
                let message = format!("project `{}` is no longer configured", job.project);
                job.finish(Err(JobError::new(JobErrorKind::InvalidPlugin, message)));
                if let Err(e) = self.store.update(&job, None).await {
                    tracing::error!(job = %job.id, "{e}");
                }
            }
        }
    }

    /// End a job taken off its queue before it started: `cancelled`,
    /// saying `why`. Returns its final record.
    async fn cancel_queued(&self, active: &ActiveJob, why: String) -> Job {
        let mut job = active.job.borrow().clone();
        job.finish(Err(JobError::new(JobErrorKind::Cancelled, why)));
        self.complete(active, job.clone()).await;
        job
    }

    /// Record a job's end: store, count, forget, publish.
    async fn complete(&self, active: &ActiveJob, job: Job) {
        if let Err(e) = self.store.update(&job, Some(active.log.text())).await {
            tracing::error!(job = %job.id, project = %job.project, "{e}");
        }
        self.finished(active, job).await;
    }

    /// A job's end is stored: count it, forget the job, publish it.
    async fn finished(&self, active: &ActiveJob, job: Job) {
        // Counted and forgotten first: whoever sees the end (a `?wait`)
        // finds it in the metrics, and the job in the store, never still
        // active.
        self.metrics.job_finished(FinishedJob {
            project: &job.project,
            action: &job.action,
            state: job.state.as_str(),
            run_seconds: job.run_seconds(),
            wait_seconds: job
                .started_at
                .map(|started| started.saturating_sub(job.created_at) as f64 / 1000.0),
        });
        self.active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&job.id);
        active.job.send_replace(job.clone());
        self.prune_now_and_then(&job.project);
    }

    /// Retention, at boot for every project and then for a project at
    /// most every [`PRUNE_EVERY`] as its jobs finish, in its own task: a
    /// pass walks the project's `keep` newest rows and deletes what is past
    /// them (a few milliseconds at 10k jobs), so no runner waits for it, and
    /// at 14k jobs a second it costs about 1% of the writer's time.
    fn prune_now_and_then(&self, project: &str) {
        {
            let mut pruned_at = self
                .pruned_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let last = pruned_at.entry(project.to_string()).or_insert_with(|| {
                Instant::now()
                    .checked_sub(PRUNE_EVERY)
                    .unwrap_or_else(Instant::now)
            });
            if last.elapsed() < PRUNE_EVERY {
                return;
            }
            *last = Instant::now();
        }
        let store = self.store.clone();
        let retention = Retention::from(&self.cfg);
        let project = project.to_string();
        tokio::spawn(async move {
            if let Err(e) = store.prune(retention, Some(&project)).await {
                tracing::error!("{e}");
            }
        });
    }
}
