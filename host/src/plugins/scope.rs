//! What a run may touch: one project's directory and its host backends.
//!
//! A scope is built once per project and cloned into each run's store. The
//! engine hands the plugin exactly this and nothing else, so scoping is a
//! property of construction rather than of checks scattered over the imports.

use std::path::PathBuf;
use std::sync::Arc;

use super::grants::{
    CommandRunner, GitControl, NoCommands, NoGit, NoProcesses, NoReleases, ProcessControl,
    ReleaseControl,
};

/// One project's grant to its plugins.
#[derive(Clone)]
pub struct ProjectScope {
    /// The project's name, given to plugins as `BOSUN_PROJECT`.
    pub name: String,
    /// The project's directory, the plugin's only preopen, mounted at `/`.
    pub dir: PathBuf,
    /// The project's processes.
    pub processes: Arc<dyn ProcessControl>,
    /// The project's git work tree.
    pub git: Arc<dyn GitControl>,
    /// The project's allow-listed programs.
    pub commands: Arc<dyn CommandRunner>,
    /// The project's releases (its release layout, when it has one).
    pub releases: Arc<dyn ReleaseControl>,
    /// Environment variables the project's plugins see, set by the host
    /// (e.g. `BOSUN_DEPLOY`); callers cannot change them.
    pub env: Vec<(String, String)>,
}

impl ProjectScope {
    /// A scope with no processes, no git, an empty allow-list and no releases; backends
    /// are swapped in with the `with_*` methods.
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            dir: dir.into(),
            processes: Arc::new(NoProcesses),
            git: Arc::new(NoGit),
            commands: Arc::new(NoCommands),
            releases: Arc::new(NoReleases),
            env: Vec::new(),
        }
    }

    /// Use `processes` for the `processes` import.
    pub fn with_processes(mut self, processes: Arc<dyn ProcessControl>) -> Self {
        self.processes = processes;
        self
    }

    /// Use `git` for the `git` import.
    pub fn with_git(mut self, git: Arc<dyn GitControl>) -> Self {
        self.git = git;
        self
    }

    /// Use `releases` for the `releases` import.
    pub fn with_releases(mut self, releases: Arc<dyn ReleaseControl>) -> Self {
        self.releases = releases;
        self
    }

    /// Give the project's plugins the variable `key`.
    pub fn with_env(mut self, key: &str, value: String) -> Self {
        self.env.push((key.to_string(), value));
        self
    }

    /// Use `commands` for the `commands` import.
    pub fn with_commands(mut self, commands: Arc<dyn CommandRunner>) -> Self {
        self.commands = commands;
        self
    }
}
