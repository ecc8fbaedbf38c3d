//! The `git` import's real backend. Two kinds of git run for a project:
//!
//! - **In its work tree** (`info`, `update`, `reset`, and the last step
//!   of `fetch`): as the project itself, confined, hardened (see
//!   `worktree`). Everything there is the tenant's to write, so nothing
//!   there runs with bosun's rights.
//! - **Against its upstream** (`fetch`, the first clone): as bosun, with
//!   the server's credentials, but only in a mirror no tenant can touch
//!   (see `mirror`). Without an upstream in the config, `fetch` runs as
//!   the project on the remotes of its own `.git/config`, with no
//!   credentials but its own.
//!
//! Every operation has a timeout, and no git ever prompts. `update`
//! refuses to throw work away: local changes to tracked files stop it
//! unless `force`, and so does a history that has diverged from the
//! target. Moving to an explicit older revision (a rollback) is allowed.

mod checkout;
mod mirror;
mod releases;
mod worktree;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use checkout::clone_missing;
pub use releases::Releases;

use crate::config::{CURRENT, ProjectConfig};
use crate::confine::{GroupKill, Jail, JailCommand};
use crate::plugins::bindings::{CallError, RepoInfo, UpdateResult};
use crate::plugins::grants::GitControl;
use mirror::Mirror;
use worktree::{Reach, WorkTree};

/// The refs a work tree takes from its mirror.
const FROM_MIRROR: [&str; 2] = [
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
];

/// Git for one project.
pub struct Git {
    tree: WorkTree,
    mirror: Option<Mirror>,
    /// The release layout: the tree is `current`, never changed in place.
    releases: bool,
}

impl Git {
    /// Git for `project`, run through `jail`, fetching from its upstream
    /// (the operator's URL) through a mirror in `state_dir`.
    pub fn new(jail: Arc<Jail>, project: &ProjectConfig, state_dir: &Path) -> Self {
        let timeout = project.git.timeout;
        let mirror = mirror(&jail, project, state_dir);
        let releases = project.deploy.releases.is_some();
        let tree = match releases {
            true => WorkTree::within(jail, CURRENT.into(), timeout),
            false => WorkTree::new(jail, timeout),
        };
        Self {
            tree,
            mirror,
            releases,
        }
    }

    /// `update` and `reset` change a tree in place, which a release never is.
    fn in_place(&self) -> Result<(), CallError> {
        match self.releases {
            true => Err(CallError::Failed(
                "this project deploys in releases, which never change in place: deploy a new                  one (`deploy`), or make an older one current (`rollback`)"
                    .into(),
            )),
            false => Ok(()),
        }
    }

    async fn git(&self, args: &[&str]) -> Result<String, CallError> {
        self.tree.git(args).await
    }

    /// `Some(stdout)`, or `None` when git says no (a missing upstream, say).
    async fn maybe(&self, args: &[&str]) -> Result<Option<String>, CallError> {
        match self.git(args).await {
            Ok(out) => Ok(Some(out)),
            Err(CallError::Failed(m)) if m.contains("not a git work tree") => {
                Err(CallError::Failed(m))
            }
            Err(CallError::Failed(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The full commit id `rev` names, or `not-found`.
    async fn resolve(&self, rev: &str) -> Result<String, CallError> {
        check_ref(rev)?;
        self.maybe(&[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ])
        .await?
        .filter(|id| !id.is_empty())
        .ok_or_else(|| CallError::NotFound(format!("no revision `{rev}` in this repository")))
    }

    /// Whether `a` is an ancestor of (or equal to) `b`.
    async fn is_ancestor(&self, a: &str, b: &str) -> Result<bool, CallError> {
        Ok(self
            .maybe(&["merge-base", "--is-ancestor", a, b])
            .await?
            .is_some())
    }

    /// Tracked files with uncommitted changes.
    async fn changed_files(&self) -> Result<Vec<String>, CallError> {
        let out = self
            .git(&["status", "--porcelain", "--untracked-files=no"])
            .await?;
        Ok(out
            .lines()
            .map(|l| l.get(3..).unwrap_or(l).to_string())
            .collect())
    }

    /// The remote the current branch tracks, else `origin`.
    async fn current_remote(&self) -> Result<String, CallError> {
        let branch = self
            .maybe(&["symbolic-ref", "--short", "-q", "HEAD"])
            .await?;
        let configured = match branch {
            Some(b) => {
                self.maybe(&["config", &format!("branch.{b}.remote")])
                    .await?
            }
            None => None,
        };
        Ok(configured.unwrap_or_else(|| "origin".to_string()))
    }
}

/// Where the mirror of `project` lives.
fn mirror_path(state_dir: &Path, project: &str) -> std::path::PathBuf {
    state_dir.join("git").join(format!("{project}.git"))
}

/// The mirror of `project`'s upstream, if it has one.
fn mirror(jail: &Arc<Jail>, project: &ProjectConfig, state_dir: &Path) -> Option<Mirror> {
    project.git.upstream().map(|url| {
        Mirror::new(
            jail.clone(),
            mirror_path(state_dir, jail.project()),
            url.to_string(),
            project.git.timeout,
        )
    })
}

/// The releases of `project`, when it uses the release layout.
pub fn releases(jail: &Arc<Jail>, project: &ProjectConfig, state_dir: &Path) -> Option<Releases> {
    let keep = project.deploy.releases?;
    Some(Releases::new(
        jail.clone(),
        mirror(jail, project, state_dir)?,
        project.git.branch.clone(),
        keep,
        project.deploy.shared.clone(),
        project.git.timeout,
    ))
}

/// Take the mirror's branches (as `origin/*`) and tags into `tree`: the
/// mirror serves, the tree's own confined git fetches over fd 3.
async fn fetch_from_mirror(tree: &WorkTree, mirror: &Mirror) -> Result<(), CallError> {
    let (mut server, fd) = mirror.serve()?;
    let mut args = vec!["fetch", "--prune", "--quiet", "fd::3"];
    args.extend(FROM_MIRROR);
    let result = tree.run(&args, Reach::Fd(fd)).await;
    // The client is gone, so upload-pack sees the end of its socket; its
    // leaf goes with it.
    if tokio::time::timeout(Duration::from_secs(5), server.child.wait())
        .await
        .is_err()
    {
        let _ = server.child.kill().await;
    }
    result.map(drop)
}

/// Run `cmd` (a git) to its end within `timeout`: its output, or a
/// `timeout` or `failed` naming `what`. Past the timeout its whole process
/// group is killed (an ssh, a credential helper, not only git), and its
/// cgroup leaf, with anything that left the group, goes when this returns.
async fn finish(
    cmd: JailCommand,
    timeout: Duration,
    what: &str,
) -> Result<std::process::Output, CallError> {
    let jailed = cmd
        .spawn()
        .map_err(|e| CallError::Failed(format!("cannot run git: {e}")))?;
    let _leaf = jailed.leaf;
    let group = GroupKill::of(&jailed.child);
    match tokio::time::timeout(timeout, jailed.child.wait_with_output()).await {
        Err(_) => {
            drop(group);
            Err(CallError::Timeout(format!(
                "{what} took longer than {timeout:?}"
            )))
        }
        Ok(Err(e)) => Err(CallError::Failed(format!("waiting for git: {e}"))),
        Ok(Ok(output)) => Ok(output),
    }
}

/// Refuse refs that git would read as options, or that are empty.
fn check_ref(name: &str) -> Result<(), CallError> {
    if name.is_empty() || name.starts_with('-') || name.contains(char::is_whitespace) {
        return Err(CallError::Invalid(format!(
            "`{name}` is not a valid git revision"
        )));
    }
    Ok(())
}

/// `https://user:token@host/x` → `https://host/x`: a URL shown to a plugin
/// or a caller never carries the server's credentials.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        out.push_str(
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host),
        );
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[async_trait]
impl GitControl for Git {
    async fn revision(&self) -> Result<String, CallError> {
        self.tree.check()?;
        self.git(&["rev-parse", "HEAD"]).await
    }

    async fn info(&self) -> Result<RepoInfo, CallError> {
        let revision = self.revision().await?;
        let branch = self
            .maybe(&["symbolic-ref", "--short", "-q", "HEAD"])
            .await?
            .filter(|b| !b.is_empty());
        let remote = match &branch {
            Some(b) => {
                self.maybe(&["config", &format!("branch.{b}.remote")])
                    .await?
            }
            None => None,
        };
        let remote_url = match &remote {
            Some(r) => self
                .maybe(&["remote", "get-url", r])
                .await?
                .map(|u| redact(&u)),
            None => None,
        };
        let dirty = !self.changed_files().await?.is_empty();
        let (ahead, behind) = match self
            .maybe(&["rev-list", "--left-right", "--count", "HEAD...@{upstream}"])
            .await?
        {
            Some(counts) => {
                let mut it = counts.split_whitespace().map(|n| n.parse().unwrap_or(0));
                (it.next().unwrap_or(0), it.next().unwrap_or(0))
            }
            None => (0, 0),
        };
        let head = self.git(&["log", "-1", "--format=%ct %s"]).await?;
        let (time, subject) = head.split_once(' ').unwrap_or((&head, ""));
        Ok(RepoInfo {
            revision,
            branch,
            remote_url,
            dirty,
            ahead,
            behind,
            subject: subject.to_string(),
            committed_at: time.parse().unwrap_or(0),
        })
    }

    async fn fetch(&self, remote: Option<&str>) -> Result<(), CallError> {
        self.tree.check()?;
        if let Some(r) = remote {
            check_ref(r)?;
        }
        if let Some(mirror) = &self.mirror
            && remote.is_none_or(|r| r == "origin")
        {
            mirror.fetch().await?;
            return fetch_from_mirror(&self.tree, mirror).await;
        }
        let remote = match remote {
            Some(r) => {
                let remotes = self.git(&["remote"]).await?;
                if !remotes.lines().any(|l| l == r) {
                    return Err(CallError::NotFound(format!("no remote `{r}`")));
                }
                r.to_string()
            }
            None => self.current_remote().await?,
        };
        self.tree
            .run(&["fetch", "--prune", "--tags", &remote], Reach::Network)
            .await
            .map(drop)
            .map_err(|e| match e {
                CallError::Failed(m) => CallError::Failed(format!(
                    "{m} (this project has no `git.remote` in bosun's config, so git fetched as \
                     the project itself, which reaches only the network and its own dir)"
                )),
                e => e,
            })
    }

    async fn update(&self, target: Option<&str>, force: bool) -> Result<UpdateResult, CallError> {
        self.in_place()?;
        self.tree.check()?;
        let from = self.git(&["rev-parse", "HEAD"]).await?;
        let changed = self.changed_files().await?;
        if !changed.is_empty() && !force {
            return Err(CallError::Failed(format!(
                "the work tree has local changes ({}); commit or discard them, or update with force",
                changed.join(", ")
            )));
        }
        let to = match target {
            Some(t) => self.resolve(t).await?,
            None => self.resolve("@{upstream}").await.map_err(|_| {
                CallError::Failed(
                    "the current branch has no upstream; name a target (branch, tag or revision)"
                        .into(),
                )
            })?,
        };
        let forward = self.is_ancestor(&from, &to).await?;
        let backward = !forward && self.is_ancestor(&to, &from).await?;
        if !forward && !backward && !force {
            return Err(CallError::Failed(format!(
                "diverged: {} and {} each have commits the other lacks; resolve it on the server, or update with force",
                short(&from),
                short(&to)
            )));
        }
        if backward && target.is_none() && !force {
            // Ahead of the upstream: unpushed local commits. Nothing to pull.
            return Ok(UpdateResult {
                from: from.clone(),
                to: from,
                changed: false,
            });
        }
        if from != to || force {
            self.git(&["reset", "--hard", "--quiet", &to]).await?;
        }
        let now = self.git(&["rev-parse", "HEAD"]).await?;
        Ok(UpdateResult {
            changed: now != from,
            from,
            to: now,
        })
    }

    async fn reset(&self, rev: &str) -> Result<(), CallError> {
        self.in_place()?;
        self.tree.check()?;
        let id = self.resolve(rev).await?;
        self.git(&["reset", "--hard", "--quiet", &id]).await?;
        Ok(())
    }
}

fn short(id: &str) -> &str {
    id.get(..10).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_are_removed_from_urls() {
        assert_eq!(
            redact("fatal: could not read from https://bot:s3cret@git.example.com/shop.git"),
            "fatal: could not read from https://git.example.com/shop.git"
        );
        assert_eq!(redact("ssh://git@host/x"), "ssh://host/x");
        assert_eq!(redact("no url here"), "no url here");
    }
}
