//! The operator's config file: TOML in, validated types out.
//!
//! Every struct denies unknown fields, so a typo (`timout = "5s"`) is an error
//! that names the key instead of a setting silently ignored. Relative paths are
//! resolved against the config file's folder, not the working directory, so
//! `bosun serve --config /etc/bosun/bosun.toml` means the same from anywhere.
//! Durations and sizes are human strings (`"30s"`, `"256MiB"`).

mod actions;
mod backends;
mod confine;
mod key_lines;
mod keys;
mod places;
mod process;
mod procfile;
mod server;
mod webhook;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

pub use actions::{ActionConfig, Actions};
pub use backends::{CURRENT, CommandsConfig, DeployConfig, GitConfig, RELEASES};
pub use confine::{
    ConfinementSettings, DEFAULT_ID_RANGE, DEFAULT_PIDS, Limits, ProjectConfinement,
};
pub use key_lines::line_of;
pub use keys::{KeyConfig, KeyHash, Role, Scope};
pub use places::{check_inside, lexical, resolved, resolved_short_of};
pub use process::{DEFAULT_RESTART_AT, ProcessConfig, ReadyConfig, RestartOrder};
pub use procfile::{ProcfileConfig, apply as apply_procfile};
pub use server::{JobsConfig, ServerConfig, TlsConfig};
pub use webhook::{HookSecret, WEBHOOK_REQUESTER, WebhookConfig, branch_matcher};

/// Why a config could not be used. Each message names the file, and the key
/// (and line, for syntax errors) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is malformed or does not fit the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message, with line, column and key.
        message: String,
    },
    /// The TOML parsed, but a value is not acceptable.
    #[error("{path}{}: `{key}`: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The line of the key, when it is written in the file.
        line: Option<usize>,
        /// The dotted key at fault, e.g. `projects.shop.dir`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where bosun keeps its state: job history, compiled plugins, desired
    /// process state. Default `state` next to the config file.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Limits for the plugin engine.
    #[serde(default)]
    pub plugins: PluginSettings,
    /// The HTTP front end.
    #[serde(default)]
    pub server: ServerConfig,
    /// The job queue and history.
    #[serde(default)]
    pub jobs: JobsConfig,
    /// The API keys.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// How projects are confined.
    #[serde(default)]
    pub confinement: ConfinementSettings,
    /// The projects bosun manages, by name.
    #[serde(default)]
    pub projects: BTreeMap<String, ProjectConfig>,
    /// The file this config was read from (not a key).
    #[serde(skip)]
    pub source: PathBuf,
    /// Problems in projects' Procfiles (not keys): the tenant's files, so
    /// `bosun check` reports them and `serve` warns and goes on.
    #[serde(skip)]
    pub procfile_problems: BTreeMap<String, String>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("state")
}

/// Engine-wide plugin limits, and the defaults each action inherits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// How many plugin runs may execute at once, across all projects. Also sizes
    /// the pooling allocator. Default 16.
    pub max_concurrent_runs: u32,
    /// The largest memory cap any action may be given. Default 1GiB.
    pub max_memory: ByteSize,
    /// Use the pooling allocator when the machine allows it. Default true.
    pub pooling: bool,
    /// Wall-clock limit of one run, unless the action sets `timeout`. Default 5m.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Memory cap of one run (all its memories together), unless the action sets
    /// `memory`. Default 256MiB.
    pub memory: ByteSize,
    /// Bytes of stdout + stderr kept per run; the rest is dropped with a note.
    /// Default 8MiB.
    pub max_output: ByteSize,
    /// The largest component a team may upload or keep in its repository.
    /// Default 32MiB (a Python component is ~18 MB).
    pub max_plugin_size: ByteSize,
    /// Wall-clock budget for compiling an uploaded or repository plugin.
    /// Default 2m.
    #[serde(with = "humantime_serde")]
    pub compile_timeout: Duration,
    /// Address-space budget of the process that compiles one. Default 4GiB.
    pub compile_memory: ByteSize,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            max_concurrent_runs: 16,
            max_memory: ByteSize::gib(1),
            pooling: true,
            timeout: Duration::from_secs(300),
            memory: ByteSize::mib(256),
            max_output: ByteSize::mib(8),
            max_plugin_size: ByteSize::mib(32),
            compile_timeout: Duration::from_secs(120),
            compile_memory: ByteSize::gib(4),
        }
    }
}

/// One managed project.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// The project's directory; its plugins see it as `/`.
    pub dir: PathBuf,
    /// The actions callers may run on it.
    #[serde(default)]
    pub actions: Actions,
    /// The processes the supervisor keeps running for it.
    #[serde(default)]
    pub processes: Vec<ProcessConfig>,
    /// Project-local dirs put in front of `PATH` for its processes and
    /// programs (`[".venv/bin", "node_modules/.bin"]`), relative to where
    /// the app is: the project dir, or the release a program runs in.
    #[serde(default)]
    pub path: Vec<PathBuf>,
    /// A log file that gets every process's lines, each prefixed with
    /// `<name>-<instance> | `. None by default.
    pub merged_log: Option<PathBuf>,
    /// Rotate the merged log when a line would take it past this size.
    #[serde(default = "process::default_log_max_size")]
    pub merged_log_max_size: ByteSize,
    /// Rotated merged-log files to keep (`.1` is the newest).
    #[serde(default = "process::default_log_keep")]
    pub merged_log_keep: u32,
    /// When set, every API call on this project must also carry the key
    /// with this hash in `X-Project-Key`.
    pub key_hash: Option<KeyHash>,
    /// Its processes from its Procfile, too.
    pub procfile: Option<ProcfileConfig>,
    /// The programs its plugins may run.
    #[serde(default)]
    pub commands: CommandsConfig,
    /// Its git work tree.
    #[serde(default)]
    pub git: GitConfig,
    /// What the stock `deploy` action does.
    #[serde(default)]
    pub deploy: DeployConfig,
    /// Who its programs run as and what they may see.
    #[serde(default)]
    pub confinement: ProjectConfinement,
    /// What the whole project may use.
    #[serde(default)]
    pub limits: Limits,
    /// Run its processes, commands and git as bosun itself, seeing every
    /// file bosun sees. Off by default; bosun warns at every start.
    #[serde(default)]
    pub unconfined: bool,
    /// A git forge's pushes run an action (`deploy`) on it.
    pub webhook: Option<WebhookConfig>,
    /// Admin keys of the project may upload actions over the API. Off by
    /// default.
    #[serde(default)]
    pub allow_uploads: bool,
}

impl Config {
    /// Read, parse and validate the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate `text`, read from `path` (used in messages and to
    /// resolve relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.source = path.to_path_buf();
        config.state_dir = base.join(&config.state_dir);
        if let Some(tls) = &mut config.server.tls {
            tls.cert = base.join(&tls.cert);
            tls.key = base.join(&tls.key);
        }
        for project in config.projects.values_mut() {
            // Absolute from here on, whatever the form of `--config`: a
            // project dir is where its programs start, and a spawn changes
            // directory before it runs a path relative to it.
            project.dir = lexical(&base.join(&project.dir));
            for url in [&mut project.git.clone, &mut project.git.remote]
                .into_iter()
                .flatten()
            {
                if url.starts_with('.') {
                    // Absolute: git runs it from the mirror's dir, not ours.
                    *url = lexical(&base.join(&*url)).to_string_lossy().into_owned();
                }
            }
            for p in &mut project.confinement.read_only {
                *p = base.join(&*p);
            }
            if let Some(p) = &mut project.merged_log {
                *p = base.join(&*p);
            }
            for process in &mut project.processes {
                if let Some(p) = &mut process.log_file {
                    *p = base.join(&*p);
                }
                if project.deploy.releases.is_some() {
                    process.app_dir = Some(CURRENT.into());
                }
                process.project_path.clone_from(&project.path);
            }
            for action in project.actions.0.values_mut() {
                if let Some(p) = &mut action.path {
                    *p = base.join(&*p);
                }
            }
        }
        for (name, project) in &mut config.projects {
            if let Some(file) = project
                .webhook
                .as_mut()
                .and_then(|h| h.secret_file.as_mut())
            {
                *file = base.join(&*file);
            }
            if let Err(e) = procfile::apply(project) {
                config.procfile_problems.insert(name.clone(), e);
            }
        }
        config.validate(path).map_err(|e| match e {
            ConfigError::Invalid {
                path, key, message, ..
            } => ConfigError::Invalid {
                line: line_of(text, &key),
                path,
                key,
                message,
            },
            other => other,
        })?;
        // Once the places are checked: no secret file is in a project's dir.
        for (name, project) in &mut config.projects {
            if let Some(hook) = &mut project.webhook
                && let Err((key, message)) = hook.load_secret()
            {
                let key = format!("projects.{name}.{key}");
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line: line_of(text, &key),
                    key,
                    message,
                });
            }
        }
        Ok(config)
    }

    /// Validate again after a change made in memory (a reload keeps some
    /// running settings in place of the file's): the mix must hold too.
    pub fn validate_again(&self) -> Result<(), ConfigError> {
        self.validate(&self.source)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: None,
            key,
            message,
        };
        let p = &self.plugins;
        if p.max_concurrent_runs == 0 {
            return Err(invalid(
                "plugins.max_concurrent_runs".into(),
                "must be at least 1".into(),
            ));
        }
        if p.compile_timeout.is_zero() || p.max_plugin_size.as_u64() == 0 {
            return Err(invalid(
                "plugins".into(),
                "`compile_timeout` and `max_plugin_size` must be more than 0".into(),
            ));
        }
        if p.memory > p.max_memory {
            return Err(invalid(
                "plugins.memory".into(),
                format!(
                    "{} is more than plugins.max_memory ({})",
                    p.memory, p.max_memory
                ),
            ));
        }
        self.server
            .validate()
            .and_then(|()| self.jobs.validate())
            .and_then(|()| self.confinement.validate())
            .and_then(|()| self.validate_keys())
            .and_then(|()| self.validate_places())
            .and_then(|()| self.validate_sockets())
            .and_then(|()| self.validate_procfile_ports())
            .map_err(|(key, message)| invalid(key, message))?;
        for (name, project) in &self.projects {
            check_name(name).map_err(|m| invalid(format!("projects.{name}"), m))?;
            process::check_rotation(
                project.merged_log_max_size,
                project.merged_log_keep,
                "merged_log",
            )
            .map_err(|(key, m)| invalid(format!("projects.{name}.{key}"), m))?;
            for (i, process) in project.processes.iter().enumerate() {
                process.validate().map_err(|(key, m)| {
                    invalid(format!("projects.{name}.processes[{i}].{key}"), m)
                })?;
            }
            for (i, dir) in project.path.iter().enumerate() {
                check_inside(dir).map_err(|m| invalid(format!("projects.{name}.path[{i}]"), m))?;
            }
            if let Some(procfile) = &project.procfile {
                procfile
                    .validate()
                    .map_err(|(key, m)| invalid(format!("projects.{name}.{key}"), m))?;
            }
            backends::validate(&project.commands, &project.git, &project.deploy)
                .and_then(|()| project.confinement.validate())
                .and_then(|()| project.limits.validate())
                .map_err(|(key, m)| invalid(format!("projects.{name}.{key}"), m))?;
            if let Some(hook) = &project.webhook {
                hook.validate(project.git.branch.as_deref())
                    .map_err(|(key, m)| invalid(format!("projects.{name}.{key}"), m))?;
                if !project.actions.0.contains_key(&hook.action) {
                    return Err(invalid(
                        format!("projects.{name}.webhook.action"),
                        format!("the project has no action `{}`", hook.action),
                    ));
                }
            }
            for (action, cfg) in &project.actions.0 {
                let key = format!("projects.{name}.actions.{action}");
                check_name(action).map_err(|m| invalid(key.clone(), m))?;
                cfg.validate(action, p).map_err(|m| invalid(key, m))?;
            }
        }
        Ok(())
    }
}

impl Config {
    /// The ports a project's Procfile may give are its own: no other
    /// Procfile's, no `sockets` port, not bosun's own.
    fn validate_procfile_ports(&self) -> Result<(), (String, String)> {
        let mut taken: BTreeMap<u16, String> = BTreeMap::new();
        taken.insert(
            self.server.listen.port(),
            "bosun's own `server.listen`".into(),
        );
        for (name, project) in &self.projects {
            for (i, process) in project.processes.iter().enumerate() {
                for addr in &process.sockets {
                    taken.insert(
                        addr.port(),
                        format!("`projects.{name}.processes[{i}].sockets`"),
                    );
                }
            }
        }
        for (name, project) in &self.projects {
            let Some(procfile) = &project.procfile else {
                continue;
            };
            for port in procfile.ports() {
                if let Some(owner) = taken.get(&port) {
                    return Err((
                        format!("projects.{name}.procfile.port"),
                        format!("its types may get port {port}, already taken by {owner}"),
                    ));
                }
            }
            for port in procfile.ports() {
                taken.insert(port, format!("`projects.{name}.procfile`"));
            }
        }
        Ok(())
    }

    /// A socket belongs to one process of one project, and is not bosun's own.
    fn validate_sockets(&self) -> Result<(), (String, String)> {
        let mut seen: BTreeMap<std::net::SocketAddr, String> = BTreeMap::new();
        for (name, project) in &self.projects {
            for (i, process) in project.processes.iter().enumerate() {
                for (j, addr) in process.sockets.iter().enumerate() {
                    let key = format!("projects.{name}.processes[{i}].sockets[{j}]");
                    if same_port(*addr, self.server.listen) {
                        return Err((key, format!("{addr} is bosun's own `server.listen`")));
                    }
                    if let Some((other, _)) = seen.iter().find(|(a, _)| same_port(**a, *addr)) {
                        return Err((key, format!("{addr} is already {}'s", seen[other])));
                    }
                    seen.insert(*addr, format!("projects.{name}.processes[{i}]"));
                }
            }
        }
        Ok(())
    }

    fn validate_keys(&self) -> Result<(), (String, String)> {
        for (i, key) in self.keys.iter().enumerate() {
            let at = format!("keys[{i}]");
            if key.name.trim().is_empty() || key.name.len() > 64 {
                return Err((format!("{at}.name"), "must be 1-64 characters".into()));
            }
            if key.name.starts_with(WEBHOOK_REQUESTER) {
                return Err((
                    format!("{at}.name"),
                    format!(
                        "may not start with `{WEBHOOK_REQUESTER}`, which names the jobs webhooks start"
                    ),
                ));
            }
            if let Some(j) = self.keys[..i].iter().position(|k| k.name == key.name) {
                return Err((
                    format!("{at}.name"),
                    format!("`{}` is also the name of keys[{j}]", key.name),
                ));
            }
            if let Some(j) = self.keys[..i].iter().position(|k| k.hash == key.hash) {
                return Err((
                    format!("{at}.hash"),
                    format!("the same hash as keys[{j}]: each key must be its own"),
                ));
            }
            if let Scope::Only(projects) = &key.projects
                && let Some(unknown) = projects.iter().find(|p| !self.projects.contains_key(*p))
            {
                return Err((
                    format!("{at}.projects"),
                    format!("no project is called `{unknown}`"),
                ));
            }
        }
        Ok(())
    }
}

/// Project and action names appear in URLs and file names: keep them plain.
/// A name bosun accepts for `raw` (PM2 and Procfiles allow more): lower
/// case, anything else `-`, at most 64.
pub fn bosun_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '-',
        })
        .collect();
    name = name.trim_start_matches(['-', '_']).to_string();
    name.truncate(64);
    if name.is_empty() {
        name.push_str("app");
    }
    name
}

/// Check an action name from outside the config (an upload's URL) by the
/// config's own rule.
pub fn check_action_name(name: &str) -> Result<(), String> {
    check_name(name)
}

pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use 1-64 of a-z, 0-9, `-` and `_`, starting with a letter or digit"
        ))
    }
}

/// Whether binding both would clash: the same port, in the same address
/// family (bosun binds IPv6 sockets v6-only), on the same address or with
/// one on the unspecified address (`0.0.0.0`, `::`).
fn same_port(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_ones_bosun_accepts() {
        assert_eq!(bosun_name("API-Server.1"), "api-server-1");
        assert_eq!(bosun_name("--x"), "x");
        assert_eq!(bosun_name("???"), "app");
    }

    #[test]
    fn project_dirs_are_absolute_whatever_the_config_path() {
        let text = "[projects.shop]\ndir = \"shop\"\n[projects.shop.deploy]\n";
        let config = Config::parse(text, Path::new("bosun.toml")).expect("parses");
        let dir = &config.projects["shop"].dir;
        assert!(dir.is_absolute(), "{}", dir.display());
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(*dir, lexical(&cwd.join("shop")));
    }
}
