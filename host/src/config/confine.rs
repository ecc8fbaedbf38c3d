//! Who a project's processes, `commands` and git run as, what they may see,
//! and how much they may use.
//!
//! ```toml
//! [confinement]
//! id_range = [1900000000, 1900065535]  # uids = gids bosun allocates to projects
//! favordynmods = true                  # remount cgroup2 so programs join cgroups at once
//!
//! [projects.shop.confinement]
//! user = "shop"                        # run as this user instead of an allocated id
//! group = "shop"                       # default: the user's primary group
//! read_only = ["/opt/node-22"]         # more paths its programs may read and execute
//!
//! [projects.shop.limits]
//! memory = "512MiB"                    # the whole project: processes, commands, git
//! cpu = 1.5                            # cores
//! pids = 256                           # processes and threads (default 4096)
//! nofile = 4096                        # open files per process
//! ```
//!
//! Nothing here is needed for a project to be confined: when bosun runs as
//! root, every project gets its own allocated identity, its own view of the
//! files and a private `/tmp` by default. `unconfined = true` on a project is
//! the one way out, and bosun says so at every start.

use std::path::PathBuf;

use bytesize::ByteSize;
use serde::Deserialize;

/// The default id range: above the ranges distributions and systemd hand
/// out (regular users, dynamic users, container ranges of `systemd-nspawn`
/// start at 524288 and this stays clear of the usual 100000 + 65536·n
/// subuid blocks), and below 2^31, which some tools still treat as signed.
pub const DEFAULT_ID_RANGE: [u32; 2] = [1_900_000_000, 1_900_065_535];

/// `[confinement]`: server-wide settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfinementSettings {
    /// The first and last id (inclusive) of the range project identities
    /// are allocated from; each project gets one id as both uid and gid.
    /// Ids used by a user, a group or a subordinate id range are skipped.
    pub id_range: [u32; 2],
    /// Remount cgroup2 with `favordynmods` when bosun is root, so a program
    /// joins its cgroup at once instead of after an RCU grace period
    /// (~10 ms). Default true; it makes forks and exits on the whole host
    /// slightly slower.
    pub favordynmods: bool,
}

impl Default for ConfinementSettings {
    fn default() -> Self {
        Self {
            id_range: DEFAULT_ID_RANGE,
            favordynmods: true,
        }
    }
}

impl ConfinementSettings {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let [first, last] = self.id_range;
        if first < 1000 || first > last || last >= u32::MAX - 1 {
            return Err((
                "confinement.id_range".into(),
                format!(
                    "[{first}, {last}] is not a usable range: the first id must be at least 1000, \
                     no more than the last, and the last below {}",
                    u32::MAX - 1
                ),
            ));
        }
        Ok(())
    }
}

/// `[projects.<p>.confinement]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectConfinement {
    /// Run as this existing user (a name or a numeric uid) instead of an
    /// allocated identity.
    pub user: Option<String>,
    /// With `user`: run with this group (a name or a numeric gid) instead
    /// of the user's primary group.
    pub group: Option<String>,
    /// More paths the project's programs may read and execute (a language
    /// runtime outside `/usr`, say). Relative paths are relative to the
    /// config file.
    pub read_only: Vec<PathBuf>,
}

/// `[projects.<p>.limits]`: what the whole project may use at once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Memory of all its processes together. Default: unlimited.
    pub memory: Option<ByteSize>,
    /// CPU time, in cores (`0.5` is half of one core). Default: unlimited.
    pub cpu: Option<f64>,
    /// Processes and threads at once. Default 4096, so a fork bomb stops
    /// at its own project.
    pub pids: Option<u64>,
    /// Open files per process. Default: what bosun itself has.
    pub nofile: Option<u64>,
}

/// The default `pids` limit.
pub const DEFAULT_PIDS: u64 = 4096;

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: None,
            cpu: None,
            pids: Some(DEFAULT_PIDS),
            nofile: None,
        }
    }
}

impl Limits {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.memory.is_some_and(|m| m < ByteSize::mib(8)) {
            return Err((
                "limits.memory".into(),
                "must be at least 8MiB: less does not start a program".into(),
            ));
        }
        if let Some(cpu) = self.cpu
            && !(0.01..=4096.0).contains(&cpu)
        {
            return Err((
                "limits.cpu".into(),
                format!("{cpu} is not a number of cores between 0.01 and 4096"),
            ));
        }
        if self.pids == Some(0) {
            return Err(("limits.pids".into(), "must be at least 1".into()));
        }
        if self.nofile.is_some_and(|n| n < 16) {
            return Err(("limits.nofile".into(), "must be at least 16".into()));
        }
        Ok(())
    }
}

impl ProjectConfinement {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        for (key, value) in [("user", &self.user), ("group", &self.group)] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                return Err((format!("confinement.{key}"), "must not be empty".into()));
            }
        }
        if self.group.is_some() && self.user.is_none() {
            return Err((
                "confinement.group".into(),
                "only applies with `confinement.user`; an allocated identity has its own group"
                    .into(),
            ));
        }
        if matches!(self.user.as_deref(), Some("root" | "0")) {
            return Err((
                "confinement.user".into(),
                "cannot be root: use `unconfined = true` to run a project as bosun itself".into(),
            ));
        }
        Ok(())
    }
}
