//! Starting one instance, through its project's jail (see `confine`): the
//! project's `.env` (re-read on every start, so editing it and restarting
//! is enough), the config's env over that, piped output, and the
//! instance's cgroup leaf, which it keeps across restarts.
//!
//! Failures are described in words a user can act on ("program `nodee` not
//! found on PATH"), because a program that cannot start goes to `fatal`
//! rather than into a restart loop, unless the failure is one that passes
//! (out of descriptors, memory or processes; the program being written):
//! those go through the restart schedule.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Child;

use super::persist::MARKER_VAR;
use super::spec::InstanceSpec;
use crate::confine::Leaf;

/// Why an instance did not start.
pub(crate) struct Failure {
    /// For the status and the log.
    pub message: String,
    /// Whether trying again later may work.
    pub transient: bool,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self {
            message,
            transient: false,
        }
    }
}

/// Spawn `spec` in `leaf`.
pub(crate) fn spawn(
    spec: &InstanceSpec,
    marker: &str,
    leaf: Option<&Leaf>,
) -> Result<Child, Failure> {
    let cfg = &spec.config;
    let app = cfg
        .app_dir
        .as_deref()
        .map(|dir| crate::project::pin(&spec.project_dir, dir));
    let mut cmd = spec.jail.command(program(spec, app.as_deref()));
    cmd.args(&cfg.args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false)
        .network(cfg.network);
    match (&app, &cfg.cwd) {
        (Some(app), Some(cwd)) => cmd.cwd(app.join(cwd)),
        (Some(dir), None) | (None, Some(dir)) => cmd.cwd(dir),
        (None, None) => &mut cmd,
    };
    if let Some(leaf) = leaf {
        cmd.in_leaf(leaf);
    }
    cmd.envs(crate::project::dotenv(
        &spec.project_dir,
        cfg.app_dir.as_deref(),
    )?)
    .envs(&cfg.env)
    .env("BOSUN_PROJECT", &spec.project)
    .env("BOSUN_PROCESS", &cfg.name)
    .env("BOSUN_INSTANCE", spec.instance.to_string())
    .env(MARKER_VAR, marker)
    .prepend_path(&local_path(spec, app.as_deref()));
    // After the environment: its LISTEN_* are bosun's, whatever `.env` says.
    if spec.sockets.any() {
        let sockets = spec.sockets.for_program().map_err(|message| Failure {
            message,
            // The address may be free later (another program held it).
            transient: true,
        })?;
        cmd.listen_fds(sockets, &cfg.name);
    }
    cmd.spawn().map(|jailed| jailed.child).map_err(|e| Failure {
        message: e.to_string(),
        transient: e.is_transient(),
    })
}

/// The project's `path` dirs, absolute, in the release `app` names (the
/// project dir without the release layout).
fn local_path(spec: &InstanceSpec, app: Option<&Path>) -> Vec<PathBuf> {
    let root = spec.project_dir.join(app.unwrap_or(Path::new("")));
    spec.config
        .project_path
        .iter()
        .map(|dir| root.join(dir))
        .collect()
}

/// A bare name is looked up on PATH; anything with a `/` is a path, relative
/// to the project dir (to the release `app` names, in the release layout).
fn program(spec: &InstanceSpec, app: Option<&Path>) -> PathBuf {
    let command = Path::new(&spec.config.command);
    if spec.config.command.contains('/') && command.is_relative() {
        spec.project_dir
            .join(app.unwrap_or(Path::new("")))
            .join(command)
    } else {
        command.to_path_buf()
    }
}
