//! Changing one project's actions while serving: a team's uploads, their
//! rollbacks and removal, and the plugins a team keeps in its repository,
//! picked up again after each job of the project.
//!
//! Every change is checked before anything is replaced: the component is
//! compiled within the budget (see `compile`), linked against the contract
//! and its `describe()` called, and only then stored and swapped into the
//! registry in one step. A job takes the registry as it starts, so a
//! running job finishes on the version it started with and the next gets
//! the new one. Changes (and reloads, which rebuild the registry) take
//! [`Catalog::lock`] in turn, so none is lost to another.

use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Mutex, MutexGuard};

use super::bindings::ActionMeta;
use super::engine::Engine;
use super::engine::REFUSED_BEFORE;
use super::registry::{self, ActionRegistry, Actions, LoadedAction, Source};
use super::uploads::{History, MAX_ACTIONS, UploadStore, Version};
use crate::config::{ActionConfig, Config};

/// Why a change to a project's actions was refused. Nothing was replaced.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The project is not in the config.
    #[error("no project `{0}`")]
    NoProject(String),
    /// The project's config does not allow uploads.
    #[error(
        "project `{0}` does not take uploaded actions (its config does not set `allow_uploads = true`)"
    )]
    NotAllowed(String),
    /// The config gives the name an action that may not be replaced.
    #[error(
        "`{0}` is an action of the project's config, and its config does not make it `replaceable`"
    )]
    NotReplaceable(String),
    /// The component is over `max_plugin_size`.
    #[error("the component is {size} bytes, more than `plugins.max_plugin_size` ({max} bytes)")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// A reload revoked the caller's key (or the project's) meanwhile.
    #[error("the key (or the project key) was revoked while the change was being made")]
    Revoked,
    /// The project has its most uploaded actions.
    #[error("the project has {0} uploaded actions, the most it may have; remove one first")]
    TooMany(usize),
    /// The component is not a plugin bosun can run.
    #[error("{0}")]
    Invalid(String),
    /// The action has no uploaded versions.
    #[error("the action `{0}` has no uploaded versions")]
    NotUploaded(String),
    /// The action has no such kept version.
    #[error("the action `{action}` has no uploaded version {version} (kept: {kept})")]
    NoVersion {
        /// The action.
        action: String,
        /// The version asked for.
        version: u32,
        /// The versions kept.
        kept: String,
    },
    /// The state dir could not be read or written.
    #[error("the upload store: {0:#}")]
    Store(anyhow::Error),
}

/// What an upload or rollback put in service.
#[derive(Debug, Clone)]
pub struct InService {
    /// The version.
    pub version: Version,
    /// Its description.
    pub meta: ActionMeta,
    /// Whether the upload added a version (false: it was the one in
    /// service already).
    pub added: bool,
}

/// See the module docs.
pub struct Catalog {
    engine: Engine,
    registry: Actions,
    store: UploadStore,
    config: ArcSwap<Config>,
    writes: Mutex<()>,
}

impl Catalog {
    /// A catalog over the registry in use.
    pub fn new(engine: Engine, registry: Actions, store: UploadStore, config: &Config) -> Self {
        Self {
            engine,
            registry,
            store,
            config: ArcSwap::from_pointee(config.clone()),
            writes: Mutex::new(()),
        }
    }

    /// The upload store.
    pub fn store(&self) -> &UploadStore {
        &self.store
    }

    /// Take the turn to change the registry (a reload holds it while it
    /// rebuilds and swaps).
    pub async fn lock(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Use `config` from now on (after a reload, under [`Catalog::lock`]).
    pub fn replace_config(&self, config: &Config) {
        self.config.store(Arc::new(config.clone()));
    }

    /// The largest component an upload may be.
    pub fn max_plugin_size(&self) -> u64 {
        self.config.load().plugins.max_plugin_size.as_u64()
    }

    /// Check `project` takes uploads named `action`; the action's config,
    /// when the config has one.
    fn may_upload(
        &self,
        project: &str,
        action: &str,
    ) -> Result<Option<ActionConfig>, CatalogError> {
        let config = self.config.load();
        let pcfg = config
            .projects
            .get(project)
            .ok_or_else(|| CatalogError::NoProject(project.into()))?;
        if !pcfg.allow_uploads {
            return Err(CatalogError::NotAllowed(project.into()));
        }
        match pcfg.actions.0.get(action) {
            Some(a) if !a.replaceable => Err(CatalogError::NotReplaceable(action.into())),
            configured => Ok(configured.cloned()),
        }
    }

    /// Check, store and put in service `wasm` as the newest version of
    /// `project`'s `action`, for a caller whose key is revoked once
    /// `revoked()` says so. Reloads replace keys holding [`Catalog::lock`],
    /// so the check made under it is exact: a revoked key changes nothing.
    pub async fn upload(
        &self,
        project: &str,
        action: &str,
        wasm: &[u8],
        by: &str,
        revoked: &(dyn Fn() -> bool + Sync),
    ) -> Result<InService, CatalogError> {
        self.may_upload(project, action)?;
        let max = self.max_plugin_size();
        if wasm.len() as u64 > max {
            return Err(CatalogError::TooLarge {
                size: wasm.len() as u64,
                max,
            });
        }
        let plugin = self
            .engine
            .load_offered(action, wasm)
            .await
            .map_err(|e| CatalogError::Invalid(e.reason))?;
        let hash: [u8; 32] = Sha256::digest(wasm).into();
        let _turn = self.lock().await;
        // A reload may have changed the keys or what the project allows.
        if revoked() {
            return Err(CatalogError::Revoked);
        }
        let configured = self.may_upload(project, action)?;
        if let Some(pcfg) = self.config.load().projects.get(project) {
            self.store
                .claim(project, &pcfg.dir)
                .map_err(CatalogError::Store)?;
        }
        let history = self.history(project, action)?;
        if history.is_none() {
            let have = self
                .store
                .project(project)
                .map_err(CatalogError::Store)?
                .len();
            if have >= MAX_ACTIONS {
                return Err(CatalogError::TooMany(have));
            }
        }
        if let Some(current) = history.as_ref().and_then(History::current)
            && current.sha256 == hex::encode(hash)
        {
            return Ok(InService {
                version: current.clone(),
                meta: plugin.meta().clone(),
                added: false,
            });
        }
        let version = self
            .store
            .add(project, action, wasm, by, &plugin.meta().summary)
            .map_err(CatalogError::Store)?;
        let meta = plugin.meta().clone();
        let acfg = configured.unwrap_or_default();
        let source = Source::Upload(version.version);
        self.swap(project, action, (plugin, hash), &acfg, source);
        tracing::info!(
            project,
            action,
            version = version.version,
            by,
            "action uploaded"
        );
        Ok(InService {
            version,
            meta,
            added: true,
        })
    }

    /// Put a kept version back in service: `version`, or the one before
    /// the version in service.
    pub async fn rollback(
        &self,
        project: &str,
        action: &str,
        version: Option<u32>,
        revoked: &(dyn Fn() -> bool + Sync),
    ) -> Result<InService, CatalogError> {
        self.may_upload(project, action)?;
        let history = self
            .history(project, action)?
            .ok_or_else(|| CatalogError::NotUploaded(action.into()))?;
        let target = version.or_else(|| {
            history
                .versions
                .iter()
                .map(|v| v.version)
                .filter(|v| *v < history.current)
                .max()
        });
        let found = target.and_then(|t| history.versions.iter().find(|v| v.version == t));
        let Some(found) = found.cloned() else {
            return Err(CatalogError::NoVersion {
                action: action.into(),
                version: target.unwrap_or(0),
                kept: kept(&history),
            });
        };
        let wasm = self.store.component(&found).map_err(CatalogError::Store)?;
        // Compiled and described before the turn is taken: a slow one
        // holds up no reload and no other project.
        let plugin = self
            .engine
            .load_offered(action, &wasm)
            .await
            .map_err(|e| CatalogError::Invalid(e.reason))?;
        let _turn = self.lock().await;
        if revoked() {
            return Err(CatalogError::Revoked);
        }
        let configured = self.may_upload(project, action)?;
        let still_kept = self
            .history(project, action)?
            .is_some_and(|h| h.versions.contains(&found));
        if !still_kept {
            return Err(CatalogError::NotUploaded(action.into()));
        }
        self.store
            .set_current(project, action, found.version)
            .map_err(CatalogError::Store)?;
        let meta = plugin.meta().clone();
        let hash = Sha256::digest(&wasm).into();
        let acfg = configured.unwrap_or_default();
        let source = Source::Upload(found.version);
        self.swap(project, action, (plugin, hash), &acfg, source);
        tracing::info!(
            project,
            action,
            version = found.version,
            "action rolled back"
        );
        Ok(InService {
            version: found,
            meta,
            added: false,
        })
    }

    /// Forget every uploaded version of `project`'s `action`. The config's
    /// action of that name, if any, is in service again (or recorded as
    /// failing to load, with why).
    pub async fn remove(
        &self,
        project: &str,
        action: &str,
        revoked: &(dyn Fn() -> bool + Sync),
    ) -> Result<(), CatalogError> {
        self.may_upload(project, action)?;
        if self.history(project, action)?.is_none() {
            return Err(CatalogError::NotUploaded(action.into()));
        }
        // The config's own action of that name, loaded before the turn.
        let config = self.config.load_full();
        let from_config = ActionRegistry::load_one(&self.engine, &config, project, action).await;
        let _turn = self.lock().await;
        if revoked() {
            return Err(CatalogError::Revoked);
        }
        self.may_upload(project, action)?;
        if !self
            .store
            .remove(project, action)
            .map_err(CatalogError::Store)?
        {
            return Err(CatalogError::NotUploaded(action.into()));
        }
        let next = self
            .registry
            .load()
            .with_entry_of(&from_config, project, action);
        self.registry.store(Arc::new(next));
        tracing::info!(project, action, "uploaded action removed");
        Ok(())
    }

    /// The uploaded versions of `project`'s `action`.
    pub fn versions(&self, project: &str, action: &str) -> Result<History, CatalogError> {
        if !self.config.load().projects.contains_key(project) {
            return Err(CatalogError::NoProject(project.into()));
        }
        self.history(project, action)?
            .ok_or_else(|| CatalogError::NotUploaded(action.into()))
    }

    /// The versions of `project`'s `action`, if they were made for the
    /// project of that name in the config now.
    fn history(&self, project: &str, action: &str) -> Result<Option<History>, CatalogError> {
        if let Some(pcfg) = self.config.load().projects.get(project)
            && !self
                .store
                .owned_by(project, &pcfg.dir)
                .map_err(CatalogError::Store)?
        {
            return Ok(None);
        }
        self.store
            .history(project, action)
            .map_err(CatalogError::Store)
    }

    /// Put `plugin` in service as `project`'s `action`, with the limits of
    /// its config (`acfg`) and `source`.
    fn swap(
        &self,
        project: &str,
        action: &str,
        (plugin, hash): (super::Plugin, [u8; 32]),
        acfg: &ActionConfig,
        source: Source,
    ) {
        let entry = LoadedAction {
            plugin,
            limits: registry::limits(acfg, &self.config.load().plugins),
            hash,
            source,
        };
        let next = self.registry.load().with(project, action, Some(entry));
        self.registry.store(Arc::new(next));
    }

    /// Load again each of `project`'s repository plugins whose file a job
    /// changed. One that does not load keeps the version in service; what
    /// happened goes to `log` (the job's log) either way.
    pub async fn refresh_repo(&self, project: &str, log: &(dyn Fn(String) + Send + Sync)) {
        let config = self.config.load_full();
        let Some(pcfg) = config.projects.get(project) else {
            return;
        };
        let max = config.plugins.max_plugin_size.as_u64();
        for (action, acfg) in &pcfg.actions.0 {
            let Some(rel) = &acfg.repo_path else {
                continue;
            };
            let before = match self.registry.load().get(project, action) {
                // An upload took this action's place: the file is not used.
                Some(Ok(loaded)) if matches!(loaded.source, Source::Upload(_)) => continue,
                Some(Ok(loaded)) => Some(loaded.hash),
                _ => None,
            };
            let read = registry::read_repo_component(rel, pcfg, max)
                .map(|wasm| (Sha256::digest(&wasm).into(), wasm));
            let loaded = match read {
                Ok((hash, _)) if before == Some(hash) => continue,
                // Unreadable before and now: nothing new to say.
                Err(_) if before.is_none() => continue,
                Ok((hash, wasm)) => self
                    .engine
                    .load_within_budget(action, &wasm)
                    .await
                    .map(|plugin| (plugin, hash))
                    .map_err(|e| e.reason),
                Err(reason) => Err(reason),
            };
            let _turn = self.lock().await;
            // Only if nothing changed it meanwhile (an upload, a reload).
            let config_now = self.config.load();
            let same_action = config_now
                .projects
                .get(project)
                .and_then(|p| p.actions.0.get(action))
                .is_some_and(|a| a.repo_path.as_ref() == Some(rel));
            let now = match self.registry.load().get(project, action) {
                Some(Ok(loaded)) => Some((loaded.hash, loaded.source)),
                _ => None,
            };
            let same_entry = match now {
                Some((hash, Source::Repo)) => before == Some(hash),
                Some(_) => false,
                None => before.is_none(),
            };
            if !same_action || !same_entry {
                continue;
            }
            match loaded {
                Ok((plugin, hash)) => {
                    self.swap(project, action, (plugin, hash), acfg, Source::Repo);
                    log(format!(
                        "bosun: action `{action}` now runs the new {} (sha256 {})",
                        rel.display(),
                        &hex::encode(hash)[..12]
                    ));
                    tracing::info!(project, action, "repository plugin loaded again");
                }
                // Said when it was refused: nothing new to say.
                Err(reason) if reason.starts_with(REFUSED_BEFORE) => {}
                Err(reason) => {
                    let kept = match before {
                        Some(_) => "keeps the version that loaded before",
                        None => "stays unavailable",
                    };
                    log(format!(
                        "bosun: {} changed but does not load, so action `{action}` {kept}: {reason}",
                        rel.display()
                    ));
                    tracing::warn!(project, action, "repository plugin does not load: {reason}");
                }
            }
        }
    }
}

fn kept(history: &History) -> String {
    history
        .versions
        .iter()
        .map(|v| v.version.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
