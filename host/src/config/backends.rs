//! What a project grants its plugins beyond its processes: programs they
//! may run, its git work tree, and what `deploy` does.
//!
//! ```toml
//! [projects.shop.commands]
//! allow = ["npm", ".venv/bin/python"] # names on PATH, or paths in the project; nothing else runs
//! env = { NODE_ENV = "production" }    # over the project's .env
//! timeout = "10m"
//!
//! [projects.shop.git]
//! clone = "git@github.com:acme/shop.git"  # first checkout, when `dir` is missing or empty
//! branch = "main"                         # for that clone; default: the remote's HEAD
//! remote = "git@github.com:acme/shop.git" # what `fetch` pulls from; default: `clone`
//! timeout = "2m"
//!
//! [projects.shop.deploy]
//! build = [["npm", "ci"], ["npm", "run", "build"]]
//! release = [[".venv/bin/python", "manage.py", "migrate", "--noinput"]]
//! ready_timeout = "60s"
//! settle = "2s"
//! releases = 5                 # the release layout, keeping 5 (see below)
//! shared = [".env", "uploads/"]
//! ```
//!
//! With `releases`, the project dir holds `releases/<time>-<rev>/` (one
//! checkout per deploy, from bosun's mirror of the upstream), `current`
//! (a link to the one the processes run) and `shared/` (what every release
//! links to: a path ending in `/` is a dir).
//!
//! An empty allow-list (the default) denies every program: a plugin gets
//! nothing it was not granted.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// `[projects.<p>.commands]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsConfig {
    /// Programs plugins may run: names, resolved on the PATH the program
    /// gets (the project's `path` dirs, then `PATH` in `env` or `.env`,
    /// else the confined default), or paths relative to where the app is.
    pub allow: Vec<String>,
    /// Environment for those programs, over the project's `.env`.
    pub env: BTreeMap<String, String>,
    /// How long one program may run when the plugin does not say. Default 10m.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Whether the programs may use the network. Default true (`npm ci`
    /// needs it); false gives them no network at all.
    pub network: bool,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            env: BTreeMap::new(),
            timeout: Duration::from_secs(600),
            network: true,
        }
    }
}

/// `[projects.<p>.git]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitConfig {
    /// The repository to clone into the project dir when that dir is
    /// missing or empty at boot. A local path starting with `.` is relative
    /// to the config file.
    pub clone: Option<String>,
    /// The branch that clone checks out; default the remote's HEAD.
    pub branch: Option<String>,
    /// The repository `fetch` pulls from, with the server's credentials,
    /// into a mirror only bosun can read; default `clone`. Without either,
    /// `fetch` runs git as the project itself, on the remotes its own
    /// `.git/config` names, without the server's credentials.
    pub remote: Option<String>,
    /// How long one git operation may take. Default 2m.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for GitConfig {
    fn default() -> Self {
        Self {
            clone: None,
            branch: None,
            remote: None,
            timeout: Duration::from_secs(120),
        }
    }
}

/// `[projects.<p>.deploy]`: read by the stock `deploy` action.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeployConfig {
    /// Build steps, each a program and its arguments, run in order through
    /// the `commands` allow-list.
    pub build: Vec<Vec<String>>,
    /// The release phase: steps run after the build and before the
    /// restart (a database migration), through the `commands` allow-list;
    /// a failed one fails the deploy, which is rolled back.
    pub release: Vec<Vec<String>>,
    /// How long the restarted processes get to become ready. Default 60s.
    #[serde(with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// How long they must then stay up without a restart. Default 2s.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// The release layout, keeping this many releases; none (the default)
    /// deploys in the project dir itself.
    pub releases: Option<u32>,
    /// Paths every release links to in the project's `shared/` dir,
    /// relative to a release; one ending in `/` is a dir.
    pub shared: Vec<String>,
}

/// The most releases a project may keep.
pub const MAX_RELEASES: u32 = 100;

/// The dir, inside the project dir, that processes run in with the
/// release layout: a link to the current release.
pub const CURRENT: &str = "current";

/// The dir of the releases, in the project dir.
pub const RELEASES: &str = "releases";

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            build: Vec::new(),
            release: Vec::new(),
            ready_timeout: Duration::from_secs(60),
            settle: Duration::from_secs(2),
            releases: None,
            shared: Vec::new(),
        }
    }
}

impl GitConfig {
    /// The operator's repository for this project: `remote`, else `clone`.
    pub fn upstream(&self) -> Option<&str> {
        self.remote.as_deref().or(self.clone.as_deref())
    }
}

impl DeployConfig {
    /// The settings as the JSON the `deploy` plugin reads from
    /// `BOSUN_DEPLOY`, with the project's Procfile (whose `release:` it
    /// runs) when it has one.
    pub fn to_env(&self, procfile: Option<&std::path::Path>) -> String {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        serde_json::json!({
            "build": self.build,
            "release": self.release,
            "ready_timeout_ms": ms(self.ready_timeout),
            "settle_ms": ms(self.settle),
            "releases": self.releases,
            "procfile": procfile,
        })
        .to_string()
    }
}

/// Check a project's grant: a clone source and branch that git cannot take
/// for options, every allowed program a name or a path inside the project,
/// every build and release step an allowed program, and the release layout.
pub(super) fn validate(
    commands: &CommandsConfig,
    git: &GitConfig,
    deploy: &DeployConfig,
) -> Result<(), (String, String)> {
    for (key, value) in [
        ("git.clone", &git.clone),
        ("git.branch", &git.branch),
        ("git.remote", &git.remote),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.starts_with('-'))
        {
            return Err((key.into(), "must not be empty or start with `-`".into()));
        }
    }
    if let (Some(clone), Some(remote)) = (&git.clone, &git.remote)
        && clone != remote
    {
        return Err((
            "git.remote".into(),
            "differs from `git.clone`: a project fetches from the repository it was cloned from"
                .into(),
        ));
    }
    if git.branch.is_some() && git.clone.is_none() {
        return Err((
            "git.branch".into(),
            "only applies to the first clone; set `git.clone` too".into(),
        ));
    }
    for program in &commands.allow {
        let bad = match program.contains('/') {
            true => super::places::check_inside(std::path::Path::new(program)).is_err(),
            false => program.is_empty() || program.starts_with('-'),
        };
        if bad {
            return Err((
                "commands.allow".into(),
                format!(
                    "`{program}` must be a program name (looked up on PATH) or a path inside the \
                     project, without `..`"
                ),
            ));
        }
    }
    if commands.timeout.is_zero() {
        return Err(("commands.timeout".into(), "must be more than 0".into()));
    }
    validate_releases(git, deploy)?;
    let steps = [("build", &deploy.build), ("release", &deploy.release)];
    for (phase, steps) in steps {
        for (i, step) in steps.iter().enumerate() {
            let key = || format!("deploy.{phase}[{i}]");
            let Some(program) = step.first() else {
                return Err((key(), "is empty".into()));
            };
            if !commands.allow.contains(program) {
                return Err((
                    key(),
                    format!("runs `{program}`, which is not in `commands.allow`"),
                ));
            }
        }
    }
    Ok(())
}

/// The release layout needs an upstream to check releases out of, and
/// shared paths that stay inside a release.
fn validate_releases(git: &GitConfig, deploy: &DeployConfig) -> Result<(), (String, String)> {
    let Some(keep) = deploy.releases else {
        if !deploy.shared.is_empty() {
            return Err((
                "deploy.shared".into(),
                "only applies to the release layout; set `deploy.releases` too".into(),
            ));
        }
        return Ok(());
    };
    if keep == 0 || keep > MAX_RELEASES {
        return Err((
            "deploy.releases".into(),
            format!("must be 1 to {MAX_RELEASES}, not {keep}"),
        ));
    }
    if git.upstream().is_none() {
        return Err((
            "deploy.releases".into(),
            "releases are checked out of the project's upstream; set `git.clone` or `git.remote`"
                .into(),
        ));
    }
    for (i, path) in deploy.shared.iter().enumerate() {
        let key = || format!("deploy.shared[{i}]");
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        let mut parts = trimmed.split('/');
        if trimmed.is_empty()
            || parts.any(|p| p.is_empty() || p == "." || p == "..")
            || trimmed.starts_with('-')
        {
            return Err((
                key(),
                format!("`{path}` must be a relative path inside a release, without `.` or `..`"),
            ));
        }
        if trimmed == ".git" || trimmed.starts_with(".git/") {
            return Err((key(), "a release's `.git` cannot be shared".into()));
        }
        // One inside another would be linked through the other's link:
        // deleting the inner one in a release would delete shared data.
        let inside = |outer: &str, inner: &str| {
            inner == outer
                || inner
                    .strip_prefix(outer)
                    .is_some_and(|r| r.starts_with('/'))
        };
        if let Some(other) = deploy.shared[..i].iter().find(|p| {
            let p = p.strip_suffix('/').unwrap_or(p);
            inside(p, trimmed) || inside(trimmed, p)
        }) {
            return Err((
                key(),
                format!("`{path}` overlaps `{other}`: list a path once, and none inside another"),
            ));
        }
    }
    Ok(())
}
