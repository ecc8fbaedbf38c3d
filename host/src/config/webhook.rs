//! `[projects.<p>.webhook]`: a git forge's push deploys the project.
//!
//! ```toml
//! [projects.shop.webhook]
//! secret_env = "SHOP_HOOK_SECRET"   # or secret_file = "shop-hook.secret"
//! branches = ["main", "release/*"]  # default: `git.branch`
//! action = "deploy"                 # default
//! ```
//!
//! The secret is read when the config is loaded (and at every reload, so
//! rotating it is a reload): from bosun's environment, or from a file that
//! must be a regular file no group or other may read. The file is opened
//! without blocking and read up to 4 KiB, so a FIFO or a huge file in its
//! place cannot hold a reload. The secret never reaches a log or an answer:
//! its `Debug` says only that it is there.

use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

/// Jobs a webhook starts are requested by `webhook:<forge>`; no key may
/// have a name starting so (checked with the keys).
pub const WEBHOOK_REQUESTER: &str = "webhook:";

/// The longest secret bosun reads from a file.
const MAX_SECRET: u64 = 4096;

/// `[projects.<p>.webhook]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The environment variable of bosun's that holds the secret.
    pub secret_env: Option<String>,
    /// The file that holds the secret (trailing whitespace is not part of
    /// it); relative to the config file.
    pub secret_file: Option<PathBuf>,
    /// The branches whose pushes run the action, as globs (`release/*`).
    /// Default: the project's `git.branch`.
    pub branches: Option<Vec<String>>,
    /// The action a push runs, with `target` = the pushed commit.
    #[serde(default = "default_action")]
    pub action: String,
    /// The secret itself, read at load (not a key).
    #[serde(skip)]
    pub secret: HookSecret,
}

fn default_action() -> String {
    "deploy".into()
}

/// A webhook's shared secret. Its `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HookSecret(Arc<[u8]>);

impl HookSecret {
    /// The secret's bytes, for the HMAC or the token comparison.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for HookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HookSecret(redacted)")
    }
}

impl WebhookConfig {
    /// Read the secret (`secret_file` is absolute by now).
    pub(super) fn load_secret(&mut self) -> Result<(), (String, String)> {
        let secret = match (&self.secret_env, &self.secret_file) {
            (Some(_), Some(_)) | (None, None) => {
                return Err((
                    "webhook".into(),
                    "set one of `secret_env` and `secret_file`".into(),
                ));
            }
            (Some(var), None) => std::env::var(var).map_err(|_| {
                (
                    "webhook.secret_env".into(),
                    format!("bosun's environment has no variable `{var}` (or it is not UTF-8)"),
                )
            })?,
            (None, Some(file)) => {
                read_secret_file(file).map_err(|m| ("webhook.secret_file".into(), m))?
            }
        };
        let secret = secret.trim_end();
        if secret.is_empty() {
            let key = match self.secret_env {
                Some(_) => "webhook.secret_env",
                None => "webhook.secret_file",
            };
            return Err((key.into(), "the secret is empty".into()));
        }
        self.secret = HookSecret(secret.as_bytes().into());
        Ok(())
    }

    /// The branches a push must be to, as globs: `branches`, else
    /// `default_branch` (the project's `git.branch`).
    pub fn watched(&self, default_branch: Option<&str>) -> Vec<String> {
        match (&self.branches, default_branch) {
            (Some(globs), _) => globs.clone(),
            (None, Some(branch)) => vec![branch.to_string()],
            (None, None) => Vec::new(),
        }
    }

    pub(super) fn validate(&self, default_branch: Option<&str>) -> Result<(), (String, String)> {
        super::check_name(&self.action).map_err(|m| ("webhook.action".into(), m))?;
        if self.branches.is_none() && default_branch.is_none() {
            return Err((
                "webhook.branches".into(),
                "say which branches deploy (`branches = [\"main\"]`), or set `git.branch`".into(),
            ));
        }
        let globs = self.watched(default_branch);
        if globs.is_empty() {
            return Err((
                "webhook.branches".into(),
                "names no branch: a push could never deploy".into(),
            ));
        }
        for (i, glob) in globs.iter().enumerate() {
            branch_matcher(glob).map_err(|m| (format!("webhook.branches[{i}]"), m))?;
        }
        Ok(())
    }
}

/// The matcher of one `branches` glob (`*` stays within a `/` segment).
pub fn branch_matcher(glob: &str) -> Result<GlobMatcher, String> {
    if glob.is_empty() {
        return Err("an empty pattern matches no branch".into());
    }
    globset::GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map(|g: Glob| g.compile_matcher())
        .map_err(|e| format!("`{glob}` is not a valid pattern: {}", e.kind()))
}

/// Read the secret in `path`: a regular file, bosun's alone, small.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    // Looked at before it is opened: opening a device or a FIFO can block
    // or act.
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let me = nix::unistd::geteuid().as_raw();
    if std::os::unix::fs::MetadataExt::uid(&meta) != me {
        return Err(format!(
            "{shown} is not owned by bosun's user (uid {me}): whoever owns it could sign for the project"
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{shown} may be read by its group or others (mode {:o}): `chmod 600` it",
            meta.permissions().mode() & 0o777
        ));
    }
    let mut text = String::new();
    file.take(MAX_SECRET + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {shown} as UTF-8 text: {e}"))?;
    if text.len() as u64 > MAX_SECRET {
        return Err(format!("{shown} is over {MAX_SECRET} bytes"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_globs_stay_within_a_segment() {
        let m = branch_matcher("release/*").expect("glob");
        assert!(m.is_match("release/1.2"));
        assert!(!m.is_match("release/1/hotfix"));
        assert!(!m.is_match("main"));
        assert!(branch_matcher("").is_err());
        assert!(branch_matcher("[").is_err());
    }

    #[test]
    fn a_secret_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("hook.secret");
        std::fs::write(&file, "s3cret\n").expect("write");
        let mut hook = WebhookConfig {
            secret_env: None,
            secret_file: Some(file.clone()),
            branches: Some(vec!["main".into()]),
            action: default_action(),
            secret: HookSecret::default(),
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let (key, message) = hook.clone().load_secret().expect_err("group-readable");
        assert_eq!(key, "webhook.secret_file");
        assert!(message.contains("mode 640"), "{message}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        hook.load_secret().expect("bosun's alone");
        assert_eq!(
            hook.secret.bytes(),
            b"s3cret",
            "the newline is not part of it"
        );
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        hook.secret_file = Some(fifo);
        let (_, message) = hook.load_secret().expect_err("a FIFO");
        assert!(message.contains("not a regular file"), "{message}");
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let secret = HookSecret(b"hunter2-hunter2".as_slice().into());
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
