//! Starting one instance: its own process group, the project's `.env`
//! (re-read on every start, so editing it and restarting is enough), the
//! config's env over that, and piped output.
//!
//! Failures are described in words a user can act on ("program `nodee` not
//! found on PATH"), because a program that cannot start goes to `fatal`
//! rather than into a restart loop.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::persist::MARKER_VAR;
use super::spec::InstanceSpec;

/// Spawn `spec`; the error is a message for the `fatal` status.
pub(crate) fn spawn(spec: &InstanceSpec, marker: &str) -> Result<Child, String> {
    let cfg = &spec.config;
    let cwd = crate::project::inside(&spec.project_dir, spec.config.cwd.as_deref())
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(program(spec));
    cmd.args(&cfg.args)
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    for (key, value) in crate::project::dotenv(&spec.project_dir)? {
        cmd.env(key, value);
    }
    cmd.envs(&cfg.env)
        .env("BOSUN_PROJECT", &spec.project)
        .env("BOSUN_PROCESS", &cfg.name)
        .env("BOSUN_INSTANCE", spec.instance.to_string())
        .env(MARKER_VAR, marker);
    cmd.spawn().map_err(|e| match e.kind() {
        ErrorKind::NotFound => format!("program `{}` not found (a name is looked up on PATH; a path is relative to the project dir)", cfg.command),
        ErrorKind::PermissionDenied => format!("program `{}` is not executable", cfg.command),
        _ => format!("cannot start `{}`: {e}", cfg.command),
    })
}

/// A bare name is looked up on PATH; anything with a `/` is a path, relative
/// to the project dir.
fn program(spec: &InstanceSpec) -> PathBuf {
    let command = Path::new(&spec.config.command);
    if spec.config.command.contains('/') && command.is_relative() {
        spec.project_dir.join(command)
    } else {
        command.to_path_buf()
    }
}
