//! Applying a reload: validate everything first, then change only what
//! differs.
//!
//! Nothing is touched until the whole new config has parsed and validated
//! (with the settings that need a restart put back), every plugin it names
//! has loaded (an unchanged one is reused, not recompiled) and every new
//! project's identity can be had; otherwise the answer lists every problem
//! and bosun goes on exactly as it was. The one exception is a plugin file
//! inside a project's own dir: the tenant can break it at will, so it is
//! reported as a warning and its action is unavailable, as at startup,
//! rather than letting a tenant block every reload (and so every key
//! revocation). Then, in this order:
//!
//! 0. the keys: a revoked key fails its next request, and its open waits
//!    and streams end (as do those on a project whose project key changed);
//! 1. projects removed, or whose dir, confinement, limits or merged log
//!    changed, leave the API: their queued jobs are cancelled, their
//!    running job gets `shutdown_grace`, their processes stop and their
//!    jails are retired (nothing starts in one again);
//! 2. new projects (and the changed ones again) get a jail, a first
//!    checkout if configured, their processes and a job queue;
//! 3. the new actions and project list are swapped in at once: a request
//!    sees the old set or the new, a running job keeps the plugin it
//!    started with;
//! 4. in kept projects, only instances whose spec changed restart, one at
//!    a time (see `supervisor::reload`); one that does not come up stops
//!    the roll.
//!
//! What fails while applying is in the answer's `failed` and is not
//! recorded as applied, so the next reload of the same file tries again.
//!
//! Settings bosun cannot change while serving (`state_dir`, `server.*`,
//! `jobs.*`, the engine's limits, the global `confinement`) keep the values
//! it started with, and the answer names them.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Running, scope_of};
use crate::backends;
use crate::config::{Config, ProjectConfig};
use crate::confine::Confinement;
use crate::control::{ProjectChanges, ReloadError, ReloadReport};
use crate::supervisor::ProcessChanges;

impl Running {
    /// Re-read the config file and apply it; log and return what changed.
    pub(super) async fn reload(&mut self) -> Result<ReloadReport, ReloadError> {
        let began = Instant::now();
        let result = self.try_reload().await;
        match &result {
            Ok(report) if report.changed => tracing::info!(
                ms = began.elapsed().as_millis() as u64,
                "reloaded: {}",
                serde_json::to_string(report).unwrap_or_default()
            ),
            Ok(_) => tracing::info!("reloaded: nothing changed"),
            Err(e) => tracing::error!("reload refused: {e}"),
        }
        for key in result.iter().flat_map(|r| &r.restart_needed) {
            tracing::warn!(
                key,
                "changed in the config file; only a restart of bosun applies it"
            );
        }
        result
    }

    async fn try_reload(&mut self) -> Result<ReloadReport, ReloadError> {
        let file = Config::load(&self.config.source)
            .map_err(|e| ReloadError::Invalid(vec![e.to_string()]))?;
        let (mut config, restart_needed) = keep_fixed(&self.config, file);
        let warnings = keep_procfile_processes(&self.config, &mut config);
        // The mix of the file and the settings kept must hold as well (a
        // project dir may not overlap the state dir bosun keeps using).
        config
            .validate_again()
            .map_err(|e| ReloadError::Invalid(vec![e.to_string()]))?;
        // Uploads wait while the registry is rebuilt and swapped: none is lost.
        let catalog = self.catalog.clone();
        let _turn = catalog.lock().await;
        let registry = self
            .registry
            .load()
            .reload(&self.engine, &config, &self.config, catalog.store())
            .await;
        // A plugin file in a project's own dir is the tenant's to break: it
        // must not keep the operator from reloading (a revocation, say).
        // Its action is unavailable, as at startup; any other is refused.
        let (plugin_warnings, problems): (Vec<_>, Vec<_>) = registry
            .problems_by_file(&config)
            .into_iter()
            .partition(|(tenant_file, _)| *tenant_file);
        let mut problems: Vec<String> = problems.into_iter().map(|(_, p)| p).collect();
        let old = self.config.clone();
        let removed: BTreeSet<String> = names(&old).difference(&names(&config)).cloned().collect();
        let added: BTreeSet<String> = names(&config).difference(&names(&old)).cloned().collect();
        let rebuilt: BTreeSet<String> = config
            .projects
            .iter()
            .filter(|(name, new)| {
                old.projects
                    .get(*name)
                    .is_some_and(|o| needs_new_jail(o, new))
            })
            .map(|(name, _)| name.clone())
            .collect();
        // The projects that get a jail: new ones, and changed ones anew.
        let mut incoming = config.clone();
        incoming
            .projects
            .retain(|name, _| added.contains(name) || rebuilt.contains(name));
        for (project, report) in Confinement::inspect(&incoming) {
            if let Err(e) = report {
                problems.push(format!(
                    "{}: `projects.{project}.confinement`: {e}",
                    config.source.display()
                ));
            }
        }
        if !problems.is_empty() {
            return Err(ReloadError::Invalid(problems));
        }

        // Keys first: a revocation must not wait for the steps below.
        let keys = self.auth.replace(&config);
        self.hooks.replace(&config);
        let mut report = ReloadReport {
            plugins: registry.changes_from(&self.registry.load()),
            keys,
            restart_needed,
            warnings: plugin_warnings
                .into_iter()
                .map(|(_, w)| w)
                .chain(warnings)
                .collect(),
            projects: ProjectChanges {
                added: added.iter().cloned().collect(),
                removed: removed.iter().cloned().collect(),
                restarted: rebuilt.iter().cloned().collect(),
            },
            ..ReloadReport::default()
        };
        // What is recorded as applied; a part that fails keeps the old.
        let mut applied = config.clone();
        let grace = self.config.server.shutdown_grace;
        let mut handles = (**self.projects.load()).clone();
        // 1. Out: removed projects, and changed ones before their new jail;
        //    the jobs of either may not run on in the old jail.
        for project in removed.iter().chain(&rebuilt) {
            handles.remove(project);
            self.projects.store(handles.clone().into());
            let gone = removed.contains(project);
            let why = if gone {
                "was removed from the config"
            } else {
                "had its confinement set up anew by a reload"
            };
            let jobs = self
                .jobs
                .remove_project(project, why, grace, &self.stop)
                .await;
            report.jobs_cancelled += jobs.cancelled;
            report.jobs_interrupted += jobs.interrupted;
            let stopped = self.supervisor.remove_project(project, gone).await;
            if gone {
                report.processes.removed.extend(stopped);
            }
            self.confinement.remove(project);
        }
        // 2. In: new projects, and changed ones in their new jail.
        for project in incoming.projects.keys() {
            // Handing the dir over walks it: off the async threads.
            let set_up = tokio::task::block_in_place(|| self.confinement.add(&config, project));
            if let Err(e) = set_up {
                report
                    .failed
                    .push(format!("{project}: setting up its confinement: {e}"));
            }
        }
        // Every jail sees what the new config protects (a new project's
        // dir among it) from its next program on, before anything starts.
        self.confinement.refresh(&config);
        let checkouts = backends::clone_missing(&incoming, &self.confinement);
        self.checkouts.retain(|_, c| !c.is_done());
        self.checkouts.extend(checkouts.clone());
        for (project, pcfg) in &incoming.projects {
            let checkout = checkouts.get(project).cloned();
            let started = self
                .supervisor
                .add_project(project, pcfg, checkout.clone())
                .map_err(|e| format!("{e:#}"))
                .and_then(|handle| {
                    let scope = scope_of(
                        &config,
                        project,
                        &self.confinement,
                        handle.clone(),
                        &self.control,
                    )
                    .ok_or_else(|| "it has no jail".to_string())?;
                    Ok((handle, scope))
                });
            let (handle, scope) = match started {
                Ok(started) => started,
                Err(e) => {
                    report.failed.push(format!("{project}: starting it: {e}"));
                    // Not recorded: the next reload tries again.
                    applied.projects.remove(project);
                    continue;
                }
            };
            if added.contains(project) {
                report.processes.added.extend(
                    handle
                        .list()
                        .iter()
                        .map(|s| format!("{project}/{}-{}", s.name, s.instance)),
                );
            }
            self.jobs.add_project(project, scope, checkout);
            handles.insert(project.clone(), handle);
        }
        // 3. The new actions and project list, at once.
        self.registry.store(registry.into());
        catalog.replace_config(&config);
        self.projects.store(handles.into());
        // 4. Kept projects: what their plugins may reach, and the processes
        //    whose spec changed.
        for (project, pcfg) in &config.projects {
            let Some(before) = old.projects.get(project) else {
                continue;
            };
            if incoming.projects.contains_key(project) || before == pcfg {
                continue;
            }
            if let Some(handle) = self.supervisor.project(project)
                && let Some(scope) =
                    scope_of(&config, project, &self.confinement, handle, &self.control)
            {
                self.jobs.set_scope(project, scope);
            }
            if before.processes == pcfg.processes {
                continue;
            }
            let changes = self
                .supervisor
                .update_project(project, pcfg, &self.stop)
                .await
                .unwrap_or_else(|e| ProcessChanges {
                    failed: vec![format!("{project}: {e:#}")],
                    ..ProcessChanges::default()
                });
            if !changes.failed.is_empty()
                && let Some(recorded) = applied.projects.get_mut(project)
            {
                // The next reload with the same file finishes the roll.
                recorded.processes.clone_from(&before.processes);
            }
            report.processes.extend(changes);
        }
        report.failed.append(&mut report.processes.failed);
        report.changed = self.config != config;
        self.config = applied;
        Ok(report)
    }
}

fn names(config: &Config) -> BTreeSet<String> {
    config.projects.keys().cloned().collect()
}

/// Whether a kept project's change reaches its jail or its log writer, so
/// that it is set up anew and every process restarts.
fn needs_new_jail(old: &ProjectConfig, new: &ProjectConfig) -> bool {
    old.dir != new.dir
        || old.confinement != new.confinement
        || old.limits != new.limits
        || old.unconfined != new.unconfined
        || old.merged_log != new.merged_log
        || old.merged_log_max_size != new.merged_log_max_size
        || old.merged_log_keep != new.merged_log_keep
}

/// `file` with every setting that needs a restart as in `running`, and the
/// keys of those that differ.
pub(super) fn keep_fixed(running: &Config, mut file: Config) -> (Config, Vec<String>) {
    let mut fixed = Vec::new();
    macro_rules! keep {
        ($key:literal, $($field:ident).+) => {
            if file.$($field).+ != running.$($field).+ {
                fixed.push($key.to_string());
                file.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    keep!("state_dir", state_dir);
    keep!("server.listen", server.listen);
    keep!("server.tls", server.tls);
    keep!("server.max_body", server.max_body);
    keep!("server.read_timeout", server.read_timeout);
    keep!("server.max_wait", server.max_wait);
    keep!(
        "server.max_concurrent_requests",
        server.max_concurrent_requests
    );
    keep!("server.max_connections", server.max_connections);
    keep!(
        "server.max_connections_per_address",
        server.max_connections_per_address
    );
    keep!("server.max_long_requests", server.max_long_requests);
    keep!(
        "server.max_long_requests_per_key",
        server.max_long_requests_per_key
    );
    keep!("server.auth_fail_limit", server.auth_fail_limit);
    keep!("server.auth_fail_window", server.auth_fail_window);
    keep!("server.shutdown_grace", server.shutdown_grace);
    keep!("jobs", jobs);
    keep!("plugins.max_concurrent_runs", plugins.max_concurrent_runs);
    keep!("plugins.max_memory", plugins.max_memory);
    keep!("plugins.pooling", plugins.pooling);
    keep!("confinement", confinement);
    (file, fixed)
}

/// A project's Procfile processes change with its deploys, not with a
/// reload: a reload keeps the ones running unless the project's Procfile
/// settings (or where its app is) changed. Then the file is read anew; one
/// that does not parse keeps them too, with a warning (the file is the
/// tenant's, and must not block the operator's reload). A kept process
/// whose name the config now gives another process goes, with a warning.
pub(super) fn keep_procfile_processes(old: &Config, new: &mut Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let problems = std::mem::take(&mut new.procfile_problems);
    for (name, project) in &mut new.projects {
        let Some(before) = old.projects.get(name) else {
            if let Some(problem) = problems.get(name) {
                warnings.push(format!("projects.{name}.procfile: {problem}"));
            }
            continue;
        };
        let same = before.procfile == project.procfile
            && before.path == project.path
            && before.deploy.releases == project.deploy.releases;
        match problems.get(name) {
            Some(problem) => warnings.push(format!(
                "projects.{name}.procfile: {problem}; its processes are kept"
            )),
            None if !same => continue,
            None => {}
        }
        project.processes.retain(|p| !p.from_procfile);
        let kept: Vec<_> = before
            .processes
            .iter()
            .filter(|p| p.from_procfile)
            .cloned()
            .collect();
        for process in kept {
            if project.processes.iter().any(|p| p.name == process.name) {
                warnings.push(format!(
                    "projects.{name}: the Procfile's `{}` stops: the config names a process so",
                    process.name
                ));
                continue;
            }
            project.processes.push(process);
        }
    }
    warnings
}
