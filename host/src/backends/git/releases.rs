//! The release layout (`[projects.<p>.deploy] releases = N`), Capistrano's
//! shape: a deploy never touches the tree that is serving.
//!
//! ```text
//! <project dir>/
//!   current -> releases/20261202T093000.123Z-0123456789ab
//!   releases/20261202T093000.123Z-0123456789ab/   a checkout, with .git
//!   releases/20261201T170412.004Z-ba9876543210/
//!   shared/.env, shared/uploads/                    linked from every release
//! ```
//!
//! - A release is checked out of bosun's mirror of the upstream by the
//!   project's own confined git, into a hidden staging dir, then renamed
//!   into place: a release dir that exists is complete. A bosun killed
//!   mid-checkout leaves only the staging dir, which the next `prepare`
//!   removes.
//! - It is built where it stays (a venv or `node_modules` keeps absolute
//!   paths), then made current by one `rename` of a new link over
//!   `current`: at every instant `current` names a complete release.
//!   Processes resolve `current` when they start, so the old ones keep
//!   running the old release until they are replaced.
//! - Every file operation (making, linking, switching, deleting) runs as
//!   the project, confined to its dir (`sh` with a fixed script, names as
//!   arguments): the project dir is the tenant's to rearrange, links
//!   included, so bosun never writes there with its own rights. bosun
//!   itself only reads (the releases, `current`, a release's `HEAD`), and
//!   every such path is resolved beneath the project dir.
//! - A release that has been current carries a marker in its `.git`, so a
//!   rollback never lands on one whose build failed or never finished.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use cap_std::fs::{Dir, OpenOptionsExt as _};
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;

use super::mirror::Mirror;
use super::worktree::WorkTree;
use super::{check_ref, fetch_from_mirror, finish};
use crate::config::{CURRENT, RELEASES};
use crate::confine::Jail;
use crate::plugins::bindings::{CallError, Release};
use crate::plugins::grants::ReleaseControl;
use crate::project;

/// The marker a release gets when it is first made current.
const ACTIVATED: &str = ".git/bosun-activated";

/// One project's releases.
pub struct Releases {
    jail: Arc<Jail>,
    mirror: Mirror,
    /// The branch a deploy without a target takes; none: the upstream's default.
    branch: Option<String>,
    keep: usize,
    shared: Vec<String>,
    timeout: Duration,
}

impl Releases {
    /// The releases of the project of `jail`, checked out of `mirror`,
    /// keeping `keep`, linking `shared`.
    pub(crate) fn new(
        jail: Arc<Jail>,
        mirror: Mirror,
        branch: Option<String>,
        keep: u32,
        shared: Vec<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            jail,
            mirror,
            branch,
            keep: keep as usize,
            shared,
            timeout,
        }
    }

    /// Whether the project has a `current` link (whatever it names).
    pub(crate) fn has_current(&self) -> bool {
        project::open(self.jail.dir()).is_ok_and(|dir| {
            dir.symlink_metadata(CURRENT)
                .is_ok_and(|m| m.file_type().is_symlink())
        })
    }

    /// Run the fixed `script` as the project, in its dir, with `args` as
    /// `$1…`; a `failed` naming `what` when it fails.
    async fn sh(&self, what: &str, script: &str, args: &[&str]) -> Result<(), CallError> {
        let mut cmd = self.jail.command("sh");
        cmd.args(["-c", script, "sh"])
            .args(args)
            .env("LC_ALL", "C")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .network(false)
            .own_leaf("releases");
        let output = finish(cmd, self.timeout, what).await?;
        if output.status.success() {
            return Ok(());
        }
        Err(CallError::Failed(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }

    /// Every complete release, newest first.
    fn read(&self) -> Result<Vec<Release>, CallError> {
        let dir = project::open(self.jail.dir()).map_err(|e| CallError::Failed(e.to_string()))?;
        // Followed beneath the project dir: a link out names no release.
        let current = identity(&dir, Path::new(CURRENT));
        let entries = match dir.read_dir(RELEASES) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CallError::Failed(format!("reading `{RELEASES}`: {e}"))),
        };
        let mut releases = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Some((created_at, short)) = parse_name(&name) else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = Path::new(RELEASES).join(&name);
            let is_current = current.is_some() && identity(&dir, &path) == current;
            releases.push(Release {
                revision: head(&dir, &path)
                    .filter(|id| id.starts_with(short))
                    .unwrap_or_else(|| short.to_string()),
                activated: is_current || dir.symlink_metadata(path.join(ACTIVATED)).is_ok(),
                current: is_current,
                created_at,
                name,
            });
        }
        releases.sort_by(|a, b| b.name.cmp(&a.name));
        Ok(releases)
    }

    fn find(&self, name: &str) -> Result<Release, CallError> {
        pick(&self.read()?, name).cloned()
    }

    async fn checkout(&self, staging: &str, revision: &str) -> Result<(), CallError> {
        let tree = WorkTree::within(self.jail.clone(), staging.into(), self.timeout);
        tree.git(&["init", "--quiet"]).await?;
        fetch_from_mirror(&tree, &self.mirror).await?;
        tree.git(&["checkout", "--quiet", "--detach", revision])
            .await?;
        let mut args = vec![staging.to_string()];
        for path in &self.shared {
            let (path, kind) = match path.strip_suffix('/') {
                Some(dir) => (dir, "d"),
                None => (path.as_str(), "f"),
            };
            args.extend([path.to_string(), shared_link(path), kind.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.sh("linking the shared paths", LINK_SHARED, &args)
            .await
    }
}

#[async_trait]
impl ReleaseControl for Releases {
    async fn list(&self) -> Result<Vec<Release>, CallError> {
        self.read()
    }

    async fn resolve(&self, target: Option<&str>) -> Result<String, CallError> {
        if let Some(t) = target {
            check_ref(t)?;
        }
        self.mirror.fetch().await?;
        let target = match (target, &self.branch) {
            (Some(t), _) => t.to_string(),
            (None, Some(b)) => b.clone(),
            (None, None) => self.mirror.default_branch().await?,
        };
        self.mirror.resolve(&target).await
    }

    async fn prepare(&self, revision: &str) -> Result<Release, CallError> {
        check_ref(revision)?;
        let id = self.mirror.resolve(revision).await?;
        let taken: Vec<String> = self.read()?.into_iter().map(|r| r.name).collect();
        let base = release_name(SystemTime::now(), &id);
        let mut name = base.clone();
        for n in 2.. {
            if !taken.contains(&name) {
                break;
            }
            name = format!("{base}-{n}");
        }
        let staging = format!("{RELEASES}/.{name}");
        self.sh("making the release dir", MAKE_STAGING, &[&staging])
            .await?;
        let made = self.checkout(&staging, &id).await;
        let made = match made {
            Ok(()) => {
                let path = format!("{RELEASES}/{name}");
                self.sh("moving the release into place", MOVE, &[&staging, &path])
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = made {
            let _ = self
                .sh("removing the unfinished release", REMOVE, &[&staging])
                .await;
            return Err(e);
        }
        self.find(&name)
    }

    async fn activate(&self, name: &str) -> Result<Option<Release>, CallError> {
        let releases = self.read()?;
        let release = pick(&releases, name)?;
        let before = releases.iter().find(|r| r.current).cloned();
        if release.current {
            return Ok(before);
        }
        let target = format!("{RELEASES}/{name}");
        self.sh("switching `current`", ACTIVATE, &[&target]).await?;
        Ok(before)
    }

    async fn prune(&self) -> Result<Vec<String>, CallError> {
        let mut kept = 0;
        let mut doomed = Vec::new();
        for release in self.read()? {
            if release.current || (release.activated && kept < self.keep) {
                kept += usize::from(release.activated);
                continue;
            }
            doomed.push(release.name);
        }
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let paths: Vec<String> = doomed.iter().map(|n| format!("{RELEASES}/{n}")).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        self.sh("deleting old releases", REMOVE, &paths).await?;
        Ok(doomed)
    }

    async fn remove(&self, name: &str) -> Result<(), CallError> {
        let release = self.find(name)?;
        if release.current {
            return Err(CallError::Failed(format!(
                "release `{name}` is current; activate another one first"
            )));
        }
        self.sh(
            "deleting the release",
            REMOVE,
            &[&format!("{RELEASES}/{name}")],
        )
        .await
    }
}

/// Release `name` of `releases`: `invalid` for a name bosun never makes,
/// `not-found` for one it does not have.
fn pick<'a>(releases: &'a [Release], name: &str) -> Result<&'a Release, CallError> {
    if parse_name(name).is_none() {
        return Err(CallError::Invalid(format!(
            "`{name}` is not a release name"
        )));
    }
    releases
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| CallError::NotFound(format!("no release `{name}`")))
}

/// Clears what an interrupted `prepare` left (hidden staging dirs named
/// as releases are), then
/// makes the new staging dir `$1`.
const MAKE_STAGING: &str = r#"set -eu
mkdir -p releases
for d in releases/.[0-9]*; do
  if [ -e "$d" ] || [ -L "$d" ]; then rm -rf -- "$d"; fi
done
mkdir -m 0750 -- "$1""#;

/// `$1` → `$2`, by rename(2); refuses to land in an existing dir.
const MOVE: &str = r#"mv -T -- "$1" "$2""#;

/// Deletes every argument.
const REMOVE: &str = r#"rm -rf -- "$@""#;

/// Marks release `$1` as activated, then points `current` at it by
/// renaming a fresh link over it (never a moment without `current`).
const ACTIVATE: &str = r#"set -eu
touch -- "$1/.git/bosun-activated" 2>/dev/null || true
rm -rf -- .current.bosun
ln -s -- "$1" .current.bosun
mv -T -- .current.bosun current"#;

/// In release `$1`, links each shared path (triples after it: the path,
/// the link's target, `d` for a dir or `f`) to `shared/`. A shared path
/// that does not exist yet is seeded from the project dir (where an app
/// deployed before the release layout has it), else from the release,
/// else made empty when it is a dir; a seed is copied aside and renamed
/// into place, so a copy cut short is never taken for the shared path.
const LINK_SHARED: &str = r#"set -eu
release=$1; shift
while [ $# -ge 3 ]; do
  path=$1; link=$2; kind=$3; shift 3
  if [ ! -e "shared/$path" ] && [ ! -L "shared/$path" ]; then
    mkdir -p -- "$(dirname -- "shared/$path")"
    seed="shared/$path.bosun-seed"
    rm -rf -- "$seed"
    if [ -e "$path" ]; then cp -a -- "$path" "$seed"
    elif [ -e "$release/$path" ]; then cp -a -- "$release/$path" "$seed"
    elif [ "$kind" = d ]; then mkdir -- "$seed"
    fi
    if [ -e "$seed" ]; then mv -T -- "$seed" "shared/$path"; fi
  fi
  rm -rf -- "$release/$path"
  mkdir -p -- "$(dirname -- "$release/$path")"
  ln -s -- "$link" "$release/$path"
done"#;

/// The link in a release to `shared/<path>`: relative, so it holds
/// wherever the project dir is (and inside the jail's view of it).
fn shared_link(path: &str) -> String {
    let depth = 2 + path.matches('/').count();
    format!("{}shared/{path}", "../".repeat(depth))
}

/// `<UTC time to the millisecond>-<12 hex of the revision>`, e.g.
/// `20261202T093000.123Z-0123456789ab`: names sort as they were made.
fn release_name(now: SystemTime, revision: &str) -> String {
    let stamp: String = humantime::format_rfc3339_millis(now)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{stamp}-{}", revision.get(..12).unwrap_or(revision))
}

/// A release name's time (seconds since the epoch) and short revision, or
/// none when `name` is not one bosun makes.
fn parse_name(name: &str) -> Option<(u64, &str)> {
    // Byte offsets below: a multi-byte character must not reach them.
    if !name.is_ascii() {
        return None;
    }
    let (stamp, rest) = name.split_at_checked(20)?;
    let (dash, rest) = rest.split_at_checked(1)?;
    let (short, suffix) = rest.split_at_checked(12)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let b = stamp.as_bytes();
    let shaped = digits(&stamp[..8])
        && b[8] == b'T'
        && digits(&stamp[9..15])
        && b[15] == b'.'
        && digits(&stamp[16..19])
        && b[19] == b'Z';
    let suffix_ok = suffix.is_empty() || suffix.strip_prefix('-').is_some_and(digits);
    if !shaped
        || dash != "-"
        || !suffix_ok
        || !short
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    let time = humantime::parse_rfc3339(&rfc3339).ok()?;
    Some((time.duration_since(UNIX_EPOCH).ok()?.as_secs(), short))
}

/// The full commit id a release's detached `HEAD` holds, read beneath the
/// project dir. The file is the tenant's: opened without blocking (a FIFO
/// would hang bosun), only a regular file, only its first bytes, and only
/// 40 hex digits count.
fn head(dir: &Dir, release: &Path) -> Option<String> {
    let mut options = cap_std::fs::OpenOptions::new();
    options
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let file = dir.open_with(release.join(".git/HEAD"), &options).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.into_std().take(64).read_to_string(&mut text).ok()?;
    let id = text.trim();
    (id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// Which file a path is, to tell whether `current` names a release
/// however its link is written (relative, absolute, `./releases/…`).
fn identity(dir: &Dir, path: &Path) -> Option<(u64, u64)> {
    let meta = dir.open_dir(path).ok()?.into_std_file().metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_parse_back() {
        let rev = "0123456789abcdef0123456789abcdef01234567";
        let t = UNIX_EPOCH + Duration::from_millis(1_796_203_800_123);
        let name = release_name(t, rev);
        assert_eq!(name, "20261202T093000.123Z-0123456789ab");
        assert_eq!(parse_name(&name), Some((1_796_203_800, "0123456789ab")));
        assert_eq!(
            parse_name(&format!("{name}-2")),
            Some((1_796_203_800, "0123456789ab"))
        );
        let later = release_name(t + Duration::from_millis(1), rev);
        assert!(later > name);
        for bad in [
            "",
            "1234567\u{e9}00000000000-0123456789ab",
            ".20261202T093000.123Z-0123456789ab",
            "20261202T093000.123Z-0123456789AB",
            "20261202T093000.123Z-0123456789a",
            "20261202T093000.123Z-0123456789ab-",
            "20261202T093000.123Z-0123456789ab-x",
            "2026120xT093000.123Z-0123456789ab",
            "../../etc",
        ] {
            assert_eq!(parse_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn shared_links_climb_out_of_the_release() {
        assert_eq!(shared_link(".env"), "../../shared/.env");
        assert_eq!(
            shared_link("public/uploads"),
            "../../../shared/public/uploads"
        );
    }
}
