//! The bosun-owned mirror of a project's upstream: where git uses the
//! server's credentials.
//!
//! A fetch from the operator's URL (`git.remote`, or `git.clone`) runs as
//! bosun, in `state_dir/git/<project>.git`, a bare repository no tenant
//! can read or write: its config, its hooks and its objects are bosun's
//! own, so nothing a plugin wrote is ever run with the server's rights. It
//! runs in a leaf of the project's cgroup, so unpacking what the tenant
//! pushed upstream counts against the project's limits, not bosun's.
//!
//! The project's work tree then takes the new objects from the mirror over
//! git's `fd` transport: bosun serves `git upload-pack` on one end of a
//! socket pair, and the project's own (confined) git fetches from the
//! other. upload-pack talks to a client the tenant controls, so it runs as
//! a helper: as the project's user, Landlock read-only on the mirror and
//! the system, no network, a clean environment. The tenant sees the
//! mirror's refs and objects, never its path, its config or the
//! credentials.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::confine::{Jail, JailCommand, Jailed};
use crate::plugins::bindings::CallError;

use super::{finish, redact};

/// One project's mirror.
pub(crate) struct Mirror {
    jail: Arc<Jail>,
    path: PathBuf,
    url: String,
    timeout: Duration,
}

impl Mirror {
    /// The mirror of `url` at `path`, for the project of `jail`.
    pub(crate) fn new(jail: Arc<Jail>, path: PathBuf, url: String, timeout: Duration) -> Self {
        Self {
            jail,
            path,
            url,
            timeout,
        }
    }

    /// git as bosun runs it on its mirror: never prompting, in the C
    /// locale (messages are matched), output captured, killed if the caller
    /// gives up, no hooks, no `ext::` transport. The upstream is the remote
    /// `origin`, given in the environment (`GIT_CONFIG_*`), and credentials
    /// in its URL go to git through a credential helper reading them from
    /// the environment too: a process's command line is readable by every
    /// user of the host (`/proc/<pid>/cmdline`), its environment is not.
    fn git(&self) -> JailCommand {
        let mut cmd = self.jail.host_command("git");
        cmd.args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "protocol.ext.allow=never",
        ])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let (url, credentials) = split_credentials(&self.url);
        let mut config = vec![("remote.origin.url", url)];
        if let Some((user, password)) = credentials {
            config.push(("credential.helper", CREDENTIAL_HELPER.to_string()));
            cmd.env("BOSUN_GIT_USERNAME", user)
                .env("BOSUN_GIT_PASSWORD", password);
        }
        cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (key, value)) in config.into_iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), key)
                .env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        cmd
    }

    async fn run(&self, args: &[&str], what: &str) -> Result<String, CallError> {
        let mut cmd = self.git();
        cmd.args(args);
        let output = finish(cmd, self.timeout, what)
            .await
            .inspect_err(|_| self.clean_partial())?;
        if !output.status.success() {
            self.clean_partial();
            return Err(CallError::Failed(format!(
                "{what} failed: {}",
                redact(String::from_utf8_lossy(&output.stderr).trim())
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Remove what an interrupted fetch leaves (`tmp_pack_*` files can be
    /// as large as the pack), so failed fetches do not add up.
    fn clean_partial(&self) {
        for dir in [self.path.join("objects/pack"), self.path.join("objects")] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("tmp_") || name.starts_with("incoming-") {
                    let path = entry.path();
                    let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
                }
            }
        }
    }

    /// Bring the mirror up to date with the upstream (making it the first
    /// time, and recording the upstream's default branch then).
    pub(crate) async fn fetch(&self) -> Result<(), CallError> {
        let path = self.path.to_string_lossy();
        let what = "fetching from the project's upstream";
        let fresh = !self.path.join("HEAD").exists();
        if fresh {
            if let Some(parent) = self.path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| CallError::Failed(format!("creating the mirror: {e}")))?;
            }
            let _ = std::fs::remove_dir_all(&self.path);
            self.run(&["init", "--bare", "--quiet", &path], "creating the mirror")
                .await?;
        }
        let fetched = self
            .run(
                &[
                    "-C",
                    &path,
                    "fetch",
                    "--prune",
                    "--quiet",
                    "origin",
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                what,
            )
            .await;
        if let Err(e) = fetched {
            if fresh {
                let _ = std::fs::remove_dir_all(&self.path);
            }
            return Err(e);
        }
        if fresh {
            let head = self
                .run(
                    &["-C", &path, "ls-remote", "--symref", "origin", "HEAD"],
                    what,
                )
                .await?;
            if let Some(branch) = head
                .lines()
                .find_map(|l| l.strip_prefix("ref: ")?.split_whitespace().next())
            {
                self.run(&["-C", &path, "symbolic-ref", "HEAD", branch], what)
                    .await?;
            }
        }
        Ok(())
    }

    /// The upstream's default branch, as recorded when the mirror was made.
    pub(crate) async fn default_branch(&self) -> Result<String, CallError> {
        let path = self.path.to_string_lossy();
        self.run(
            &["-C", &path, "symbolic-ref", "--short", "HEAD"],
            "reading the upstream's default branch",
        )
        .await
    }

    /// The full commit id `rev` (checked by the caller) names in the
    /// mirror, or `not-found`.
    pub(crate) async fn resolve(&self, rev: &str) -> Result<String, CallError> {
        let path = self.path.to_string_lossy();
        let spec = format!("{rev}^{{commit}}");
        let mut cmd = self.git();
        cmd.args(["-C", &path, "rev-parse", "--verify", "--quiet", &spec]);
        let output = finish(cmd, self.timeout, "resolving a revision").await?;
        let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !output.status.success() || id.is_empty() {
            return Err(CallError::NotFound(format!(
                "no revision `{rev}` in the project's upstream"
            )));
        }
        Ok(id)
    }

    /// Serve the mirror to one fetch: `git upload-pack` on one end of a
    /// socket pair, as a helper reading only the mirror; the other end is
    /// for the project's git, as its fd 3.
    pub(crate) fn serve(&self) -> Result<(Jailed, OwnedFd), CallError> {
        let failed =
            |e: &dyn std::fmt::Display| CallError::Failed(format!("serving the mirror: {e}"));
        let (ours, theirs) = UnixStream::pair().map_err(|e| failed(&e))?;
        let input = ours.try_clone().map_err(|e| failed(&e))?;
        let mut cmd = self.jail.helper_command("git", &self.path);
        // The mirror is bosun's, the helper the project's user.
        cmd.args(["-c", "safe.directory=*", "upload-pack", "--strict", "."])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("LC_ALL", "C")
            .stdin(Stdio::from(OwnedFd::from(input)))
            .stdout(Stdio::from(OwnedFd::from(ours)))
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let server = cmd.spawn().map_err(|e| failed(&e))?;
        Ok((server, theirs.into()))
    }
}

/// A credential helper that answers `get` with the username and password
/// in the environment (git runs it through the shell; the values never
/// appear on a command line).
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get && printf 'username=%s\\npassword=%s\\n' \"$BOSUN_GIT_USERNAME\" \"$BOSUN_GIT_PASSWORD\"; }; f";

/// `https://user:secret@host/x` → (`https://host/x`, (`user`, `secret`)),
/// percent-decoded. Only http(s): the user of an ssh URL is no secret.
fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return (url.to_string(), None);
    }
    let end = rest.find('/').unwrap_or(rest.len());
    let Some((userinfo, host)) = rest[..end].rsplit_once('@') else {
        return (url.to_string(), None);
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    (
        format!("{scheme}://{host}{}", &rest[end..]),
        Some((percent_decode(user), percent_decode(password))),
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::split_credentials;

    #[test]
    fn credentials_leave_the_url() {
        assert_eq!(
            split_credentials("https://bot:s%40cret@git.example.com/shop.git"),
            (
                "https://git.example.com/shop.git".to_string(),
                Some(("bot".to_string(), "s@cret".to_string()))
            )
        );
        assert_eq!(
            split_credentials("https://ghp_token@github.com/a/b"),
            (
                "https://github.com/a/b".to_string(),
                Some(("ghp_token".to_string(), String::new()))
            )
        );
        for kept in [
            "ssh://git@host/x",
            "git@host:x.git",
            "/srv/repo",
            "https://host/x",
        ] {
            assert_eq!(split_credentials(kept), (kept.to_string(), None));
        }
    }
}
