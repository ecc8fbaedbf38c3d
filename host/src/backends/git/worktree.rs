//! git in a project's work tree: run as the project, through its jail,
//! because everything git reads there (`.git/config`, hooks, attributes,
//! filters) is the tenant's to write.
//!
//! Confinement is the wall: a `core.fsmonitor`, hook or smudge filter a
//! plugin planted runs as the project, seeing only the project. On top,
//! git is told to skip what it need not run at all: no fsmonitor, no
//! hooks, no system or global config, no protocol but the one an
//! operation needs, no prompt, no network. And the host refuses a `.git`
//! that is not a plain directory of the project (a gitfile or a link
//! pointing at another project's repository) before git ever sees it.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::confine::Jail;
use crate::plugins::bindings::CallError;
use crate::project;

use super::{finish, redact};

/// Settings every git run in a work tree gets, over the tenant's config.
const HARDENED: &[&str] = &[
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.untrackedCache=false",
];

/// `GIT_ALLOW_PROTOCOL` for `reach`: git behaves as if every protocol but
/// these were `never`, overriding any `protocol.*` setting, so a tenant's
/// `.git/config` cannot re-open one (nor a `url.<x>.insteadOf` rewrite land
/// on one). None: the tenant's own settings, for its own remotes.
fn allowed_protocols(reach: &Reach) -> Option<&'static str> {
    match reach {
        Reach::Nowhere => Some(""),
        Reach::Fd(_) => Some("fd"),
        Reach::Network => None,
    }
}

/// How a git run may reach a repository elsewhere.
pub(crate) enum Reach {
    /// Not at all: every protocol refused, no network.
    Nowhere,
    /// Only the `fd` transport on fd 3 (a mirror bosun serves).
    Fd(OwnedFd),
    /// The network, with the tenant's own remotes (and none of the
    /// server's credentials).
    Network,
}

/// Where a work tree is.
enum Place {
    /// The project dir itself.
    Project,
    /// A dir beside it (a first clone being made), owned by the project's user.
    Beside(PathBuf),
    /// A dir inside it, relative to it and resolved beneath it as any
    /// path in a project is (a release, or `current`): a link the tenant
    /// put there cannot lead git, or the jail's view, anywhere else.
    Within(PathBuf),
}

/// git in one work tree (the project dir, or a checkout being made).
pub(crate) struct WorkTree {
    jail: Arc<Jail>,
    place: Place,
    timeout: Duration,
}

impl WorkTree {
    /// The project's own work tree.
    pub(crate) fn new(jail: Arc<Jail>, timeout: Duration) -> Self {
        Self {
            jail,
            place: Place::Project,
            timeout,
        }
    }

    /// A work tree being made in `dir` (owned by the project's user).
    pub(crate) fn at(jail: Arc<Jail>, dir: PathBuf, timeout: Duration) -> Self {
        Self {
            jail,
            place: Place::Beside(dir),
            timeout,
        }
    }

    /// The work tree in `rel` of the project dir.
    pub(crate) fn within(jail: Arc<Jail>, rel: PathBuf, timeout: Duration) -> Self {
        Self {
            jail,
            place: Place::Within(rel),
            timeout,
        }
    }

    /// Refuse a `.git` that git would follow elsewhere: a link, a gitfile
    /// (`gitdir: ../b/.git`), or a linked work tree's `commondir`.
    pub(crate) fn check(&self) -> Result<(), CallError> {
        let unusable = |e: project::DirError| CallError::Failed(e.to_string());
        let dir = match &self.place {
            Place::Project => project::open(self.jail.dir()).map_err(unusable)?,
            Place::Beside(dir) => project::open(dir).map_err(unusable)?,
            Place::Within(rel) => project::subdir(
                &project::open(self.jail.dir()).map_err(unusable)?,
                Some(rel),
            )
            .map_err(unusable)?,
        };
        match dir.symlink_metadata(".git") {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(CallError::Denied(
                    "the project's `.git` is not a plain directory (a gitfile or a link); \
                     bosun runs git only on a repository inside the project dir"
                        .into(),
                ));
            }
            Err(_) => {
                return Err(CallError::Failed(
                    "the project dir is not a git work tree: it has no `.git` directory of its own"
                        .into(),
                ));
            }
        }
        if dir.symlink_metadata(".git/commondir").is_ok() {
            return Err(CallError::Denied(
                "the project's `.git` is a linked work tree (it has a `commondir`); \
                 bosun runs git only on a repository inside the project dir"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Run `git args…` with no way out; stdout on success.
    pub(crate) async fn git(&self, args: &[&str]) -> Result<String, CallError> {
        self.run(args, Reach::Nowhere).await
    }

    /// Run `git args…` reaching out as `reach` says; stdout on success, a
    /// `failed` naming the command and git's own message otherwise.
    pub(crate) async fn run(&self, args: &[&str], reach: Reach) -> Result<String, CallError> {
        let what = format!("git {}", args.join(" "));
        let mut cmd = self.jail.command("git");
        cmd.args(HARDENED);
        // Before the subcommand: `-c` after it would be its own option.
        match allowed_protocols(&reach) {
            Some(allowed) => cmd.env("GIT_ALLOW_PROTOCOL", allowed),
            None => cmd.args([
                "-c",
                "protocol.ext.allow=never",
                "-c",
                "protocol.fd.allow=never",
            ]),
        };
        cmd.args(args)
            .env("GIT_DIR", ".git")
            .env("GIT_WORK_TREE", ".")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .env("LC_ALL", "C")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .network(matches!(reach, Reach::Network))
            .own_leaf("git");
        match &self.place {
            Place::Project => {}
            Place::Beside(dir) => {
                cmd.workdir(dir);
            }
            Place::Within(rel) => {
                cmd.cwd(rel);
            }
        }
        if let Reach::Fd(fd) = reach {
            cmd.pass_fd(fd);
        }
        let output = finish(cmd, self.timeout, &format!("`{what}`")).await?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_string());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("not a git repository") {
            return Err(CallError::Failed(
                "the project dir is not a git work tree".into(),
            ));
        }
        Err(CallError::Failed(format!(
            "`{what}` failed: {}",
            redact(stderr.trim())
        )))
    }
}
