//! A project's first checkout: `[projects.<p>.git] clone = "<url>"` clones
//! the repository into the project dir when that dir is missing or empty,
//! the way `pm2 deploy <env> setup` does once per server.
//!
//! - It runs in the background: the API and every other project start at
//!   once, and the project's processes and jobs wait for its checkout (see
//!   [`Checkout`]), so they find their code on the very first boot. Later
//!   boots find the dir and leave it alone (from then on `update` and
//!   `deploy` move it).
//! - The upstream is fetched into bosun's mirror (with the server's
//!   credentials), and the work tree is made from the mirror by the
//!   project's own confined git, so every file of the checkout belongs to
//!   the project's user from the start and no credential reaches it.
//! - The checkout is made in a temporary sibling and renamed into place: a
//!   bosun killed mid-clone leaves no half-filled dir that the next boot
//!   would mistake for a checkout.
//! - In the release layout (`deploy.releases`), the first checkout is the
//!   first release instead (see `releases`), made when `current` is missing.
//! - A clone that fails is logged (credentials redacted) and does not stop
//!   the server: one tenant's unreachable remote must not take down the
//!   others. That project's processes then go `fatal` with "project dir is
//!   not usable", and the next boot tries the clone again.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::mirror::Mirror;
use super::releases::Releases;
use super::worktree::WorkTree;
use super::{fetch_from_mirror, mirror_path, redact};
use crate::config::Config;
use crate::confine::{Confinement, Jail};
use crate::plugins::bindings::CallError;
use crate::plugins::grants::ReleaseControl as _;
use crate::project::{self, Checkout};

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
    /// git failed or took too long; its message, credentials removed.
    #[error("git clone failed: {0}")]
    Git(String),
}

impl From<CallError> for CloneError {
    fn from(e: CallError) -> Self {
        let text = match e {
            CallError::NotFound(m)
            | CallError::Denied(m)
            | CallError::Failed(m)
            | CallError::Timeout(m)
            | CallError::Invalid(m) => m,
        };
        CloneError::Git(redact(&text))
    }
}

/// Start cloning every project that has `git.clone` and no checkout yet,
/// all at once, in the background; returns those projects' checkouts to
/// wait for. Failures are logged, never returned: see the module docs.
pub fn clone_missing(config: &Config, confinement: &Confinement) -> BTreeMap<String, Checkout> {
    let mut checkouts = BTreeMap::new();
    for (name, project) in &config.projects {
        let Some(jail) = confinement.jail(name) else {
            continue;
        };
        if let Some(releases) = super::releases(&jail, project, &config.state_dir) {
            if releases.has_current() {
                continue;
            }
            let (done, checkout) = project::pending_checkout();
            checkouts.insert(name.clone(), checkout);
            let (name, dir) = (name.clone(), project.dir.clone());
            tokio::spawn(async move {
                tracing::info!(project = %name, "making the project's first release");
                match first_release(&jail, &releases, &dir).await {
                    Ok(()) => tracing::info!(project = %name, "first release made"),
                    Err(e) => tracing::error!(project = %name, "first release: {e}"),
                }
                done.done();
            });
            continue;
        }
        let Some(url) = project.git.clone.clone() else {
            continue;
        };
        if !is_missing_or_empty(&project.dir) {
            continue;
        }
        let mirror = Mirror::new(
            jail.clone(),
            mirror_path(&config.state_dir, name),
            url.clone(),
            project.git.timeout,
        );
        let (done, checkout) = project::pending_checkout();
        checkouts.insert(name.clone(), checkout);
        let (name, dir) = (name.clone(), project.dir.clone());
        let (branch, timeout) = (project.git.branch.clone(), project.git.timeout);
        tokio::spawn(async move {
            tracing::info!(project = %name, url = %redact(&url), "cloning the project's repository");
            match clone_into(jail, &mirror, &url, branch, &dir, timeout).await {
                Ok(()) => tracing::info!(project = %name, dir = %dir.display(), "cloned"),
                Err(e) => tracing::error!(project = %name, "first checkout: {e}"),
            }
            done.done();
        });
    }
    checkouts
}

fn is_missing_or_empty(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Clone the mirror of `url` (at `branch`, else the upstream's default)
/// into `dir`, which the caller found missing or empty.
async fn clone_into(
    jail: Arc<Jail>,
    mirror: &Mirror,
    url: &str,
    branch: Option<String>,
    dir: &Path,
    timeout: Duration,
) -> Result<(), CloneError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| CloneError::Io { what, path, source }
    };
    mirror.fetch().await?;
    let branch = match branch {
        Some(b) => b,
        None => mirror.default_branch().await?,
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let staging = parent.join(format!(".{name}.bosun-clone"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io("removing the stale", &staging))?;
    }
    owned_dir(&jail, &staging)?;
    let result = checkout(jail, mirror, url, &branch, &staging, timeout).await;
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    // rename(2) replaces an empty dir, and fails on one that filled meanwhile.
    std::fs::rename(&staging, dir).map_err(io("moving the clone to", dir))
}

/// Make the dir `path` (its parent exists), the project's own.
fn owned_dir(jail: &Jail, path: &Path) -> Result<(), CloneError> {
    let io = |what| {
        let path = path.to_path_buf();
        move |source| CloneError::Io { what, path, source }
    };
    std::fs::create_dir(path).map_err(io("creating"))?;
    if let Some(id) = jail.identity() {
        // Through an fd opened without following links: the parent may be
        // a dir others can write (a project under /tmp).
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
            .map_err(io("opening"))?;
        std::os::unix::fs::fchown(&dir, Some(id.uid), Some(id.gid)).map_err(io("handing over"))?;
        // Closed to other users from the start, as every project dir is.
        dir.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .map_err(io("closing"))?;
    }
    Ok(())
}

/// The first release of a project in the release layout that has no
/// `current` yet: the configured branch's tip (else the upstream's
/// default branch), checked out and made current, in the project dir
/// (made when missing). Like a first clone, it is not built: the first
/// `deploy` builds.
async fn first_release(jail: &Jail, releases: &Releases, dir: &Path) -> Result<(), CloneError> {
    if !dir.exists() {
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|source| CloneError::Io {
            what: "creating",
            path: parent.to_path_buf(),
            source,
        })?;
        owned_dir(jail, dir)?;
    }
    let revision = releases.resolve(None).await?;
    let release = releases.prepare(&revision).await?;
    releases.activate(&release.name).await?;
    Ok(())
}

/// Make a work tree of `branch` in `staging` from the mirror.
async fn checkout(
    jail: Arc<Jail>,
    mirror: &Mirror,
    url: &str,
    branch: &str,
    staging: &Path,
    timeout: Duration,
) -> Result<(), CloneError> {
    let tree = WorkTree::at(jail, staging.to_path_buf(), timeout);
    tree.git(&["init", "--quiet", "--initial-branch", branch])
        .await?;
    fetch_from_mirror(&tree, mirror).await?;
    tree.git(&["config", "remote.origin.url", &redact(url)])
        .await?;
    tree.git(&[
        "config",
        "remote.origin.fetch",
        "+refs/heads/*:refs/remotes/origin/*",
    ])
    .await?;
    let upstream = format!("origin/{branch}");
    tree.git(&["checkout", "--quiet", "-B", branch, "--track", &upstream])
        .await?;
    Ok(())
}
