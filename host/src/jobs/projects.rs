//! Projects added and removed while bosun serves (a reload).
//!
//! A new project gets a queue and a runner at once. A removed project takes
//! no new job from the moment it is removed; its queued jobs end
//! `cancelled`, saying why, and its running job may finish within the
//! grace the caller gives (the server's `shutdown_grace`), after which it
//! is interrupted. Its history stays in the store.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Jobs, ProjectQueue};
use crate::plugins::ProjectScope;
use crate::project::Checkout;

/// What removing a project did to its jobs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RemovedJobs {
    /// Queued jobs cancelled.
    pub cancelled: usize,
    /// Running jobs interrupted because they outlasted the grace.
    pub interrupted: usize,
}

impl Jobs {
    /// Take jobs for `project` from now on, after `checkout` when given.
    pub fn add_project(&self, project: &str, scope: ProjectScope, checkout: Option<Checkout>) {
        let queue = Arc::new(ProjectQueue::new(scope, checkout, &self.inner.starting));
        self.inner
            .queues
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(project.to_string(), queue.clone());
        self.inner.start_runner(project.to_string(), queue);
    }

    /// What `project`'s next jobs may touch.
    pub fn set_scope(&self, project: &str, scope: ProjectScope) {
        if let Some(queue) = self.inner.queue(project) {
            queue.scope.store(Arc::new(scope));
        }
    }

    /// Take no more jobs for `project`: cancel its queued ones, let its
    /// running one finish within `grace` (cut short by `stop`), then
    /// interrupt it. `why` completes "project `p` …" in their errors.
    pub async fn remove_project(
        &self,
        project: &str,
        why: &str,
        grace: Duration,
        stop: &CancellationToken,
    ) -> RemovedJobs {
        let removed = self
            .inner
            .queues
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(project);
        let Some(queue) = removed else {
            return RemovedJobs::default();
        };
        // A submission that found the queue before it was removed is stored
        // and queued before this goes on, and is cancelled with the rest.
        let turn = queue.submitting.lock().await;
        queue.removed.store(true, Ordering::SeqCst);
        queue.closing.cancel();
        drop(turn);
        let waiting: Vec<_> = queue.waiting().drain(..).collect();
        for active in &waiting {
            let why = format!("project `{project}` {why} before the job started");
            self.inner.cancel_queued(active, why).await;
        }
        let runner = self
            .inner
            .runners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(project);
        let mut interrupted = 0;
        if let Some(mut runner) = runner {
            let finished = tokio::select! {
                done = tokio::time::timeout(grace, &mut runner) => done.is_ok(),
                () = stop.cancelled() => false,
            };
            if !finished {
                for active in self.inner.active_of(project) {
                    active.interrupt(format!("project `{project}` {why} before the job finished"));
                    interrupted += 1;
                }
                let _ = runner.await;
            }
        }
        RemovedJobs {
            cancelled: waiting.len(),
            interrupted,
        }
    }
}
