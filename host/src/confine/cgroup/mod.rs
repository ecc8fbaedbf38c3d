//! cgroups: where a project's programs live, what limits them, and how a
//! stop reaches every one of them, even one that left its process group
//! with `setsid` or a double fork.
//!
//! - **Layout.** `<base>/<project>/<leaf>`, where `<base>` is
//!   `bosun-<hash of the state dir>` beside bosun's own cgroup (or beside
//!   its `supervisor` subgroup, which is what systemd's
//!   `DelegateSubgroup=supervisor` gives a `Delegate=yes` service). Every
//!   supervised instance, `commands` run and git run gets a leaf of its
//!   own in the cgroup2 hierarchy, so "stop it" means `cgroup.kill` on the
//!   leaf: everything in it dies, wherever it moved its group or session.
//! - **Limits** are set on the project's cgroup, so they hold for all its
//!   programs together: with the cgroup2 controller where bosun's cgroup
//!   has it delegated, else with the cgroup v1 controller of that name
//!   (hosts that still mount v1, like this machine: memory, cpu and pids
//!   on v1 beside a controller-less cgroup2). Without either, the caller
//!   falls back to rlimits and says so.
//! - **Leftovers.** A bosun that was SIGKILLed leaves its leaves populated;
//!   the next start stops what is in them before anything else runs.

use std::io::{ErrorKind, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::config::Limits;

mod detect;
mod freeze;
mod leaf;
mod on_demand;

pub(crate) use detect::HostCgroups;
use detect::delegated;
pub use freeze::Frozen;
pub use leaf::Leaf;
use leaf::{drain, kill_all, pids, signal_all, wait_empty};
pub(crate) use on_demand::{OnDemand, TRANSIENT, Unavailable};

/// The controllers bosun sets limits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Controller {
    Memory,
    Cpu,
    Pids,
}

impl Controller {
    const ALL: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }
}

/// Make moving a process into a cgroup fast: remount cgroup2 with
/// `favordynmods` (Linux 6.0). Without it, the first move after a quiet
/// moment waits for an RCU grace period: 5-13 ms on this machine, paid by
/// every program bosun starts (measured: a restart after a pause went from
/// ~6 ms to ~20 ms). With it, a move takes ~0.1 ms; forks and exits on the
/// whole host take the slower path of a per-cpu lock (measured here: a
/// fork + exit + wait, 0.76 → 0.85 ms in Python). systemd avoids the cost
/// by forking straight into the cgroup (`CLONE_INTO_CGROUP`), which std's
/// spawn cannot do. The flag stays on. Returns a note for the log.
pub(crate) fn favor_dynamic_changes(host: &HostCgroups) -> Option<String> {
    use nix::mount::MsFlags;
    let m = host.v2_mount.as_ref()?;
    if m.super_options.split(',').any(|o| o == "favordynmods") {
        return None;
    }
    // A remount sets the mount's own flags from scratch: keep the ones it
    // has (a read-only cgroupfs is left alone altogether).
    let mut flags = MsFlags::MS_REMOUNT;
    for option in m.mount_options.split(',') {
        match option {
            "ro" => return None,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            _ => {}
        }
    }
    // And the superblock's flags from the data: all of them, plus ours.
    let mut data: Vec<&str> = m
        .super_options
        .split(',')
        .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
        .collect();
    data.push("favordynmods");
    let data = data.join(",");
    const NONE: Option<&str> = None;
    let point = m.point.display();
    if let Err(e) = nix::mount::mount(NONE, &m.point, NONE, flags, Some(data.as_str())) {
        return Some(format!(
            "could not remount {point} with favordynmods ({e}): each program bosun starts may wait ~10 ms to join its cgroup"
        ));
    }
    // In a cgroup namespace of its own the kernel accepts and ignores it.
    let now = HostCgroups::detect();
    let applied = now
        .v2_mount
        .is_some_and(|m| m.super_options.split(',').any(|o| o == "favordynmods"));
    Some(if applied {
        format!(
            "remounted {point} with favordynmods: programs join their cgroups without waiting for an RCU grace period"
        )
    } else {
        format!(
            "remounting {point} with favordynmods had no effect here (a cgroup namespace?): each program bosun starts may wait ~10 ms to join its cgroup"
        )
    })
}

/// This bosun's cgroups: its base in each hierarchy it can use.
#[derive(Debug)]
pub(crate) struct Tree {
    v2: Option<PathBuf>,
    v2_controllers: Vec<Controller>,
    v1: Vec<(Controller, PathBuf)>,
}

impl Tree {
    /// Create the bases named `tag` and enable what can be enabled. Returns
    /// the tree and notes on what could not be had.
    pub(crate) fn setup(host: &HostCgroups, tag: &str) -> (Self, Vec<String>) {
        let mut notes = Vec::new();
        let mut tree = Tree {
            v2: None,
            v2_controllers: Vec::new(),
            v1: Vec::new(),
        };
        if let (Some(own), Some(base)) = (&host.v2, host.leaf_base(tag)) {
            let parent = delegated(own);
            match mkdir(&base) {
                Ok(()) => {
                    tree.v2_controllers = enable_controllers(parent, &base);
                    tree.v2 = Some(base);
                }
                Err(e) => notes.push(format!(
                    "no cgroup2 tracking: cannot create {}: {e}",
                    base.display()
                )),
            }
        }
        for (controller, own) in &host.v1 {
            if tree.v2_controllers.contains(controller) {
                continue;
            }
            let base = own.join(tag);
            match mkdir(&base) {
                Ok(()) => tree.v1.push((*controller, base)),
                Err(e) => notes.push(format!(
                    "no cgroup v1 {} controller: cannot create {}: {e}",
                    controller.name(),
                    base.display()
                )),
            }
        }
        (tree, notes)
    }

    /// How `controller` is available: "cgroup v2", "cgroup v1", or none.
    pub(crate) fn layer(&self, controller: Controller) -> Option<&'static str> {
        if self.v2_controllers.contains(&controller) {
            Some("cgroup v2")
        } else if self.v1.iter().any(|(c, _)| *c == controller) {
            Some("cgroup v1")
        } else {
            None
        }
    }

    /// Whether every program gets a cgroup2 leaf (tracking and `cgroup.kill`).
    pub(crate) fn has_leaves(&self) -> bool {
        self.v2.is_some()
    }

    /// Every base dir, for sweeping and removal.
    fn bases(&self) -> Vec<&Path> {
        self.v2
            .iter()
            .map(PathBuf::as_path)
            .chain(self.v1.iter().map(|(_, p)| p.as_path()))
            .collect()
    }

    /// The cgroup2 dir of `project`.
    fn v2_project_dir(&self, project: &str) -> Option<PathBuf> {
        self.v2.as_ref().map(|base| base.join(project))
    }

    /// The dirs of `project`: the cgroup2 one first, then each v1 one.
    fn project_dirs(&self, project: &str) -> Vec<PathBuf> {
        self.v2_project_dir(project)
            .into_iter()
            .chain(self.v1.iter().map(|(_, base)| base.join(project)))
            .collect()
    }

    /// The cgroup of `project`, with `limits` set (and unset ones cleared).
    fn project(&self, project: &str, limits: &Limits) -> anyhow::Result<ProjectCgroup> {
        let v2 = match self.v2_project_dir(project) {
            Some(dir) => {
                mkdir(&dir).with_context(|| format!("creating {}", dir.display()))?;
                for controller in &self.v2_controllers {
                    set_limit(&dir, *controller, 2, limits)?;
                }
                Some(dir)
            }
            None => None,
        };
        let mut v1 = Vec::new();
        for (controller, base) in &self.v1 {
            let dir = base.join(project);
            mkdir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            set_limit(&dir, *controller, 1, limits)?;
            let procs = open_write(&dir.join("cgroup.procs"))?;
            v1.push(Arc::new(procs));
        }
        Ok(ProjectCgroup { v2, v1 })
    }

    /// Stop everything left in this tree by an earlier bosun: the stop
    /// signal to every process, `grace` to go, then kill. Returns how many
    /// cgroups held processes. The sub-cgroups are removed.
    pub(crate) async fn sweep(&self, grace: Duration) -> usize {
        let mut dirs = Vec::new();
        for base in self.bases() {
            collect_dirs(base, &mut dirs);
            dirs.extend(dead_guests(base));
        }
        let populated: Vec<&PathBuf> = dirs.iter().filter(|d| !pids(d).is_empty()).collect();
        for dir in &populated {
            tracing::warn!(cgroup = %dir.display(), "stopping processes left by a previous bosun");
            signal_all(dir, Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        for dir in &populated {
            if !wait_empty(dir, deadline.saturating_duration_since(Instant::now())).await {
                kill_all(dir);
                wait_empty(dir, Duration::from_secs(5)).await;
            }
        }
        for dir in dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        populated.len()
    }

    /// Remove the cgroups, after every program has stopped (anything still
    /// in one is killed first).
    pub(crate) fn remove(&self) {
        for base in self.bases() {
            remove_tree(base);
        }
    }
}

/// The trees (each with its sub-cgroups, parents first) that a `bosun
/// exec` beside base `base` made and did not remove (it was killed): named
/// `<base>-exec-<pid>`, with no process `pid` left.
fn dead_guests(base: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (base.parent(), base.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}-exec-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name();
        let pid = file
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<i32>().ok());
        let Some(pid) = pid else { continue };
        if kill(Pid::from_raw(pid), None).is_err() {
            out.push(entry.path());
            collect_dirs(&entry.path(), &mut out);
        }
    }
    out
}

/// Remove the cgroup `base` and every cgroup beneath it, children first,
/// each emptied (its processes killed) before it goes.
fn remove_tree(base: &Path) {
    let mut dirs = Vec::new();
    collect_dirs(base, &mut dirs);
    for dir in dirs.iter().map(PathBuf::as_path).rev().chain([base]) {
        drain(dir, Duration::from_secs(1));
        let _ = std::fs::remove_dir(dir);
    }
}

/// Sub-cgroups of `dir`, parents before children.
fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
            collect_dirs(&entry.path(), out);
        }
    }
}

fn mkdir(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

fn open_write(path: &Path) -> anyhow::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok(file.into())
}

fn write_file(path: &Path, value: &str) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .with_context(|| format!("writing `{value}` to {}", path.display()))
}

/// Enable bosun's controllers from `parent` down to `base`; returns those
/// that `base`'s children get. Failing is normal where they are not
/// delegated (bosun shares its cgroup with other processes).
fn enable_controllers(parent: &Path, base: &Path) -> Vec<Controller> {
    let available = std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
    let mut enabled = Vec::new();
    for controller in Controller::ALL {
        if !available.split_whitespace().any(|c| c == controller.name()) {
            continue;
        }
        let plus = format!("+{}", controller.name());
        let parent_ok = std::fs::read_to_string(parent.join("cgroup.subtree_control"))
            .is_ok_and(|s| s.split_whitespace().any(|c| c == controller.name()))
            || write_file(&parent.join("cgroup.subtree_control"), &plus).is_ok();
        if parent_ok && write_file(&base.join("cgroup.subtree_control"), &plus).is_ok() {
            enabled.push(controller);
        }
    }
    enabled
}

/// Write `limits`' value for `controller` in cgroup `version` at `dir`;
/// an unset limit is written as "no limit", so removing one from the
/// config takes effect.
fn set_limit(
    dir: &Path,
    controller: Controller,
    version: u8,
    limits: &Limits,
) -> anyhow::Result<()> {
    const PERIOD: u64 = 100_000;
    let quota = limits.cpu.map(|c| ((c * PERIOD as f64) as u64).max(1000));
    match (controller, version) {
        (Controller::Memory, 2) => write_file(
            &dir.join("memory.max"),
            &limits
                .memory
                .map_or("max".into(), |m| m.as_u64().to_string()),
        ),
        (Controller::Memory, _) => write_file(
            &dir.join("memory.limit_in_bytes"),
            &limits
                .memory
                .map_or("-1".into(), |m| m.as_u64().to_string()),
        ),
        (Controller::Cpu, 2) => write_file(
            &dir.join("cpu.max"),
            &format!("{} {PERIOD}", quota.map_or("max".into(), |q| q.to_string())),
        ),
        (Controller::Cpu, _) => {
            write_file(&dir.join("cpu.cfs_period_us"), &PERIOD.to_string())?;
            write_file(
                &dir.join("cpu.cfs_quota_us"),
                &quota.map_or("-1".into(), |q| q.to_string()),
            )
        }
        (Controller::Pids, _) => write_file(
            &dir.join("pids.max"),
            &limits.pids.map_or("max".into(), |p| p.to_string()),
        ),
    }
}

/// A project's cgroups.
#[derive(Debug)]
pub(crate) struct ProjectCgroup {
    v2: Option<PathBuf>,
    v1: Vec<Arc<OwnedFd>>,
}

impl ProjectCgroup {
    /// A leaf for one program (or one instance, across its restarts).
    pub(crate) fn leaf(&self, name: &str) -> std::io::Result<Option<Leaf>> {
        let Some(project) = &self.v2 else {
            return Ok(None);
        };
        let dir = project.join(name);
        mkdir(&dir)?;
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))?;
        Ok(Some(Leaf {
            dir,
            procs: Arc::new(procs.into()),
        }))
    }

    /// Freeze the project's leaves whose names `pick` says; `None`
    /// without cgroup2 or its freezer.
    pub(crate) fn freeze(&self, pick: impl Fn(&str) -> bool) -> Option<Frozen> {
        let project = self.v2.as_ref()?;
        let dirs = std::fs::read_dir(project)
            .ok()?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let name = entry.file_name();
                let dir = entry.file_type().ok()?.is_dir().then(|| entry.path())?;
                pick(name.to_str()?).then_some(dir)
            })
            .collect();
        Frozen::new(dirs)
    }

    /// The `cgroup.procs` of each v1 hierarchy: a program joins by writing
    /// "0" to each.
    pub(crate) fn v1_procs(&self) -> impl Iterator<Item = Arc<OwnedFd>> + '_ {
        self.v1.iter().cloned()
    }
}
