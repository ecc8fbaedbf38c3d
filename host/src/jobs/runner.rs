//! A project's runner: takes its queue's jobs one at a time, in order, and
//! runs each plugin in the engine's sandbox.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::model::{Job, JobError, JobErrorKind, JobState, now_ms};
use super::{ActiveJob, Inner, ProjectQueue};
use crate::plugins::{LogSink, ProjectScope, RunFailure, RunRequest};

/// How often a running job's log is saved, so a crash loses at most this
/// much of it.
const LOG_SAVE_EVERY: Duration = Duration::from_secs(1);

/// A job taken from the queue whose `running` mark has been sent to the
/// store; the future resolves once it is committed.
type Started = (
    Arc<ActiveJob>,
    std::pin::Pin<Box<dyn Future<Output = Result<(), super::StoreError>> + Send>>,
);

/// Run `queue`'s jobs until bosun stops.
///
/// A job's end and the next job's start are sent to the store together, so
/// under load they share one commit: each job costs two commits, not three.
/// A plugin never starts before its `running` mark is committed, so a crash
/// can never run a job twice.
pub(super) async fn run_queue(inner: Arc<Inner>, queue: Arc<ProjectQueue>) {
    if let Some(mut checkout) = queue.checkout.clone() {
        tokio::select! {
            biased;
            () = queue.closing.cancelled() => return,
            () = checkout.done() => {}
        }
        // The first checkout may have brought the project's own plugins.
        if let Some(after) = inner.after_run.get() {
            let project = queue.scope.load().name.clone();
            let hook = after(project, Arc::new(|line| tracing::info!("{line}")));
            // A reload removing the project waits for this runner.
            tokio::select! {
                biased;
                () = queue.closing.cancelled() => return,
                () = hook => {}
            }
        }
    }
    let mut next: Option<Started> = None;
    loop {
        let (active, started) = match next.take() {
            Some(started) => started,
            None => {
                let active = tokio::select! {
                    biased;
                    () = queue.closing.cancelled() => return,
                    active = next_job(&queue) => active,
                };
                start(&inner, &active)
            }
        };
        let span = {
            let job = active.job.borrow();
            tracing::info_span!("job", id = %job.id, project = %job.project, action = %job.action)
        };
        async {
            if let Err(e) = started.await {
                tracing::error!("{e}");
            }
            tracing::info!("running");
            let job = run(&inner, &queue, &active).await;
            tracing::info!(state = %job.state, "finished");
            let stored = inner.store.update(&job, Some(active.log.text()));
            if !queue.closing.is_cancelled()
                && let Some(following) = queue.waiting().pop_front()
            {
                next = Some(start(&inner, &following));
            }
            if let Err(e) = stored.await {
                tracing::error!("{e}");
            }
            inner.finished(&active, job).await;
        }
        .instrument(span)
        .await;
    }
}

async fn next_job(queue: &ProjectQueue) -> Arc<ActiveJob> {
    loop {
        let notified = queue.notify.notified();
        if let Some(job) = queue.waiting().pop_front() {
            return job;
        }
        notified.await;
    }
}

/// Mark the job running, in memory now and in the store once committed.
fn start(inner: &Inner, active: &Arc<ActiveJob>) -> Started {
    let mut job = active.job.borrow().clone();
    job.state = JobState::Running;
    job.started_at = Some(now_ms());
    let stored = Box::pin(inner.store.update(&job, None));
    active.job.send_replace(job);
    (active.clone(), stored)
}

/// Run the job's plugin; returns the job's finished record.
async fn run(inner: &Inner, queue: &ProjectQueue, active: &Arc<ActiveJob>) -> Job {
    let mut job = active.job.borrow().clone();
    // Taken once: a reload that swaps the registry now lets this job
    // finish on the plugin it started with.
    let registry = inner.registry.load_full();
    let outcome = match registry.get(&job.project, &job.action) {
        Some(Ok(loaded)) => {
            let log = active.clone();
            let sink: LogSink = Arc::new(move |_stream, line| log.log.push(line));
            let request = RunRequest {
                scope: ProjectScope::clone(&queue.scope.load()),
                action: job.action.clone(),
                job_id: job.id.clone(),
                params: job.params.clone(),
                limits: loaded.limits,
                log: sink,
                cancel: active.cancel.clone(),
            };
            let saving = CancellationToken::new();
            let saver = tokio::spawn(save_log_periodically(
                inner.store.clone(),
                active.clone(),
                job.id.clone(),
                saving.clone(),
            ));
            let outcome = inner.engine.run(&loaded.plugin, request).await;
            if let Some(after) = inner.after_run.get() {
                let log = active.clone();
                let hook = after(
                    job.project.clone(),
                    Arc::new(move |line| log.log.push(&line)),
                );
                // Not once the project is closing: a reload removing it
                // holds the catalog's turn and waits for this runner.
                tokio::select! {
                    biased;
                    () = queue.closing.cancelled() => {}
                    () = hook => {}
                }
            }
            saving.cancel();
            let _ = saver.await;
            outcome
        }
        Some(Err(e)) => Err(RunFailure {
            kind: e.kind(),
            message: "the action's plugin failed to load; `bosun check` on the server says why"
                .into(),
        }),
        None => Err(RunFailure {
            kind: crate::plugins::FailureKind::InvalidPlugin,
            message: format!("the project no longer has an action `{}`", job.action),
        }),
    };
    if matches!(&outcome, Err(f) if f.kind == crate::plugins::FailureKind::Cancelled)
        && active.interrupted.get().map(String::as_str) == Some(super::REQUEUED)
    {
        // Back in the queue, as it was before it started.
        job.state = JobState::Queued;
        job.started_at = None;
        return job;
    }
    let outcome = outcome.map_err(|failure| {
        let error = JobError::from(failure);
        match active.interrupted.get() {
            Some(why) if error.kind == JobErrorKind::Cancelled => {
                JobError::new(JobErrorKind::Interrupted, why.clone())
            }
            _ => error,
        }
    });
    job.finish(outcome);
    job
}

async fn save_log_periodically(
    store: super::Store,
    active: Arc<ActiveJob>,
    id: String,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LOG_SAVE_EVERY) => {}
        }
        if let Some(text) = active.log.take_unsaved()
            && let Err(e) = store.save_log(&id, text).await
        {
            tracing::error!("{e}");
        }
    }
}
