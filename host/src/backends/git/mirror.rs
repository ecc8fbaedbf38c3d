//! The bosun-owned mirror of a project's upstream: where git uses the
//! server's credentials.
//!
//! A fetch from the operator's URL (`git.remote`, or `git.clone`) runs as
//! bosun, in `state_dir/git/<project>.git`, a bare repository no tenant
//! can read or write: its config, its hooks and its objects are bosun's
//! own, so nothing a plugin wrote is ever run with the server's rights.
//! The project's work tree then takes the new objects from the mirror
//! over git's `fd` transport: bosun serves `git upload-pack` on one end of
//! a socket pair, and the project's own (confined) git fetches from the
//! other. The tenant sees the mirror's refs and objects, never its path,
//! its config or the credentials.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::plugins::bindings::CallError;

use super::redact;

/// One project's mirror.
pub(crate) struct Mirror {
    path: PathBuf,
    url: String,
    timeout: Duration,
}

/// git as bosun runs it on its mirror: never prompting, in the C locale
/// (messages are matched), no stdin, output captured, killed if the
/// caller gives up, no hooks, no `ext::` transport.
pub(crate) fn command() -> Command {
    let mut cmd = Command::new("git");
    cmd.args([
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "protocol.ext.allow=never",
    ])
    .env("GIT_TERMINAL_PROMPT", "0")
    .env("LC_ALL", "C")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    cmd
}

impl Mirror {
    /// The mirror of `url` at `path`.
    pub(crate) fn new(path: PathBuf, url: String, timeout: Duration) -> Self {
        Self { path, url, timeout }
    }

    async fn bosun_git(&self, args: &[&str], what: &str) -> Result<String, CallError> {
        let mut cmd = command();
        cmd.args(args);
        let output = match tokio::time::timeout(self.timeout, cmd.output()).await {
            Err(_) => {
                return Err(CallError::Timeout(format!(
                    "{what} took longer than {:?}",
                    self.timeout
                )));
            }
            Ok(Err(e)) => return Err(CallError::Failed(format!("cannot run git: {e}"))),
            Ok(Ok(output)) => output,
        };
        if !output.status.success() {
            return Err(CallError::Failed(format!(
                "{what} failed: {}",
                redact(String::from_utf8_lossy(&output.stderr).trim())
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Bring the mirror up to date with the upstream (cloning it the first
    /// time, which also records the upstream's default branch).
    pub(crate) async fn fetch(&self) -> Result<(), CallError> {
        let path = self.path.to_string_lossy();
        if !self.path.join("HEAD").exists() {
            if let Some(parent) = self.path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| CallError::Failed(format!("creating the mirror: {e}")))?;
            }
            let _ = std::fs::remove_dir_all(&self.path);
            self.bosun_git(
                &["clone", "--bare", "--quiet", "--", &self.url, &path],
                "fetching from the project's upstream",
            )
            .await?;
            return Ok(());
        }
        self.bosun_git(
            &[
                "-C",
                &path,
                "fetch",
                "--prune",
                "--quiet",
                "--",
                &self.url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            "fetching from the project's upstream",
        )
        .await
        .map(drop)
    }

    /// The upstream's default branch, as recorded at the mirror's clone.
    pub(crate) async fn default_branch(&self) -> Result<String, CallError> {
        let path = self.path.to_string_lossy();
        self.bosun_git(
            &["-C", &path, "symbolic-ref", "--short", "HEAD"],
            "reading the upstream's default branch",
        )
        .await
    }

    /// Serve the mirror to one fetch: `git upload-pack` on one end of a
    /// socket pair; the other end is for the project's git, as its fd 3.
    pub(crate) fn serve(&self) -> Result<(Child, OwnedFd), CallError> {
        let failed = |e: std::io::Error| CallError::Failed(format!("serving the mirror: {e}"));
        let (ours, theirs) = UnixStream::pair().map_err(failed)?;
        let input = ours.try_clone().map_err(failed)?;
        let child = Command::new("git")
            .arg("upload-pack")
            .arg("--strict")
            .arg(&self.path)
            .env("LC_ALL", "C")
            .stdin(Stdio::from(OwnedFd::from(input)))
            .stdout(Stdio::from(OwnedFd::from(ours)))
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(failed)?;
        Ok((child, theirs.into()))
    }
}
