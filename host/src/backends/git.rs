//! The `git` import's real backend: the `git` program in the project dir,
//! with the server's own credentials (the plugin sees results, never them),
//! a timeout on every operation, and no prompt ever (`GIT_TERMINAL_PROMPT=0`):
//! a git that waits for a password would otherwise hang the job.
//!
//! `update` refuses to throw work away: local changes to tracked files stop
//! it unless `force`, and so does a history that has diverged from the
//! target. Moving to an explicit older revision (a rollback) is allowed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::Command;

use crate::plugins::bindings::{CallError, RepoInfo, UpdateResult};
use crate::plugins::git::GitControl;

/// Git on one project's work tree.
pub struct Git {
    dir: PathBuf,
    timeout: Duration,
}

impl Git {
    /// Git in `dir`, each operation limited to `timeout`.
    pub fn new(dir: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            dir: dir.into(),
            timeout,
        }
    }

    /// Run `git args…`; stdout on success, a `failed` naming the command and
    /// git's own message otherwise.
    async fn git(&self, args: &[&str]) -> Result<String, CallError> {
        let mut cmd = command();
        cmd.arg("-C").arg(&self.dir).args(args);
        let what = format!("git {}", args.join(" "));
        let output = match tokio::time::timeout(self.timeout, cmd.output()).await {
            Err(_) => {
                return Err(CallError::Timeout(format!(
                    "`{what}` took longer than {:?}",
                    self.timeout
                )));
            }
            Ok(Err(e)) => return Err(CallError::Failed(format!("cannot run git: {e}"))),
            Ok(Ok(output)) => output,
        };
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

    /// Refuse a project dir that is not the top of its own work tree: a
    /// project inside another repository (bosun's own checkout, say) would
    /// otherwise have that repository fetched and hard-reset.
    async fn check_top(&self) -> Result<(), CallError> {
        let top = self.git(&["rev-parse", "--show-toplevel"]).await?;
        let same = match (std::fs::canonicalize(&top), self.dir.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Ok(());
        }
        Err(CallError::Failed(
            "the project dir is not the top of its own git work tree (it lies inside another repository)"
                .into(),
        ))
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
}

/// Refuse refs that git would read as options, or that are empty.
/// git as bosun runs it: never prompting, in the C locale (messages are
/// matched), no stdin, output captured, killed if the caller gives up.
pub(super) fn command() -> Command {
    let mut cmd = Command::new("git");
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

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
    async fn info(&self) -> Result<RepoInfo, CallError> {
        self.check_top().await?;
        let revision = self.git(&["rev-parse", "HEAD"]).await?;
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
        self.check_top().await?;
        let remote = match remote {
            Some(r) => {
                check_ref(r)?;
                let remotes = self.git(&["remote"]).await?;
                if !remotes.lines().any(|l| l == r) {
                    return Err(CallError::NotFound(format!("no remote `{r}`")));
                }
                r.to_string()
            }
            None => {
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
                configured.unwrap_or_else(|| "origin".to_string())
            }
        };
        self.git(&["fetch", "--prune", "--tags", &remote]).await?;
        Ok(())
    }

    async fn update(&self, target: Option<&str>, force: bool) -> Result<UpdateResult, CallError> {
        self.check_top().await?;
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
        self.check_top().await?;
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
