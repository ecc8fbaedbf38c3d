//! Every project's actions, loaded from config.
//!
//! Loading never fails as a whole: a plugin that cannot be read or does not
//! fit the contract is recorded with its error, and the rest of the server
//! carries on; running that action reports the error. Identical components
//! (the same stock plugin in ten projects) are compiled and linked once and
//! share one `InstancePre`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

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
}

/// All actions of all projects, each loaded or with the reason it is not.
#[derive(Default)]
pub struct ActionRegistry {
    actions: BTreeMap<(String, String), Result<LoadedAction, Arc<LoadError>>>,
}

impl ActionRegistry {
    /// Load every action of every project in `config`.
    pub async fn load(engine: &Engine, config: &Config) -> Self {
        Self::load_where(engine, config, |_, _| true).await
    }

    /// Load only `project`'s `action` (what `bosun exec` runs): the other
    /// plugins are neither compiled nor reported.
    pub async fn load_one(engine: &Engine, config: &Config, project: &str, action: &str) -> Self {
        Self::load_where(engine, config, |p, a| p == project && a == action).await
    }

    async fn load_where(
        engine: &Engine,
        config: &Config,
        wanted: impl Fn(&str, &str) -> bool,
    ) -> Self {
        let mut by_hash: HashMap<[u8; 32], Result<Plugin, String>> = HashMap::new();
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
                        match by_hash.get(&hash) {
                            Some(done) => done.clone(),
                            None => {
                                let result =
                                    engine.load(action, &bytes).await.map_err(|e| e.reason);
                                by_hash.insert(hash, result.clone());
                                result
                            }
                        }
                    }
                };
                let entry = loaded
                    .map(|plugin| LoadedAction {
                        plugin,
                        limits: limits(acfg, &config.plugins),
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

    /// Every load error, in project and action order.
    pub fn errors(&self) -> impl Iterator<Item = &LoadError> {
        self.actions
            .values()
            .filter_map(|r| r.as_ref().err().map(|e| e.as_ref()))
    }
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
