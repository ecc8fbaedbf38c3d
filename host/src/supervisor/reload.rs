//! A reload, as the supervisor applies it: projects added and removed, and
//! in a kept project only the instances whose spec changed restart.
//!
//! An instance is matched to its successor by label (`<name>-<instance>`,
//! also its persisted key). Same label and same spec: the worker, the pid,
//! the log and the restart count are untouched. Same label, another spec:
//! the old worker stops by its own rules and a new one starts in its place,
//! keeping its status and log (a follower sees one process that
//! restarted); an instance with sockets is instead handed the new spec by
//! its own worker, which replaces the process new first (see `replace`),
//! so a bad new spec leaves the old process serving. Several such instances
//! restart one at a time, each waiting for the one before to be running
//! (ready, when it has a check), so a process with two instances is never
//! wholly down.

use std::sync::{Arc, PoisonError};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::handle::{Instance, until_up};
use super::spec::InstanceSpec;
use super::worker::Order;
use super::{Begin, Supervisor, numbered, stop_all};
use crate::config::{ProcessConfig, ProjectConfig};

/// What a reload did to processes, as `project/<name>-<instance>`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProcessChanges {
    /// Instances started because they are new in the config.
    pub added: Vec<String>,
    /// Instances stopped because they are gone from the config.
    pub removed: Vec<String>,
    /// Instances restarted because their spec changed.
    pub restarted: Vec<String>,
    /// What could not be done, and why.
    pub failed: Vec<String>,
}

impl ProcessChanges {
    /// Add `other`'s changes to these.
    pub fn extend(&mut self, other: ProcessChanges) {
        self.added.extend(other.added);
        self.removed.extend(other.removed);
        self.restarted.extend(other.restarted);
        self.failed.extend(other.failed);
    }
}

impl Supervisor {
    /// Stop every process of `project` by its own rules and drop the
    /// project; with `forget`, also what it should run (a project removed,
    /// not one set up anew). Returns the instances stopped.
    pub(crate) async fn remove_project(&mut self, project: &str, forget: bool) -> Vec<String> {
        let Some(entry) = self.projects.remove(project) else {
            return Vec::new();
        };
        let instances = entry.handle.instances.swap(Arc::new(Vec::new()));
        self.retire(&instances, forget).await;
        self.workers.retain(|w| !w.is_finished());
        instances.iter().map(label).collect()
    }

    /// Bring a kept project's processes in line with `pcfg`: start the new
    /// instances, stop the removed, restart the changed one at a time. A
    /// restarted instance that does not come up stops the roll: the
    /// instances not yet restarted keep running as they were, and the
    /// changes say which failed. `stop` (bosun stopping) cuts the waits.
    pub(crate) async fn update_project(
        &mut self,
        project: &str,
        pcfg: &ProjectConfig,
        stop: &CancellationToken,
    ) -> anyhow::Result<ProcessChanges> {
        let jail = self
            .confinement
            .jail(project)
            .ok_or_else(|| anyhow::anyhow!("project `{project}` has no jail"))?;
        let Some(mut entry) = self.projects.remove(project) else {
            anyhow::bail!("project `{project}` is not supervised");
        };
        let old = entry.handle.instances.load_full();
        let mut changes = ProcessChanges::default();
        let mut list = Vec::new();
        let mut changed = Vec::new();
        for (process, i) in numbered(pcfg) {
            let spec = Arc::new(InstanceSpec::new(
                jail.clone(),
                process,
                i,
                &self.state_dir,
                &self.sockets,
            ));
            match old.iter().find(|o| o.spec.label == spec.label) {
                Some(same) if same_spec(&same.spec, &spec) => list.push(same.clone()),
                Some(before) => {
                    changed.push((list.len(), spec));
                    list.push(before.clone());
                }
                None => {
                    let start = self.persist.desired(&spec).unwrap_or(process.autostart);
                    let begin = Begin {
                        start,
                        ..Begin::default()
                    };
                    let new = self.spawn_instance(&mut entry, pcfg, spec, begin);
                    changes.added.push(label(&new));
                    list.push(new);
                }
            }
        }
        let gone: Vec<Instance> = old
            .iter()
            .filter(|o| !list.iter().any(|n| n.spec.label == o.spec.label))
            .cloned()
            .collect();
        entry.handle.instances.store(Arc::new(list.clone()));
        self.retire(&gone, true).await;
        changes.removed = gone.iter().map(label).collect();
        for (at, spec) in changed {
            if !changes.failed.is_empty() || stop.is_cancelled() {
                break;
            }
            let before = list[at].clone();
            if respawnable(&before.spec, &spec) {
                match respawn(&before, spec.clone(), stop).await {
                    Ok(()) => {
                        list[at] = Instance { spec, ..before };
                        entry.handle.instances.store(Arc::new(list.clone()));
                        changes.restarted.push(label(&list[at]));
                    }
                    Err(why) => changes.failed.push(format!(
                        "{}: {why}; the instances not yet restarted keep their old settings",
                        label(&before)
                    )),
                }
                continue;
            }
            stop_all(std::slice::from_ref(&before)).await;
            let start = self.persist.desired(&spec).unwrap_or(spec.config.autostart);
            let begin = Begin {
                start,
                replaces: Some(&before),
                ..Begin::default()
            };
            let new = self.spawn_instance(&mut entry, pcfg, spec, begin);
            list[at] = new.clone();
            entry.handle.instances.store(Arc::new(list.clone()));
            changes.restarted.push(label(&new));
            if start {
                let up = tokio::select! {
                    up = until_up(&new) => up,
                    () = stop.cancelled() => Ok(()),
                };
                if let Err(e) = up {
                    changes.failed.push(format!(
                        "{}: {e}; the instances not yet restarted keep their old settings",
                        label(&new)
                    ));
                }
            }
        }
        self.projects.insert(project.to_string(), entry);
        self.workers.retain(|w| !w.is_finished());
        Ok(changes)
    }

    /// Stop `instances` for good: their processes, their place in the
    /// sampler's list and, with `forget`, their desired state.
    async fn retire(&self, instances: &[Instance], forget: bool) {
        stop_all(instances).await;
        for inst in instances.iter().filter(|_| forget) {
            self.persist.forget(&inst.spec);
        }
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| !instances.iter().any(|i| Arc::ptr_eq(s, &i.status)));
    }
}

/// Whether `new` can replace `old` in its worker, the new process first:
/// both hold sockets, and what the worker's log sink was made of (the log
/// file and its rotation, the line options, a log readiness pattern) is the
/// same.
fn respawnable(old: &InstanceSpec, new: &InstanceSpec) -> bool {
    let (a, b) = (&old.config, &new.config);
    let pattern = |c: &ProcessConfig| c.ready.as_ref().and_then(|r| r.log.clone());
    old.sockets.any()
        && new.sockets.any()
        && old.log_file == new.log_file
        && (a.log_max_size, a.log_keep, a.strip_ansi, a.timestamps)
            == (b.log_max_size, b.log_keep, b.strip_ansi, b.timestamps)
        && pattern(a) == pattern(b)
}

/// Have `inst`'s worker run `spec`, new process first; `stop` (bosun
/// stopping) ends the wait.
async fn respawn(
    inst: &Instance,
    spec: Arc<InstanceSpec>,
    stop: &CancellationToken,
) -> Result<(), String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if inst.commands.send(Order::Respawn(spec, tx)).await.is_err() {
        return Err("its worker has ended".into());
    }
    tokio::select! {
        reply = rx => reply.unwrap_or_else(|_| Err("its worker has ended".into())),
        () = stop.cancelled() => Err("bosun is stopping".into()),
    }
}

/// Whether an instance may keep running through a reload: the same
/// settings (the instance count aside, which only adds or removes
/// instances) and the same log file.
fn same_spec(old: &InstanceSpec, new: &InstanceSpec) -> bool {
    let bare = |c: &ProcessConfig| ProcessConfig {
        instances: 0,
        ..c.clone()
    };
    bare(&old.config) == bare(&new.config) && old.log_file == new.log_file
}

fn label(inst: &Instance) -> String {
    format!("{}/{}", inst.spec.project, inst.spec.label)
}
