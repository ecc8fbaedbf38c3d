//! A project's first checkout: `[projects.<p>.git] clone = "<url>"` clones
//! the repository into the project dir when that dir is missing or empty,
//! the way `pm2 deploy <env> setup` does once per server.
//!
//! - It runs before the supervisor starts anything, so the processes find
//!   their code on the very first boot; later boots find the dir and leave
//!   it alone (from then on `update` and `deploy` move it).
//! - The clone goes to a temporary sibling first and is renamed into place:
//!   a bosun killed mid-clone leaves no half-filled dir that the next boot
//!   would mistake for a checkout.
//! - A clone that fails is logged (credentials redacted) and does not stop
//!   the server: one tenant's unreachable remote must not take down the
//!   others. That project's processes then go `fatal` with "project dir is
//!   not usable", and the next boot tries the clone again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::git::{self, redact};
use crate::config::Config;

/// Why a first clone failed.
#[derive(Debug, thiserror::Error)]
enum CloneError {
    /// Creating, renaming or removing dirs.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// git did not finish in time.
    #[error("git clone took longer than {0:?}")]
    Timeout(Duration),
    /// git failed; its message, credentials removed.
    #[error("git clone failed: {0}")]
    Git(String),
}

/// Clone every project that has `git.clone` and no checkout yet, all at
/// once. Failures are logged, never returned: see the module docs.
pub async fn clone_missing(config: &Config) {
    let mut clones = tokio::task::JoinSet::new();
    for (name, project) in &config.projects {
        let Some(url) = project.git.clone.clone() else {
            continue;
        };
        if !is_missing_or_empty(&project.dir) {
            continue;
        }
        let (name, dir) = (name.clone(), project.dir.clone());
        let (branch, timeout) = (project.git.branch.clone(), project.git.timeout);
        clones.spawn(async move {
            tracing::info!(project = %name, url = %redact(&url), "cloning the project's repository");
            match clone_into(&url, branch.as_deref(), &dir, timeout).await {
                Ok(()) => tracing::info!(project = %name, dir = %dir.display(), "cloned"),
                Err(e) => tracing::error!(project = %name, "first checkout: {e}"),
            }
        });
    }
    while clones.join_next().await.is_some() {}
}

fn is_missing_or_empty(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Clone `url` (at `branch`, else the remote's default) into `dir`, which
/// the caller found missing or empty.
async fn clone_into(
    url: &str,
    branch: Option<&str>,
    dir: &Path,
    timeout: Duration,
) -> Result<(), CloneError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| CloneError::Io { what, path, source }
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let staging = parent.join(format!(".{name}.bosun-clone"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io("removing the stale", &staging))?;
    }
    let mut cmd = git::command();
    cmd.arg("clone").arg("--quiet");
    if let Some(branch) = branch {
        cmd.arg("--branch").arg(branch);
    }
    cmd.arg("--").arg(url).arg(&staging);
    let result = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => Err(CloneError::Timeout(timeout)),
        Ok(Err(e)) => Err(CloneError::Git(format!("cannot run git: {e}"))),
        Ok(Ok(out)) if !out.status.success() => Err(CloneError::Git(redact(
            String::from_utf8_lossy(&out.stderr).trim(),
        ))),
        Ok(Ok(_)) => Ok(()),
    };
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    // rename(2) replaces an empty dir, and fails on one that filled meanwhile.
    std::fs::rename(&staging, dir).map_err(io("moving the clone to", dir))
}
