//! The `bosun` command line.
//!
//! Server-side commands work on a config file directly: `serve` supervises
//! its projects, `check` validates it
//! and loads every plugin, `exec` runs one action in-process (handy while
//! writing a plugin: no server, same sandbox). Exit codes are stable, see
//! [`ExitCode`].

mod check;
mod exec;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use check::check;
pub use exec::exec;
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
    let engine = Engine::new(&EngineConfig::from_config(config)).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::HostError
    })?;
    let registry = ActionRegistry::load(&engine, config).await;
    Ok((engine, registry))
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
    /// Supervise every project's processes until SIGTERM or SIGINT.
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
