//! Every project's actions, loaded from config.
//!
//! Loading never fails as a whole: a plugin that cannot be read or does not
//! fit the contract is recorded with its error, and the rest of the server
//! carries on; running that action reports the error. Identical components
//! (the same stock plugin in ten projects) are compiled and linked once and
//! share one `InstancePre`.
//!
//! A reload builds a new registry beside the one in use
//! ([`ActionRegistry::reload`]), reusing every plugin whose bytes did not
//! change, and swaps it in whole ([`Actions`]): a job takes the registry
//! as it starts, so a running job finishes on the code it started with and
//! the next one gets the new.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::engine::{Engine, LoadError, Plugin};
use super::failure::RunLimits;
use super::uploads::UploadStore;
use crate::config::{
    ActionConfig, CURRENT, Config, PluginSettings, ProjectConfig, lexical, resolved,
};
use crate::stock;

/// Where an action's component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Built into bosun.
    Stock,
    /// The operator's file (`path` in the config).
    File,
    /// The project's own repository (`repo_path`).
    Repo,
    /// Uploaded over the API; this version of its history.
    Upload(u32),
}

/// One loadable action of one project.
#[derive(Clone)]
pub struct LoadedAction {
    /// The linked plugin.
    pub plugin: Plugin,
    /// Its limits, from the action's config or the engine-wide defaults.
    pub limits: RunLimits,
    /// The SHA-256 of its component's bytes.
    pub hash: [u8; 32],
    /// Where it came from.
    pub source: Source,
}

/// All actions of all projects, each loaded or with the reason it is not.
#[derive(Default, Clone)]
pub struct ActionRegistry {
    actions: BTreeMap<(String, String), Result<LoadedAction, Arc<LoadError>>>,
}

/// The registry in use, swapped whole by a reload. Cheap to clone.
pub type Actions = Arc<ArcSwap<ActionRegistry>>;

/// What a reload changes among the actions, as `project/action`.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PluginChanges {
    /// Actions new in the config.
    pub added: Vec<String>,
    /// Actions gone from the config.
    pub removed: Vec<String>,
    /// Actions whose component changed (or that load now, or no longer).
    pub replaced: Vec<String>,
}

type Known = HashMap<[u8; 32], Result<Plugin, String>>;

impl ActionRegistry {
    /// Load every action of every project in `config`.
    pub async fn load(engine: &Engine, config: &Config) -> Self {
        Self::load_where(engine, config, &mut HashMap::new(), |_, _| true).await
    }

    /// Load every action of `config` and, for projects that allow uploads,
    /// the uploaded ones in `store`.
    pub async fn load_serving(engine: &Engine, config: &Config, store: &UploadStore) -> Self {
        let mut known = HashMap::new();
        let mut registry = Self::load_where(engine, config, &mut known, |_, _| true).await;
        registry
            .add_uploads(engine, config, store, &mut known)
            .await;
        registry
    }

    /// [`ActionRegistry::load_serving`], reusing each plugin of `self`
    /// whose component is byte for byte the same (no compile, no cache
    /// read). A repository plugin in service whose place in the config
    /// (`old` → `config`) did not change is kept as it is, with the new
    /// limits, unread: the tenant rewrites that file at will, and a reload
    /// (a key's revocation, say) must not wait on compiling it. The next
    /// job of the project picks up what changed (see `catalog`).
    pub async fn reload(
        &self,
        engine: &Engine,
        config: &Config,
        old: &Config,
        store: &UploadStore,
    ) -> Self {
        let mut known = self
            .actions
            .values()
            .filter_map(|a| a.as_ref().ok())
            .map(|a| (a.hash, Ok(a.plugin.clone())))
            .collect();
        let kept = |project: &str, action: &str| -> Option<LoadedAction> {
            let in_service = self.get(project, action)?.ok()?;
            let (new, was) = (config.projects.get(project)?, old.projects.get(project)?);
            let (acfg, before) = (new.actions.0.get(action)?, was.actions.0.get(action)?);
            let same_place = acfg.repo_path.is_some()
                && acfg.repo_path == before.repo_path
                && new.dir == was.dir
                && new.deploy.releases.is_some() == was.deploy.releases.is_some();
            (in_service.source == Source::Repo && same_place).then(|| LoadedAction {
                limits: limits(acfg, &config.plugins),
                ..in_service.clone()
            })
        };
        let mut registry =
            Self::load_where(engine, config, &mut known, |p, a| kept(p, a).is_none()).await;
        for (project, pcfg) in &config.projects {
            for action in pcfg.actions.0.keys() {
                if let Some(entry) = kept(project, action) {
                    registry
                        .actions
                        .insert((project.clone(), action.clone()), Ok(entry));
                }
            }
        }
        registry
            .add_uploads(engine, config, store, &mut known)
            .await;
        registry
    }

    /// Load only `project`'s `action` (what `bosun exec` runs): the other
    /// plugins are neither compiled nor reported.
    pub async fn load_one(engine: &Engine, config: &Config, project: &str, action: &str) -> Self {
        Self::load_where(engine, config, &mut HashMap::new(), |p, a| {
            p == project && a == action
        })
        .await
    }

    async fn load_where(
        engine: &Engine,
        config: &Config,
        by_hash: &mut Known,
        wanted: impl Fn(&str, &str) -> bool,
    ) -> Self {
        let mut actions = BTreeMap::new();
        for (project, pcfg) in &config.projects {
            for (action, acfg) in &pcfg.actions.0 {
                if !wanted(project, action) {
                    continue;
                }
                let source = match (&acfg.path, &acfg.repo_path) {
                    (_, Some(_)) => Source::Repo,
                    (Some(_), None) => Source::File,
                    (None, None) => Source::Stock,
                };
                // A file the tenant can write is the tenant's, whoever named it.
                let teams = match &acfg.path {
                    Some(path) => tenant_dir(path, config).is_some(),
                    None => source == Source::Repo,
                };
                let loaded = match read_component(action, acfg, pcfg, config) {
                    Err(reason) => Err(reason),
                    Ok(bytes) => load_known(engine, action, &bytes, teams, by_hash).await,
                };
                let entry = loaded
                    .map(|(plugin, hash)| LoadedAction {
                        plugin,
                        limits: limits(acfg, &config.plugins),
                        hash,
                        source,
                    })
                    .map_err(|reason| load_error(project, action, reason));
                actions.insert((project.clone(), action.clone()), entry);
            }
        }
        Self { actions }
    }

    /// Put the uploaded actions in service over the config's, for each
    /// project that allows uploads. An upload whose name the config now
    /// gives an action that is not `replaceable` stays stored, unused.
    async fn add_uploads(
        &mut self,
        engine: &Engine,
        config: &Config,
        store: &UploadStore,
        known: &mut Known,
    ) {
        for (project, pcfg) in config.projects.iter().filter(|(_, p)| p.allow_uploads) {
            if !store.owned_by(project, &pcfg.dir).unwrap_or(false) {
                tracing::warn!(
                    project = %project,
                    "uploaded actions made for another project of this name (at another dir) are not used"
                );
                continue;
            }
            let uploaded = store.project(project).unwrap_or_else(|e| {
                tracing::error!(project = %project, "reading uploaded actions: {e:#}");
                Vec::new()
            });
            for (action, history) in uploaded {
                let configured = pcfg.actions.0.get(&action);
                if configured.is_some_and(|a| !a.replaceable) {
                    tracing::warn!(
                        project = %project,
                        action = %action,
                        "an uploaded action is not used: the config gives this name an action that is not `replaceable`"
                    );
                    continue;
                }
                let Some(version) = history.current() else {
                    continue;
                };
                let loaded = match store.component(version) {
                    Err(e) => Err(format!("uploaded version {}: {e:#}", version.version)),
                    Ok(bytes) => load_known(engine, &action, &bytes, true, known).await,
                };
                let entry = match loaded {
                    Ok((plugin, hash)) => Ok(LoadedAction {
                        plugin,
                        limits: limits(
                            configured.unwrap_or(&ActionConfig::default()),
                            &config.plugins,
                        ),
                        hash,
                        source: Source::Upload(version.version),
                    }),
                    // The config's own action stays in service.
                    Err(reason) if configured.is_some() => {
                        load_error(project, &action, reason);
                        continue;
                    }
                    Err(reason) => Err(load_error(project, &action, reason)),
                };
                self.actions.insert((project.clone(), action), entry);
            }
        }
    }

    /// This registry with `project`'s `action` as `other` has it (loaded,
    /// failed, or absent).
    pub fn with_entry_of(&self, other: &ActionRegistry, project: &str, action: &str) -> Self {
        let mut next = self.clone();
        let key = (project.to_string(), action.to_string());
        match other.actions.get(&key) {
            Some(entry) => next.actions.insert(key, entry.clone()),
            None => next.actions.remove(&key),
        };
        next
    }

    /// This registry with `project`'s `action` set to `entry` (`None`
    /// takes it out).
    pub fn with(&self, project: &str, action: &str, entry: Option<LoadedAction>) -> Self {
        let mut next = self.clone();
        let key = (project.to_string(), action.to_string());
        match entry {
            Some(entry) => next.actions.insert(key, Ok(entry)),
            None => next.actions.remove(&key),
        };
        next
    }

    /// The action, `Some(Err)` when it failed to load, `None` when the project
    /// does not have it.
    pub fn get(&self, project: &str, action: &str) -> Option<Result<&LoadedAction, &LoadError>> {
        self.actions
            .get(&(project.to_string(), action.to_string()))
            .map(|r| r.as_ref().map_err(|e| e.as_ref()))
    }

    /// The actions of `project` by name, loaded or not.
    pub fn project(
        &self,
        project: &str,
    ) -> impl Iterator<Item = (&str, Result<&LoadedAction, &LoadError>)> {
        self.actions
            .iter()
            .filter(move |((p, _), _)| p == project)
            .map(|((_, a), r)| (a.as_str(), r.as_ref().map_err(|e| e.as_ref())))
    }

    /// What changes from `old` to `self`: actions added, removed, and
    /// replaced (another component, or loading where it did not or the
    /// other way round).
    pub fn changes_from(&self, old: &ActionRegistry) -> PluginChanges {
        let name = |(p, a): &(String, String)| format!("{p}/{a}");
        let hash = |r: &Result<LoadedAction, Arc<LoadError>>| r.as_ref().ok().map(|a| a.hash);
        let mut changes = PluginChanges::default();
        for (key, new) in &self.actions {
            match old.actions.get(key) {
                None => changes.added.push(name(key)),
                Some(before) if hash(before) != hash(new) => {
                    changes.replaced.push(name(key));
                }
                Some(_) => {}
            }
        }
        changes.removed = old
            .actions
            .keys()
            .filter(|k| !self.actions.contains_key(*k))
            .map(name)
            .collect();
        changes
    }

    /// Every load error of the registry loaded from `config` as `bosun
    /// check` prints it (the config file, the line and the key of the
    /// action, and the reason), each marked true when the component's file
    /// lies in its project's own dir (which the tenant can write).
    pub fn problems_by_file(&self, config: &Config) -> Vec<(bool, String)> {
        let text = std::fs::read_to_string(&config.source).unwrap_or_default();
        self.errors()
            .map(|e| {
                let tenant = e
                    .plugin
                    .split_once('/')
                    .and_then(|(project, action)| {
                        let pcfg = config.projects.get(project)?;
                        // Not in the config: an upload, the team's.
                        let Some(acfg) = pcfg.actions.0.get(action) else {
                            return Some(true);
                        };
                        if acfg.repo_path.is_some() {
                            return Some(true);
                        }
                        let path = acfg.path.as_deref()?;
                        Some(tenant_dir(path, config).is_some())
                    })
                    .unwrap_or(false);
                (tenant, problem(e, &config.source, &text))
            })
            .collect()
    }

    /// Every load error, in project and action order.
    pub fn errors(&self) -> impl Iterator<Item = &LoadError> {
        self.actions
            .values()
            .filter_map(|r| r.as_ref().err().map(|e| e.as_ref()))
    }
}

/// A load error as `path:line: `key`: reason`.
fn problem(e: &LoadError, source: &Path, text: &str) -> String {
    let key = match e.plugin.split_once('/') {
        Some((project, action)) => format!("projects.{project}.actions.{action}"),
        None => e.plugin.clone(),
    };
    let line = crate::config::line_of(text, &key)
        .map(|l| format!(":{l}"))
        .unwrap_or_default();
    format!("{}{line}: `{key}`: {}", source.display(), e.reason)
}

/// `path` relative to `project_dir` when it is written beneath it (or
/// beneath the dir its operator-chosen links lead to).
fn beneath(path: &Path, project_dir: &Path) -> Option<PathBuf> {
    let written = lexical(path);
    let dirs = [lexical(project_dir), resolved(project_dir)];
    if let Some(rel) = dirs
        .iter()
        .find_map(|dir| written.strip_prefix(dir).ok().map(Path::to_path_buf))
    {
        return Some(rel);
    }
    // Written elsewhere, but its dir leads into the project (an operator's
    // link to it): still the tenant's file, opened beneath its dir.
    let (parent, name) = (written.parent()?, written.file_name()?);
    resolved(parent)
        .strip_prefix(&dirs[1])
        .ok()
        .map(|rel| rel.join(name))
}

/// The dir of the project (any project of `config`) that `path` lies in,
/// if it lies in one: a file there is that tenant's to write.
fn tenant_dir<'a>(path: &Path, config: &'a Config) -> Option<&'a Path> {
    config
        .projects
        .values()
        .map(|p| p.dir.as_path())
        .find(|dir| beneath(path, dir).is_some())
}

/// The largest component file the operator's config may name.
const MAX_COMPONENT: u64 = 256 << 20;

/// Compile (within the budget, for a team's component) or reuse a plugin of
/// the same bytes.
async fn load_known(
    engine: &Engine,
    action: &str,
    bytes: &[u8],
    teams: bool,
    known: &mut Known,
) -> Result<(Plugin, [u8; 32]), String> {
    let hash: [u8; 32] = Sha256::digest(bytes).into();
    let plugin = match known.get(&hash) {
        Some(done) => done.clone(),
        None => {
            let result = match teams {
                true => engine.load_within_budget(action, bytes).await,
                false => engine.load(action, bytes).await,
            }
            .map_err(|e| e.reason);
            known.insert(hash, result.clone());
            result
        }
    };
    plugin.map(|plugin| (plugin, hash))
}

fn load_error(project: &str, action: &str, reason: String) -> Arc<LoadError> {
    let error = LoadError {
        plugin: format!("{project}/{action}"),
        reason,
    };
    tracing::error!(project = %project, action = %action, "{error}");
    Arc::new(error)
}

fn read_component(
    action: &str,
    cfg: &ActionConfig,
    project: &ProjectConfig,
    config: &Config,
) -> Result<Vec<u8>, String> {
    if let Some(rel) = &cfg.repo_path {
        return read_repo_component(rel, project, config.plugins.max_plugin_size.as_u64());
    }
    match &cfg.path {
        // Opened beneath whichever project's dir it lies in.
        Some(path) => read_file(
            path,
            tenant_dir(path, config).unwrap_or(&project.dir),
            MAX_COMPONENT,
        )
        .map_err(|e| format!("cannot read {}: {e}", path.display())),
        None => stock::bytes(action)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| format!("no stock action is called `{action}`")),
    }
}

/// The component at `rel` in the project's repository: its dir, or the
/// current release in the release layout; opened beneath the project dir.
pub(crate) fn read_repo_component(
    rel: &Path,
    project: &ProjectConfig,
    max: u64,
) -> Result<Vec<u8>, String> {
    let base = match project.deploy.releases {
        Some(_) => project.dir.join(CURRENT),
        None => project.dir.clone(),
    };
    read_file(&base.join(rel), &project.dir, max)
        .map_err(|e| format!("cannot read `{}` in the project: {e}", rel.display()))
}

/// Read a component file: a regular file of bounded size, opened without
/// blocking (a FIFO in its place would hang bosun's start). One in the
/// project's own dir (which its programs can fill with links) is opened
/// beneath that dir: a link out of it is refused, not followed as root.
/// "In the project's dir" is decided on the path as written, never on
/// where its links lead: the tenant chooses those.
fn read_file(path: &Path, project_dir: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let rel = beneath(path, project_dir);
    let inside = rel.is_some();
    let file = match rel {
        Some(rel) => {
            use cap_std::fs::OpenOptionsExt as _;
            let project = resolved(project_dir);
            let dir = cap_std::fs::Dir::open_ambient_dir(&project, cap_std::ambient_authority())?;
            let mut options = cap_std::fs::OpenOptions::new();
            options
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
            dir.open_with(rel, &options)?.into_std()
        }
        None => {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(path)?
        }
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if inside {
        use std::os::unix::fs::MetadataExt as _;
        // A hard link can bring a file of elsewhere into the project.
        if meta.nlink() > 1 {
            return Err(std::io::Error::other("a file with more than one link"));
        }
    }
    if meta.len() > max {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than the limit of {max}",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

pub(crate) fn limits(action: &ActionConfig, settings: &PluginSettings) -> RunLimits {
    RunLimits {
        timeout: action.timeout.unwrap_or(settings.timeout),
        memory: to_usize(action.memory.unwrap_or(settings.memory).as_u64()),
        max_output: to_usize(settings.max_output.as_u64()),
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
