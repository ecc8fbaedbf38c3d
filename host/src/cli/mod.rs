//! The `bosun` command line.
//!
//! Server-side commands work on a config file directly: `serve` supervises
//! its projects and serves the HTTP API, `check` validates it
//! and loads every plugin, `exec` runs one action in-process (handy while
//! writing a plugin: no server, same sandbox). Exit codes are stable, see
//! [`ExitCode`].

mod check;
mod client;
mod exec;
mod format;
mod import;
mod key;
mod plugin;
pub mod remote;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use check::check;
pub use client::{ClientArgs, ClientError};
pub use exec::exec;
pub use import::{ImportCommand, import};
pub use key::key_new;
pub use plugin::{PluginCommand, compile_plugin, plugin};
pub use serve::serve;

use std::path::Path;

use crate::config::Config;
use crate::plugins::{ActionRegistry, Engine, EngineConfig, FailureKind};

/// Load the config at `path`, or say why not (exit code 2).
fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::Usage
    })
}

/// Start the plugin engine and load every action of `config`; a broken
/// plugin is recorded in the registry, only an engine that cannot start fails.
async fn load_actions(config: &Config) -> Result<(Engine, ActionRegistry), ExitCode> {
    let engine = start_engine(config)?;
    let registry = ActionRegistry::load(&engine, config).await;
    Ok((engine, registry))
}

fn start_engine(config: &Config) -> Result<Engine, ExitCode> {
    let mut engine_config = EngineConfig::from_config(config);
    // Teams' plugins (`repo_path`) compile in a child within the budget.
    engine_config =
        engine_config.compiling_with(config, crate::plugins::compile::THIS_IMAGE.into());
    Engine::new(&engine_config).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::HostError
    })
}

/// bosun: supervise deployed projects and run sandboxed actions on them.
#[derive(Debug, Parser)]
#[command(name = "bosun", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Supervise every project's processes and serve the HTTP API until
    /// SIGTERM or SIGINT.
    Serve {
        /// The config file.
        #[arg(long, short, default_value = "config/bosun.toml", env = "BOSUN_CONFIG")]
        config: PathBuf,
    },
    /// Validate the config and load every plugin; exit non-zero listing every problem.
    Check {
        /// The config file.
        #[arg(long, short, default_value = "config/bosun.toml", env = "BOSUN_CONFIG")]
        config: PathBuf,
        /// As an upgrade checks its new binary: a plugin in a project's own
        /// dir that does not load is a warning, not a failure (the tenant
        /// can break it; its action is unavailable, as at startup).
        #[arg(long, hide = true)]
        upgrade: bool,
    },
    /// Run one action of one project in this process, printing its log and result.
    Exec {
        /// The config file.
        #[arg(long, short, default_value = "config/bosun.toml", env = "BOSUN_CONFIG")]
        config: PathBuf,
        /// The project.
        project: String,
        /// The action.
        action: String,
        /// Parameters, as `key=value`.
        #[arg(value_parser = parse_param)]
        params: Vec<(String, String)>,
    },
    /// Run an action on a running server; wait and print its result.
    Run {
        /// The project.
        project: String,
        /// The action.
        action: String,
        /// Parameters, as `key=value`.
        #[arg(value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Show the job's log as it happens (on stderr), then the result.
        #[arg(long, short, conflicts_with = "detach")]
        follow: bool,
        /// Print the job id and return at once.
        #[arg(long, short)]
        detach: bool,
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List processes: state, pid, uptime, restarts, CPU and memory; then
    /// each project's confinement.
    Ps {
        /// Only this project.
        project: Option<String>,
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a project's process logs (every process, or one).
    Logs {
        /// The project.
        project: String,
        /// Only this process.
        process: Option<String>,
        /// Recent lines per instance (0-1000).
        #[arg(long, short = 'n', default_value_t = 100)]
        lines: usize,
        /// Keep printing new lines.
        #[arg(long, short)]
        follow: bool,
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List jobs, newest first.
    Jobs {
        /// Only this project's jobs.
        project: Option<String>,
        /// Only jobs in this state (queued, running, succeeded, failed, …).
        #[arg(long)]
        state: Option<String>,
        /// How many (1-500).
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: u32,
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a project's webhook deliveries, newest first: forge, commit,
    /// verdict (accepted, duplicate, ignored and why, …) and job.
    Deliveries {
        /// The project.
        project: String,
        /// How many (1-500).
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: u32,
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one job; its exit code says how it ended.
    Job {
        /// The job id.
        id: String,
        /// Also print its log.
        #[arg(long)]
        log: bool,
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a queued or running job.
    Cancel {
        /// The job id.
        id: String,
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a running server re-read its config and apply what changed;
    /// print what changed, or every problem (nothing is applied then).
    Reload {
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a running server upgrade in place to the binary now at its
    /// path: checked first, then executed in the same pid, keeping every
    /// process.
    Upgrade {
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the bosun config for a Procfile or a PM2 ecosystem file.
    Import {
        /// What to import.
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Manage API keys.
    Key {
        /// What to do.
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// A team's own actions on a running server: push, versions, rollback, rm.
    Plugin {
        /// What to do.
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Compile the component on stdin into the cache (what `serve` runs,
    /// within its budget, for an uploaded or repository plugin).
    #[command(name = crate::plugins::compile::SUBCOMMAND, hide = true)]
    CompilePlugin {
        /// The state dir whose cache receives it.
        #[arg(long)]
        state_dir: PathBuf,
        /// The engine's `plugins.max_memory`, in bytes.
        #[arg(long)]
        max_memory: u64,
    },
}

/// `bosun key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print a fresh random key and the `[[keys]]` entry with its hash.
    New {
        /// The key's name, recorded on the jobs it starts.
        #[arg(long, default_value = "my-key")]
        name: String,
    },
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

/// Process exit codes. Each failure kind has its own, so scripts can tell a
/// timeout from a broken plugin without parsing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// The command succeeded.
    Ok = 0,
    /// The action returned its own error.
    PluginError = 1,
    /// Bad usage or an invalid config (clap also exits 2).
    Usage = 2,
    /// The action ran out of time.
    Timeout = 3,
    /// The action was cancelled.
    Cancelled = 4,
    /// The action went over its memory cap.
    MemoryLimit = 5,
    /// The action trapped.
    Trap = 6,
    /// The plugin does not fit the contract.
    InvalidPlugin = 7,
    /// bosun could not set up the run.
    HostError = 8,
    /// The job was interrupted by a shutdown of bosun.
    Interrupted = 9,
    /// The server refused the request (bad key, unknown project, full
    /// queue, …); the message says why.
    Refused = 10,
    /// The server could not be reached.
    Unreachable = 11,
    /// The job has not ended yet.
    Pending = 12,
}

impl From<FailureKind> for ExitCode {
    fn from(kind: FailureKind) -> Self {
        match kind {
            FailureKind::PluginError => Self::PluginError,
            FailureKind::Timeout => Self::Timeout,
            FailureKind::Cancelled => Self::Cancelled,
            FailureKind::MemoryLimit => Self::MemoryLimit,
            FailureKind::Trap => Self::Trap,
            FailureKind::InvalidPlugin => Self::InvalidPlugin,
            FailureKind::HostError => Self::HostError,
        }
    }
}
