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
    let cwd = working_dir(spec)?;
    let mut cmd = Command::new(program(spec));
    cmd.args(&cfg.args)
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    for (key, value) in dotenv(&spec.project_dir)? {
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

/// The working directory, which must exist and (symlinks resolved) stay
/// inside the project dir.
fn working_dir(spec: &InstanceSpec) -> Result<PathBuf, String> {
    let project = spec.project_dir.canonicalize().map_err(|e| {
        format!(
            "project dir {} is not usable: {e}",
            spec.project_dir.display()
        )
    })?;
    let Some(rel) = &spec.config.cwd else {
        return Ok(project);
    };
    let cwd = project
        .join(rel)
        .canonicalize()
        .map_err(|e| format!("working directory `{}` is not usable: {e}", rel.display()))?;
    if !cwd.starts_with(&project) {
        return Err(format!(
            "working directory `{}` leads outside the project dir",
            rel.display()
        ));
    }
    Ok(cwd)
}

/// The project's `.env`, if it has one.
fn dotenv(project_dir: &Path) -> Result<Vec<(String, String)>, String> {
    let path = project_dir.join(".env");
    match dotenvy::from_path_iter(&path) {
        Ok(iter) => iter
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot parse {}: {e}", path.display())),
        Err(e) if e.not_found() => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}
