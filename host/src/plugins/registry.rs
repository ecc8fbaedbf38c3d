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
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::engine::{Engine, LoadError, Plugin};
use super::run::RunLimits;
use super::stock;
use crate::config::{ActionConfig, Config, PluginSettings, resolved};

/// One loadable action of one project.
#[derive(Clone)]
pub struct LoadedAction {
    /// The linked plugin.
    pub plugin: Plugin,
    /// Its limits, from the action's config or the engine-wide defaults.
    pub limits: RunLimits,
    /// The SHA-256 of its component's bytes.
    pub hash: [u8; 32],
}

/// All actions of all projects, each loaded or with the reason it is not.
#[derive(Default)]
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

impl ActionRegistry {
    /// Load every action of every project in `config`.
    pub async fn load(engine: &Engine, config: &Config) -> Self {
        Self::load_where(engine, config, &HashMap::new(), |_, _| true).await
    }

    /// Load every action of `config`, reusing each plugin of `self` whose
    /// component is byte for byte the same (no compile, no cache read).
    pub async fn reload(&self, engine: &Engine, config: &Config) -> Self {
        let known = self
            .actions
            .values()
            .filter_map(|a| a.as_ref().ok())
            .map(|a| (a.hash, Ok(a.plugin.clone())))
            .collect();
        Self::load_where(engine, config, &known, |_, _| true).await
    }

    /// Load only `project`'s `action` (what `bosun exec` runs): the other
    /// plugins are neither compiled nor reported.
    pub async fn load_one(engine: &Engine, config: &Config, project: &str, action: &str) -> Self {
        Self::load_where(engine, config, &HashMap::new(), |p, a| {
            p == project && a == action
        })
        .await
    }

    async fn load_where(
        engine: &Engine,
        config: &Config,
        known: &HashMap<[u8; 32], Result<Plugin, String>>,
        wanted: impl Fn(&str, &str) -> bool,
    ) -> Self {
        let mut by_hash = known.clone();
        let mut actions = BTreeMap::new();
        for (project, pcfg) in &config.projects {
            for (action, acfg) in &pcfg.actions.0 {
                if !wanted(project, action) {
                    continue;
                }
                let loaded = match read_component(action, acfg, &pcfg.dir) {
                    Err(reason) => Err(reason),
                    Ok(bytes) => {
                        let hash: [u8; 32] = Sha256::digest(&bytes).into();
                        let plugin = match by_hash.get(&hash) {
                            Some(done) => done.clone(),
                            None => {
                                let result =
                                    engine.load(action, &bytes).await.map_err(|e| e.reason);
                                by_hash.insert(hash, result.clone());
                                result
                            }
                        };
                        plugin.map(|plugin| (plugin, hash))
                    }
                };
                let entry = loaded
                    .map(|(plugin, hash)| LoadedAction {
                        plugin,
                        limits: limits(acfg, &config.plugins),
                        hash,
                    })
                    .map_err(|reason| {
                        let error = LoadError {
                            plugin: format!("{project}/{action}"),
                            reason,
                        };
                        tracing::error!(project = %project, action = %action, "{error}");
                        Arc::new(error)
                    });
                actions.insert((project.clone(), action.clone()), entry);
            }
        }
        Self { actions }
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
                        let path = pcfg.actions.0.get(action)?.path.as_deref()?;
                        Some(resolved(path).starts_with(resolved(&pcfg.dir)))
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

/// The largest component file read (a Python component is ~18 MB).
const MAX_COMPONENT: u64 = 256 << 20;

fn read_component(action: &str, cfg: &ActionConfig, project_dir: &Path) -> Result<Vec<u8>, String> {
    match &cfg.path {
        Some(path) => {
            read_file(path, project_dir).map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        None => stock::bytes(action)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| format!("no stock action is called `{action}`")),
    }
}

/// Read a component file: a regular file of bounded size, opened without
/// blocking (a FIFO in its place would hang bosun's start). One in the
/// project's own dir (which its programs can fill with links) is opened
/// beneath that dir: a link out of it is refused, not followed as root.
fn read_file(path: &Path, project_dir: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let (path, project) = (resolved(path), resolved(project_dir));
    let file = match path.strip_prefix(&project) {
        Ok(rel) => {
            use cap_std::fs::OpenOptionsExt as _;
            let dir = cap_std::fs::Dir::open_ambient_dir(&project, cap_std::ambient_authority())?;
            let mut options = cap_std::fs::OpenOptions::new();
            options
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
            dir.open_with(rel, &options)?.into_std()
        }
        Err(_) => {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(&path)?
        }
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_COMPONENT {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_COMPONENT} bytes"
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_COMPONENT).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn limits(action: &ActionConfig, settings: &PluginSettings) -> RunLimits {
    RunLimits {
        timeout: action.timeout.unwrap_or(settings.timeout),
        memory: to_usize(action.memory.unwrap_or(settings.memory).as_u64()),
        max_output: to_usize(settings.max_output.as_u64()),
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
