//! A project whose processes come from its Procfile (see
//! `config::procfile`) gets them anew at every deploy: the `restart` of all
//! its processes (what `deploy` and `rollback` do) first re-reads the
//! Procfile where the app now is, and applies the difference to that
//! project alone: a type added starts, a type removed stops, a changed one
//! is stopped and started anew (no waits: the control task serves every
//! project, and the restart that follows rolls everything onto the new
//! code and waits for readiness, leaving out what the apply just started). A Procfile has at most
//! `procfile.max_types` types (8 by default, 64 at most), so an apply
//! holds the control task for one concurrent stop at most. The other projects, and the rest of the config, are untouched.
//! A Procfile that does not parse fails the restart, so the deploy fails
//! and is rolled back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::Running;
use crate::config;
use crate::control::Control;
use crate::plugins::bindings::{CallError, ProcessInfo, UnixSignal};
use crate::plugins::grants::ProcessControl;
use crate::supervisor::ProcessChanges;

impl Running {
    /// Re-read `project`'s Procfile and apply it to that project alone.
    pub(super) async fn apply_procfile(&mut self, project: &str) -> Result<ProcessChanges, String> {
        let Some(mut pcfg) = self.config.projects.get(project).cloned() else {
            return Err(format!("no project `{project}`"));
        };
        config::apply_procfile(&mut pcfg)?;
        let mut candidate = self.config.clone();
        candidate.projects.insert(project.to_string(), pcfg.clone());
        candidate.validate_again().map_err(|e| e.to_string())?;
        // A changed type is stopped and started anew, never rolled: the
        // restart that follows rolls everything, and this task must not
        // wait on a tenant's readiness checks while others queue behind it.
        let before = &self.config.projects[project].processes;
        let changed: Vec<&str> = pcfg
            .processes
            .iter()
            .filter(|p| p.from_procfile)
            .filter(|p| {
                before
                    .iter()
                    .any(|o| o.from_procfile && o.name == p.name && *o != **p)
            })
            .map(|p| p.name.as_str())
            .collect();
        let without_changed = (!changed.is_empty()).then(|| {
            let mut without = pcfg.clone();
            without
                .processes
                .retain(|p| !changed.contains(&p.name.as_str()));
            without
        });
        let mut changes = ProcessChanges::default();
        for step in without_changed.iter().chain([&pcfg]) {
            let done = self
                .supervisor
                .update_project(project, step, &self.stop)
                .await;
            changes.extend(done.map_err(|e| format!("{e:#}"))?);
        }
        // Recorded whatever failed: the supervisor runs the new list, and
        // an instance that did not take its new spec is compared by its
        // running spec next time, so the next deploy tries it again.
        self.config.projects.insert(project.to_string(), pcfg);
        if !changes.failed.is_empty() {
            return Err(changes.failed.join("; "));
        }
        tracing::info!(
            project,
            added = ?changes.added,
            removed = ?changes.removed,
            restarted = ?changes.restarted,
            "applied the Procfile"
        );
        Ok(changes)
    }
}

/// A project's processes, with the Procfile applied before a restart of all.
pub(super) struct ProcfileProcesses {
    pub(super) inner: Arc<dyn ProcessControl>,
    pub(super) control: Control,
    pub(super) project: String,
}

#[async_trait]
impl ProcessControl for ProcfileProcesses {
    async fn list(&self) -> Vec<ProcessInfo> {
        self.inner.list().await
    }
    async fn start(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        self.inner.start(name).await
    }
    async fn stop(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        self.inner.stop(name).await
    }
    async fn restart(&self, name: Option<&str>) -> Result<Vec<ProcessInfo>, CallError> {
        if name.is_some() {
            return self.inner.restart(name).await;
        }
        let changes = self
            .control
            .procfile(&self.project)
            .await
            .map_err(|e| CallError::Failed(format!("the Procfile: {e}")))?;
        // What the apply just started runs the new code already: the rest
        // restarts, one process name after another, as a restart of all would.
        let fresh: Vec<&str> = changes
            .added
            .iter()
            .chain(&changes.restarted)
            .filter_map(|label| label.split_once('/')?.1.rsplit_once('-'))
            .map(|(name, _)| name)
            .collect();
        if fresh.is_empty() {
            return self.inner.restart(None).await;
        }
        let mut names: Vec<String> = Vec::new();
        for p in self.inner.list().await {
            if !fresh.contains(&p.name.as_str()) && !names.contains(&p.name) {
                names.push(p.name);
            }
        }
        for name in &names {
            self.inner.restart(Some(name)).await?;
        }
        Ok(self.inner.list().await)
    }
    async fn signal(
        &self,
        name: Option<&str>,
        sig: UnixSignal,
    ) -> Result<Vec<ProcessInfo>, CallError> {
        self.inner.signal(name, sig).await
    }
    async fn wait_ready(
        &self,
        name: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<ProcessInfo>, CallError> {
        self.inner.wait_ready(name, timeout).await
    }
}
