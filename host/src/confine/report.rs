//! What a project actually got, layer by layer, for `bosun check`,
//! `GET /v1/projects/{p}`, `bosun ps` and the log at start: an operator
//! must be able to tell a confined project from one that only looks it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The confinement of one project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// `confined`; `unconfined` when the project opted out with
    /// `unconfined = true`; `broken` when its setup failed (nothing starts
    /// for it; `missing` says why).
    pub mode: String,
    /// The user its programs run as; none when bosun is not root (they run
    /// as bosun's own user) or the project is unconfined.
    pub identity: Option<IdentityReport>,
    /// Landlock as the kernel enforces it: `full`, `partial` or `none`.
    pub landlock: String,
    /// The kernel's Landlock ABI (0: none).
    pub landlock_abi: i32,
    /// Whether its programs get a private `/tmp` and `/dev/shm` (a mount
    /// namespace; needs root).
    pub private_tmp: bool,
    /// Whether a program configured without network gets a network
    /// namespace of its own (needs root); else only TCP is denied.
    pub network_namespace: bool,
    /// The project's cgroup2 dir: each program gets a leaf in it, and a
    /// stop kills the whole leaf. None without a usable cgroup2, and until
    /// it is made (just after bosun starts, or by the project's first
    /// program if that comes first).
    pub cgroup: Option<String>,
    /// Each limit and what enforces it, e.g. `"512.0 MiB (cgroup v1)"`.
    pub limits: BTreeMap<String, String>,
    /// The layers it does not get, and why.
    pub missing: Vec<String>,
}

/// The user a project's programs run as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdentityReport {
    /// The account name, or `bosun-<project>` for an allocated id.
    pub user: String,
    /// The uid.
    pub uid: u32,
    /// The gid.
    pub gid: u32,
    /// Whether bosun allocated it from `[confinement] id_range`.
    pub allocated: bool,
}

impl Report {
    /// One line for a terminal.
    pub fn summary(&self) -> String {
        if self.mode == "unconfined" {
            return "UNCONFINED: runs as bosun's own user and sees every file bosun sees".into();
        }
        if self.mode == "broken" {
            return format!(
                "BROKEN: nothing starts for it ({})",
                self.missing.join("; ")
            );
        }
        let mut parts = vec![match &self.identity {
            Some(id) => format!(
                "as {} (uid {}{})",
                id.user,
                id.uid,
                if id.allocated { ", allocated" } else { "" }
            ),
            None => "as bosun's user".into(),
        }];
        parts.push(format!(
            "landlock {} (ABI {})",
            self.landlock, self.landlock_abi
        ));
        if self.private_tmp {
            parts.push("private /tmp".into());
        }
        parts.push(match &self.cgroup {
            Some(_) => "own cgroup".into(),
            None => "no cgroup".into(),
        });
        if !self.limits.is_empty() {
            let limits: Vec<String> = self
                .limits
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            parts.push(format!("limits: {}", limits.join(", ")));
        }
        parts.join(", ")
    }
}
