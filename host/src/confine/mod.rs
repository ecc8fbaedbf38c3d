//! Confinement: everything bosun starts on a project's behalf (its
//! supervised processes, the programs its plugins run through `commands`,
//! and git in its work tree) runs as that project, seeing only its own
//! files.
//!
//! # Theory of operation
//!
//! The WebAssembly sandbox holds a plugin; it does not hold what the host
//! runs *for* the plugin. A plugin writes the project's files (its `.git`
//! included), and the project's processes and build steps run those files,
//! so they are as untrusted as the plugin. Every such program therefore
//! starts through one spawn path, [`Jail::command`], which gives it, in one
//! `pre_exec` hook (see `child`):
//!
//! | layer | what it holds | needs |
//! |---|---|---|
//! | identity | its own uid/gid (allocated or named), no groups, no capabilities | root |
//! | Landlock | read-write: its dir and private tmp; read-only: the system; nothing else; signals and abstract sockets scoped | Landlock (ABI ≥ 1; full at 6) |
//! | mount namespace | a private `/tmp` and `/dev/shm` | root |
//! | network namespace | no network, for programs configured so | root (else Landlock denies TCP) |
//! | cgroups | a leaf per program (`cgroup.kill` stops all of it), limits per project | a writable cgroup2; v1 or v2 controllers |
//! | rlimits | `nofile`; `memory`/`pids` where no controller does it | nothing |
//! | environment | cleared, then a fixed base, `.env`, the config's `env` | nothing |
//! | `no_new_privs` | no setuid or file-capability gain | nothing |
//!
//! Each layer is used where the host has it and reported where it does
//! not ([`Report`]); bosun as root gets all of them without any config.
//! `unconfined = true` opts a project out of identity, Landlock and the
//! namespaces (not of cgroups, limits or the clean environment), and bosun
//! says so at every start.

mod cgroup;
mod child;
mod command;
mod dirs;
mod env;
mod fsview;
mod identity;
mod jail;
mod mounts;
mod report;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use sha2::{Digest, Sha256};

pub use cgroup::{Frozen, Leaf};
pub use child::reserve_low_fds;
pub use command::{GroupKill, JailCommand, Jailed, SpawnError};
pub use identity::{Identity, IdentityError};
pub use jail::Jail;
pub use report::{IdentityReport, Report};

use crate::config::{Config, ProjectConfig, lexical, resolved, resolved_short_of};
use cgroup::{HostCgroups, Tree};
use fsview::{Enforcement, FsView};
use identity::Allocations;
use jail::Shared;

/// Refuse a plugin's variables for a program when any could make a loader
/// or interpreter run code of the plugin's choosing (see `env`).
pub fn check_plugin_env(vars: &[(String, String)]) -> Result<(), String> {
    env::refused(vars).map_or(Ok(()), Err)
}

/// Grace given to programs a previous bosun left in its cgroups.
const LEFTOVER_GRACE: Duration = Duration::from_secs(5);

/// Why confinement could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A project's identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Anything else, with its context.
    #[error("setting up confinement: {0:#}")]
    Setup(#[from] anyhow::Error),
}

/// What this host offers, found once at start.
struct HostLayers {
    root: bool,
    landlock: Enforcement,
    landlock_abi: i32,
    cgroups: HostCgroups,
    /// The highest capability number, for emptying the bounding set.
    cap_last: u32,
    /// bosun's own hard limit of open files: a child cannot get more.
    nofile_hard: u64,
    /// The soft limit bosun was started with: what a program gets when its
    /// project sets none (bosun raises its own; see [`raise_open_files`]).
    nofile_soft: u64,
}

/// The open-files soft limit bosun was started with, once it has raised
/// its own.
static STARTED_NOFILE: OnceLock<u64> = OnceLock::new();

/// Raise bosun's own soft limit of open files to its hard limit, as nginx
/// and Go programs do: every connection, log and child pipe is a
/// descriptor, and the usual soft default (1024) is what a few hundred
/// clients exhaust. The programs bosun starts get the limit it was started
/// with back, so a program that expects 1024 (`select`) sees 1024.
/// Returns the limit now in force.
/// After an upgrade, `started` is the limit the first image was started
/// with (the running one was raised by it).
pub fn raise_open_files(started: Option<u64>) -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    let _ = STARTED_NOFILE.set(started.unwrap_or(soft));
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(e) => {
            tracing::warn!("could not raise the open-files limit from {soft} to {hard}: {e}");
            soft
        }
    }
}

/// The open-files limit bosun was started with, which its programs get.
pub fn started_open_files() -> Option<u64> {
    STARTED_NOFILE.get().copied()
}

impl HostLayers {
    fn detect() -> Self {
        let (landlock, landlock_abi) = fsview::probe();
        let (nofile_soft, nofile_hard) =
            getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((u64::MAX, u64::MAX));
        Self {
            root: nix::unistd::geteuid().is_root(),
            landlock,
            landlock_abi,
            cgroups: HostCgroups::detect(),
            cap_last: std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(40),
            nofile_hard,
            nofile_soft: STARTED_NOFILE.get().copied().unwrap_or(nofile_soft),
        }
    }
}

/// Every project's [`Jail`], and this bosun's cgroups.
pub struct Confinement {
    /// Held only for a lookup, or a reload's insert or removal.
    jails: RwLock<BTreeMap<String, Arc<Jail>>>,
    tree: Option<Arc<Tree>>,
    host: HostLayers,
    state_dir: PathBuf,
    leftovers_stopped: usize,
    owner: bool,
    /// Set when an upgrade hands the jails and cgroups to the next image:
    /// nothing is removed or unmounted then.
    kept: AtomicBool,
}

/// Who sets confinement up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `bosun serve`: owns the state dir's cgroups and private tmp dirs;
    /// stops what a killed predecessor left, empties the tmp dirs, and
    /// removes its cgroups when done.
    Server,
    /// `bosun serve` started by an upgrade: the server's, but what the
    /// previous image left (its running programs, their tmp dirs) is
    /// adopted, not swept or emptied.
    Successor,
    /// `bosun exec` beside a server that may be running: the same
    /// identities and private tmp dirs (left as they are), and cgroups of
    /// its own, removed when it is done.
    Guest,
}

impl Confinement {
    /// Set up every project's confinement: identities (allocated and
    /// persisted), ownership of project dirs, private tmp dirs; cgroups
    /// with limits are made before a project's first program starts, or
    /// by [`Confinement::make_cgroups`]. As the [`Role::Server`], stops
    /// what a previous bosun left in its cgroups first.
    pub async fn start(config: &Config, role: Role) -> Result<Self, ConfineError> {
        let host = HostLayers::detect();
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("creating {}", config.state_dir.display()))?;
        let state_dir = config
            .state_dir
            .canonicalize()
            .context("resolving the state dir")?;
        // Job logs, identities and process state of every tenant live here.
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o700))
            .context("making the state dir bosun's alone")?;
        let tag = match role {
            Role::Server | Role::Successor => tag(&state_dir),
            Role::Guest => format!("{}-exec-{}", tag(&state_dir), std::process::id()),
        };
        if host.root
            && config.confinement.favordynmods
            && let Some(note) = cgroup::favor_dynamic_changes(&host.cgroups)
        {
            tracing::info!("{note}");
        }
        let (tree, notes) = if host.cgroups.any() {
            let (tree, notes) = Tree::setup(&host.cgroups, &tag);
            (Some(Arc::new(tree)), notes)
        } else {
            (None, vec!["no cgroup hierarchy is mounted".to_string()])
        };
        for note in &notes {
            tracing::warn!("{note}");
        }
        let owner = role != Role::Guest;
        let leftovers_stopped = match &tree {
            Some(tree) if role == Role::Server => tree.sweep(LEFTOVER_GRACE).await,
            _ => 0,
        };
        let mut allocations = Allocations::load(&state_dir)?;
        let system = FsView::new(&protected(config, &state_dir), &[]);
        let shared = Shared {
            host: &host,
            tree: tree.as_ref(),
            system: &system,
            state_dir: &state_dir,
            owner,
            fresh: role == Role::Server,
        };
        let mut jails = BTreeMap::new();
        let mut uids: BTreeMap<u32, String> = BTreeMap::new();
        for (name, project) in &config.projects {
            let identity = identity_of(&host, name, project, config, &mut allocations)?;
            if let Some(id) = &identity
                && let Some(other) = uids.insert(id.uid, name.clone())
            {
                tracing::warn!(
                    project = name,
                    other,
                    uid = id.uid,
                    "two projects run as one user: the kernel's permissions do not keep them apart, only Landlock does"
                );
            }
            // One project's failure (a dir it filled with something bosun
            // cannot clear) must not keep the others from starting.
            let jail = Jail::setup(&shared, name, project, identity).unwrap_or_else(|e| {
                let why = format!("{e:#}");
                tracing::error!(project = name, "setting up its confinement: {why}");
                Jail::broken(name, project, why)
            });
            log_report(name, &jail.report);
            jails.insert(name.clone(), Arc::new(jail));
        }
        if owner {
            allocations.save()?;
        }
        Ok(Self {
            jails: RwLock::new(jails),
            tree,
            host,
            state_dir,
            leftovers_stopped,
            owner,
            kept: AtomicBool::new(false),
        })
    }

    /// Set up the jail of `project`, new in `config` (a reload): its
    /// identity is allocated and saved, its dir handed over, its cgroup
    /// made. The caller then [`Confinement::refresh`]es the other jails, so
    /// none of them reads the new project's files.
    pub fn add(&self, config: &Config, project: &str) -> Result<(), ConfineError> {
        let Some(pcfg) = config.projects.get(project) else {
            return Ok(());
        };
        let mut allocations = Allocations::load(&self.state_dir)?;
        let identity = identity_of(&self.host, project, pcfg, config, &mut allocations)?;
        if self.owner {
            allocations.save()?;
        }
        let system = FsView::new(&protected(config, &self.state_dir), &[]);
        let shared = Shared {
            host: &self.host,
            tree: self.tree.as_ref(),
            system: &system,
            state_dir: &self.state_dir,
            owner: self.owner,
            fresh: true,
        };
        let jail = Jail::setup(&shared, project, pcfg, identity).unwrap_or_else(|e| {
            let why = format!("{e:#}");
            tracing::error!(project, "setting up its confinement: {why}");
            Jail::broken(project, pcfg, why)
        });
        log_report(project, &jail.report);
        jail.make_cgroup();
        self.jails_mut().insert(project.to_string(), Arc::new(jail));
        Ok(())
    }

    /// Drop the jail of `project`, removed by a reload (or about to be set
    /// up anew), once its programs have stopped: nothing starts in it any
    /// more, its private mounts are undone, and its cgroups and tmp files
    /// go.
    pub fn remove(&self, project: &str) {
        // Not under the lock: purging empties what the tenant left, and a
        // report or a start of another project must not wait for it.
        let removed = self.jails_mut().remove(project);
        if let Some(jail) = removed {
            jail.retired.store(true, Ordering::SeqCst);
            jail.release(self.owner);
            if self.owner {
                jail.purge();
            }
        }
    }

    /// Leave the cgroups, mounts and tmp dirs as they are for the next
    /// bosun image: an upgrade hands them over with the programs in them.
    pub fn keep(&self) {
        self.kept.store(true, Ordering::SeqCst);
    }

    /// Give every jail `config`'s view of what is protected, for its
    /// programs started from now on.
    pub fn refresh(&self, config: &Config) {
        let system = FsView::new(&protected(config, &self.state_dir), &[]);
        for jail in self.jails().values() {
            jail.refresh_view(&system);
        }
    }

    fn jails(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Jail>>> {
        self.jails.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn jails_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Jail>>> {
        self.jails.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// What each project of `config` would get here, without changing
    /// anything (for `bosun check`): no id is allocated, no cgroup made.
    pub fn inspect(config: &Config) -> BTreeMap<String, Result<Report, String>> {
        let host = HostLayers::detect();
        let mut allocations = Allocations::load(&config.state_dir).ok();
        let state_dir = config
            .state_dir
            .canonicalize()
            .unwrap_or_else(|_| lexical(&config.state_dir));
        let layers = |c| host.cgroups.layer_hint(c);
        config
            .projects
            .iter()
            .map(|(name, project)| {
                // An allocation here is the one the next start would make;
                // nothing is saved.
                let identity = match (&allocations, &project.confinement.user) {
                    _ if project.unconfined || !host.root => Ok(None),
                    (_, Some(user)) => {
                        identity::named(name, user, project.confinement.group.as_deref()).map(Some)
                    }
                    (Some(_), None) => allocations
                        .as_mut()
                        .map(|a| a.allocate(name, config.confinement.id_range))
                        .transpose(),
                    (None, None) => Ok(None),
                };
                let report = identity.map_err(|e| e.to_string()).map(|identity| {
                    let mut report = Jail::report(
                        &host,
                        project,
                        identity.as_ref(),
                        &layers,
                        host.cgroups.has_v2(),
                    );
                    report.cgroup = host
                        .cgroups
                        .leaf_base(&tag(&state_dir))
                        .map(|base| base.join(name).display().to_string());
                    report
                });
                (name.clone(), report)
            })
            .collect()
    }

    /// Make every project's cgroups that no program has needed yet: the
    /// start leaves them for after the API serves (see `OnDemand`), so a
    /// failure is still said at start and a project's first job does not
    /// wait for them.
    pub fn make_cgroups(&self) {
        let jails: Vec<Arc<Jail>> = self.jails().values().cloned().collect();
        for jail in jails {
            jail.make_cgroup();
        }
    }

    /// The jail of `project`.
    pub fn jail(&self, project: &str) -> Option<Arc<Jail>> {
        self.jails().get(project).cloned()
    }

    /// What `project` gets, as of now.
    pub fn report(&self, project: &str) -> Option<Report> {
        let jail = self.jails().get(project).cloned();
        jail.map(|jail| jail.confinement())
    }

    /// How many cgroups of a previous bosun held processes at start.
    pub fn leftovers_stopped(&self) -> usize {
        self.leftovers_stopped
    }

    /// Remove this bosun's cgroups and private mounts; call once every
    /// program has stopped.
    pub fn close(&self) {
        if self.kept.load(Ordering::SeqCst) {
            return;
        }
        for jail in self.jails().values() {
            jail.stop_making_cgroups();
        }
        if let Some(tree) = &self.tree {
            tree.remove();
        }
        for jail in self.jails().values() {
            jail.release(self.owner);
        }
    }
}

impl Drop for Confinement {
    fn drop(&mut self) {
        self.close();
    }
}

/// The cgroup base name of the bosun whose state dir is `state_dir`: two
/// bosuns on one host never share (or sweep) each other's cgroups.
fn tag(state_dir: &Path) -> String {
    let hash = Sha256::digest(state_dir.as_os_str().as_encoded_bytes());
    format!("bosun-{}", &hex::encode(hash)[..12])
}

/// What no project may read: bosun's state, its config and TLS files, its
/// plugins, the log files it writes, and every project's dir (each gets its
/// own back read-write).
fn protected(config: &Config, state_dir: &Path) -> Vec<PathBuf> {
    let resolve = |p: &Path| resolved(p);
    let config_file = resolve(&config.source);
    // The config's whole dir (keys and certificates often sit beside it in
    // /etc/bosun), unless that dir is a system root like /etc itself.
    let config_place = match config_file.parent() {
        Some(dir) if !fsview::is_system_root(dir) => dir.to_path_buf(),
        _ => config_file,
    };
    let mut paths = vec![state_dir.to_path_buf(), config_place];
    if let Some(tls) = &config.server.tls {
        paths.extend([resolve(&tls.cert), resolve(&tls.key)]);
    }
    for project in config.projects.values() {
        let dir = resolve(&project.dir);
        // Its plugins and logs, where they are not in its dir (which is
        // protected already): never resolved through a link inside it,
        // which its programs make (`app.log -> /usr/lib` would otherwise
        // hide /usr/lib from every project).
        let files: Vec<PathBuf> = project
            .actions
            .0
            .values()
            .filter_map(|a| a.path.as_deref())
            .chain(project.merged_log.as_deref())
            .chain(
                project
                    .processes
                    .iter()
                    .filter_map(|p| p.log_file.as_deref()),
            )
            .filter_map(|file| match resolved_short_of(file, &dir) {
                (_, Some(rel)) if !rel.components().any(|c| c == Component::ParentDir) => None,
                (at, _) => Some(lexical(&at)),
            })
            .collect();
        paths.push(dir);
        paths.extend(files);
    }
    paths
}

fn identity_of(
    host: &HostLayers,
    name: &str,
    project: &ProjectConfig,
    config: &Config,
    allocations: &mut Allocations,
) -> Result<Option<Identity>, IdentityError> {
    if project.unconfined || !host.root {
        return Ok(None);
    }
    match &project.confinement.user {
        Some(user) => identity::named(name, user, project.confinement.group.as_deref()).map(Some),
        None => allocations
            .allocate(name, config.confinement.id_range)
            .map(Some),
    }
}

fn log_report(project: &str, report: &Report) {
    if report.mode == "unconfined" {
        tracing::warn!(
            project,
            "UNCONFINED (unconfined = true): its processes, commands and git run as bosun's own user and see every file bosun sees"
        );
        return;
    }
    tracing::info!(project, "confined {}", report.summary());
    for missing in &report.missing {
        tracing::warn!(project, "confinement: {missing}");
    }
}
