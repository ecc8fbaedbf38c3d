//! One project's jail: what every program started for it gets, set up once
//! at start (identity handed its dir, private tmp, file view; its cgroups
//! with their limits before its first program, see `OnDemand`), and the
//! report of what that amounted to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use anyhow::Context as _;
use landlock::RulesetCreated;
use nix::sys::resource::Resource;

use super::cgroup::{Controller, Frozen, OnDemand, ProjectCgroup, TRANSIENT, Tree, Unavailable};
use super::fsview::{Enforcement, FsView};
use super::identity::{self, Identity};
use super::mounts::Private;
use super::report::{IdentityReport, Report};
use super::{HostLayers, Leaf};
use crate::config::{ProjectConfig, lexical};

/// What every project's setup shares.
#[derive(Clone, Copy)]
pub(super) struct Shared<'a> {
    pub(super) host: &'a HostLayers,
    pub(super) tree: Option<&'a Arc<Tree>>,
    pub(super) system: &'a FsView,
    pub(super) state_dir: &'a Path,
    /// Whether this is the server (see [`Role`]).
    pub(super) owner: bool,
    /// Whether private tmp dirs start empty (not after an upgrade, whose
    /// programs still use theirs).
    pub(super) fresh: bool,
}

/// One project's confinement: what each program started for it gets.
pub struct Jail {
    pub(super) project: String,
    pub(super) dir: PathBuf,
    pub(super) unconfined: bool,
    pub(super) identity: Option<Identity>,
    /// What its programs may see; a reload that adds a project hides that
    /// project's files from programs started after it.
    pub(super) fs: RwLock<Option<FsView>>,
    /// Paths it sees beyond the system's view where they exist: its
    /// read-only extras and its `/proc` (and its cgroups: see `file_view`).
    view_extra: Vec<PathBuf>,
    pub(super) private: Option<Private>,
    pub(super) tmpdir: PathBuf,
    pub(super) netns: bool,
    cgroup: Option<OnDemand>,
    pub(super) rlimits: Vec<(Resource, u64)>,
    pub(super) drop_bounding: Option<u32>,
    pub(super) read_only: Vec<PathBuf>,
    pub(super) report: Report,
    /// Why its setup failed, if it did: nothing starts for it.
    pub(super) broken: Option<String>,
    /// Set when a reload removed the project or set its jail up anew:
    /// nothing starts in this one any more.
    pub(super) retired: AtomicBool,
    rulesets: Mutex<Vec<CachedRuleset>>,
    leaves: AtomicU64,
}

impl std::fmt::Debug for Jail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jail")
            .field("project", &self.project)
            .field("dir", &self.dir)
            .field("mode", &self.report.mode)
            .finish_non_exhaustive()
    }
}

/// A built ruleset, valid while the project dir is the same inode.
struct CachedRuleset {
    network: bool,
    dir: (u64, u64),
    ruleset: Arc<RulesetCreated>,
}

impl Jail {
    pub(super) fn setup(
        shared: &Shared<'_>,
        name: &str,
        project: &ProjectConfig,
        identity: Option<Identity>,
    ) -> anyhow::Result<Self> {
        let Shared {
            host,
            tree,
            system,
            state_dir,
            owner,
            fresh,
        } = *shared;
        let dir = project
            .dir
            .canonicalize()
            .unwrap_or_else(|_| lexical(&project.dir));
        let mut handover = None;
        if let Some(id) = &identity
            && owner
            && dir.is_dir()
        {
            // A failure here costs this project only (its programs may not
            // be able to write their dir); it is reported, not fatal.
            let done = identity::give_dir(&dir, id).unwrap_or_else(|e| {
                let why = format!("handing {} to {}: {e:#}", dir.display(), id.name);
                tracing::error!(project = name, "{why}");
                handover = Some(why);
                identity::Handover::default()
            });
            if done.changed > 0 {
                tracing::info!(
                    project = name,
                    files = done.changed,
                    uid = id.uid,
                    "the project dir now belongs to the project's user"
                );
            }
            if done.shared > 0 {
                tracing::warn!(
                    project = name,
                    files = done.shared,
                    "left files with other hard links to their owners"
                );
            }
            if done.deep > 0 {
                tracing::warn!(
                    project = name,
                    dirs = done.deep,
                    "left dirs nested deeper than 256 levels to their owners"
                );
            }
        }
        let cgroup = tree.map(|t| OnDemand::new(t.clone(), name, &project.limits));
        let confined = !project.unconfined;
        let own = state_dir.join("projects").join(name);
        let private = if confined && host.root {
            Some(Private::prepare(&own, owner && fresh)?)
        } else {
            None
        };
        let tmpdir = match &private {
            Some(_) => PathBuf::from("/tmp"),
            None => {
                let tmp = own.join("tmp");
                std::fs::create_dir_all(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                tmp
            }
        };
        let read_only: Vec<PathBuf> = project
            .confinement
            .read_only
            .iter()
            .map(|p| p.canonicalize().unwrap_or_else(|_| lexical(p)))
            .collect();
        let mut view_extra = read_only.clone();
        view_extra.extend(private.as_ref().and_then(|p| p.proc.clone()));
        let fs = confined.then(|| file_view(system, &view_extra, cgroup.as_ref()));
        let layers = |c| tree.and_then(|t| t.layer(c));
        let report = Self::report(
            host,
            project,
            identity.as_ref(),
            &layers,
            tree.is_some_and(|t| t.has_leaves()),
        );
        let mut report = report;
        report.missing.extend(handover);
        // As planned, for the log at start; `confinement` says what is.
        report.cgroup = cgroup
            .as_ref()
            .and_then(OnDemand::v2_dir)
            .map(|dir| dir.display().to_string());
        Ok(Self {
            project: name.to_string(),
            dir,
            unconfined: project.unconfined,
            rlimits: rlimits(host, project, identity.is_some(), &layers),
            drop_bounding: (confined && host.root).then_some(host.cap_last),
            netns: confined && host.root,
            identity,
            fs: RwLock::new(fs),
            view_extra,
            private,
            tmpdir,
            cgroup,
            read_only,
            report,
            broken: None,
            retired: AtomicBool::new(false),
            rulesets: Mutex::new(Vec::new()),
            leaves: AtomicU64::new(first_leaf()),
        })
    }

    /// The jail of a project whose setup failed: every program it would
    /// start fails with `why`, and the other projects run as usual.
    pub(super) fn broken(name: &str, project: &ProjectConfig, why: String) -> Self {
        Self {
            project: name.to_string(),
            dir: lexical(&project.dir),
            unconfined: project.unconfined,
            identity: None,
            fs: RwLock::new(None),
            view_extra: Vec::new(),
            private: None,
            tmpdir: PathBuf::from("/tmp"),
            netns: false,
            cgroup: None,
            rlimits: Vec::new(),
            drop_bounding: None,
            read_only: Vec::new(),
            report: Report {
                mode: "broken".into(),
                identity: None,
                landlock: "none".into(),
                landlock_abi: 0,
                private_tmp: false,
                network_namespace: false,
                cgroup: None,
                limits: BTreeMap::new(),
                missing: vec![format!(
                    "everything: setting up its confinement failed: {why}"
                )],
            },
            broken: Some(why),
            retired: AtomicBool::new(false),
            rulesets: Mutex::new(Vec::new()),
            leaves: AtomicU64::new(first_leaf()),
        }
    }

    /// The report of a project with these layers.
    pub(super) fn report(
        host: &HostLayers,
        project: &ProjectConfig,
        identity: Option<&Identity>,
        layer: &dyn Fn(Controller) -> Option<&'static str>,
        leaves: bool,
    ) -> Report {
        let confined = !project.unconfined;
        let mut missing = Vec::new();
        if confined && !host.root {
            missing.push("own user: bosun is not root, so its programs run as bosun's user".into());
            missing.push(
                "separation from bosun itself: sharing its user, a program can change bosun's \
                 resource limits and priority and the modes of its files (Landlock does not \
                 cover prlimit, setpriority or chmod)"
                    .into(),
            );
            missing.push("private /tmp and network namespace: need root".into());
            if project.confinement.user.is_some() {
                missing.push("`confinement.user` is ignored: switching users needs root".into());
            }
        }
        if confined && host.landlock != Enforcement::Full {
            missing.push(format!(
                "Landlock is {} on this kernel (ABI {}): file access is {}",
                host.landlock.as_str(),
                host.landlock_abi,
                if host.landlock == Enforcement::None {
                    "not restricted beyond the user's permissions"
                } else {
                    "restricted with the rights this kernel knows"
                }
            ));
        }
        if !leaves {
            missing.push(
                "no cgroup2 leaf per program: a process that leaves its process group survives a stop"
                    .into(),
            );
        }
        let mut limits = BTreeMap::new();
        let l = &project.limits;
        let mut limit = |name: &str,
                         value: Option<String>,
                         controller: Option<Controller>,
                         fallback: Option<&str>| {
            let Some(value) = value else { return };
            let by = controller.and_then(layer).or(fallback);
            match by {
                Some(by) => {
                    limits.insert(name.to_string(), format!("{value} ({by})"));
                }
                None => missing.push(format!(
                    "limit `{name}` ({value}) is not enforced: no {name} controller"
                )),
            }
        };
        limit(
            "memory",
            l.memory.map(|m| m.to_string()),
            Some(Controller::Memory),
            Some("rlimit AS, per process"),
        );
        limit(
            "cpu",
            l.cpu.map(|c| format!("{c} cores")),
            Some(Controller::Cpu),
            None,
        );
        limit(
            "pids",
            l.pids.map(|p| p.to_string()),
            Some(Controller::Pids),
            identity.is_some().then_some("rlimit NPROC, per user"),
        );
        limit(
            "nofile",
            l.nofile.map(|n| n.min(host.nofile_hard).to_string()),
            None,
            Some("rlimit"),
        );
        Report {
            mode: if confined { "confined" } else { "unconfined" }.into(),
            identity: identity.map(|id| IdentityReport {
                user: id.name.clone(),
                uid: id.uid,
                gid: id.gid,
                allocated: id.allocated,
            }),
            landlock: if confined {
                host.landlock.as_str()
            } else {
                "none"
            }
            .into(),
            landlock_abi: host.landlock_abi,
            private_tmp: confined && host.root,
            network_namespace: confined && host.root,
            cgroup: None,
            limits,
            missing: if confined { missing } else { Vec::new() },
        }
    }

    /// See the system as `system` from the next program on (a reload
    /// changed what is protected); programs already running keep the view
    /// they started with.
    pub(super) fn refresh_view(&self, system: &FsView) {
        let mut fs = self.fs.write().unwrap_or_else(PoisonError::into_inner);
        if fs.is_some() {
            *fs = Some(file_view(system, &self.view_extra, self.cgroup.as_ref()));
            self.rulesets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// Unmount what the jail mounted on the host.
    pub(super) fn release(&self, server: bool) {
        if let Some(private) = &self.private {
            private.release(server);
        }
    }

    /// Leave nothing of the project behind once a reload removed it and
    /// its programs have stopped: its cgroups, and what it left in its
    /// private tmp (another project may one day get its name).
    pub(super) fn purge(&self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.remove();
        }
        let tmp = match &self.private {
            Some(p) => [Some(&p.tmp), p.shm.as_ref()],
            None => [Some(&self.tmpdir), None],
        };
        for dir in tmp.into_iter().flatten() {
            if dir.exists()
                && let Err(e) = super::dirs::empty(dir)
            {
                tracing::warn!(project = %self.project, "emptying {}: {e:#}", dir.display());
            }
        }
    }

    /// The project's name.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The project dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What this project gets, as of now: its cgroup once made, and why
    /// it could not be if the last try failed.
    pub fn confinement(&self) -> Report {
        let mut report = self.report.clone();
        if let Some(cgroup) = &self.cgroup {
            report.cgroup = match cgroup.made() {
                Ok(dir) => dir.map(|d| d.display().to_string()),
                Err(why) => {
                    report.missing.push(format!(
                        "cgroups: making them failed ({why}); none of its programs starts until they can be made"
                    ));
                    None
                }
            };
        }
        report
    }

    /// The uid and gid its programs run as, if not bosun's own.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The project's cgroups, made with their limits if they are not yet;
    /// `None` where the host has none. Every program start asks first.
    pub(super) fn cgroup(&self) -> Result<Option<Arc<ProjectCgroup>>, Unavailable> {
        self.cgroup.as_ref().map(OnDemand::get).transpose()
    }

    /// Make the project's cgroups now, if they are not yet, saying so if
    /// they cannot be: its programs will not start until they can.
    pub(super) fn make_cgroup(&self) {
        match self.cgroup() {
            Ok(_) | Err(Unavailable::Retired) => {}
            Err(e @ Unavailable::Failed { .. }) => tracing::error!(
                project = %self.project,
                "making its cgroups: {e}; none of its programs starts until they can be made"
            ),
        }
    }

    /// Make no cgroup for it from now on: bosun is removing them.
    pub(super) fn stop_making_cgroups(&self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.retire();
        }
    }

    /// Whether `e`, from [`Jail::leaf`], may go away by itself.
    pub(crate) fn leaf_failure_is_transient(e: &std::io::Error) -> bool {
        e.raw_os_error().is_some_and(|n| TRANSIENT.contains(&n))
            || e.get_ref()
                .and_then(|inner| inner.downcast_ref::<Unavailable>())
                .is_some_and(Unavailable::is_transient)
    }

    /// A cgroup leaf named `name` for a program of this project (or an
    /// instance, across its restarts); None without cgroup2.
    pub fn leaf(&self, name: &str) -> std::io::Result<Option<Leaf>> {
        match self.cgroup().map_err(std::io::Error::other)? {
            Some(cg) => cg.leaf(name),
            None => Ok(None),
        }
    }

    /// Freeze the leaves whose names `pick` says, until the guard drops;
    /// `None` where there is no cgroup2 or its freezer.
    pub(crate) fn freeze(&self, pick: impl Fn(&str) -> bool) -> Option<Frozen> {
        self.cgroup().ok()??.freeze(pick)
    }

    /// A fresh leaf for one run of `kind` (`cmd`, `git`).
    pub(crate) fn fresh_leaf(&self, kind: &str) -> std::io::Result<Option<Leaf>> {
        let n = self.leaves.fetch_add(1, Ordering::Relaxed);
        self.leaf(&format!("{kind}.{}.{n}", std::process::id()))
    }

    /// The Landlock ruleset for a program writing `rw` (the project dir
    /// unless given), cached per network setting while the project dir is
    /// the same.
    pub(super) fn ruleset(
        &self,
        workdir: Option<&Path>,
        network: bool,
    ) -> anyhow::Result<Option<Arc<RulesetCreated>>> {
        let fs = self.fs.read().unwrap_or_else(PoisonError::into_inner);
        let Some(fs) = fs.as_ref() else {
            return Ok(None);
        };
        let dir = workdir.unwrap_or(&self.dir);
        let mut rw = vec![dir];
        match &self.private {
            Some(p) => {
                rw.push(&p.tmp);
                rw.extend(p.shm.as_deref());
            }
            None => rw.push(&self.tmpdir),
        }
        if workdir.is_some() {
            return Ok(Some(Arc::new(fs.ruleset(&rw, network)?)));
        }
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
        let id = (meta.dev(), meta.ino());
        let mut cache = self.rulesets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cache.iter().find(|c| c.network == network && c.dir == id) {
            return Ok(Some(c.ruleset.clone()));
        }
        let ruleset = Arc::new(fs.ruleset(&rw, network)?);
        cache.retain(|c| c.network != network);
        cache.push(CachedRuleset {
            network,
            dir: id,
            ruleset: ruleset.clone(),
        });
        Ok(Some(ruleset))
    }
}

impl Jail {
    /// The ruleset of a helper reading only `dir` (and the system).
    pub(super) fn helper_ruleset(&self, dir: &Path) -> anyhow::Result<Option<Arc<RulesetCreated>>> {
        match self
            .fs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            Some(fs) => Ok(Some(Arc::new(
                fs.with(&[dir.to_path_buf()]).ruleset(&[], false)?,
            ))),
            None => Ok(None),
        }
    }
}

/// What a project's programs see: `system`, its `extra` paths where they
/// exist, and its own cgroups, made or to be made (so a runtime can learn
/// its limits; they are made before its first program starts).
fn file_view(system: &FsView, extra: &[PathBuf], cgroup: Option<&OnDemand>) -> FsView {
    system
        .with(extra)
        .with_made_later(&cgroup.map(OnDemand::dirs).unwrap_or_default())
}

/// The first number of a jail's run leaves (`cmd.<pid>.<n>`): from the
/// clock, so an image that an upgrade started in the same pid never takes
/// a name its predecessor's leftovers may still hold.
fn first_leaf() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The rlimits a project's programs get: `nofile` always (the project's,
/// or the one bosun was started with); `memory` and `pids` where no cgroup
/// controller holds them.
fn rlimits(
    host: &HostLayers,
    project: &ProjectConfig,
    own_user: bool,
    layer: &dyn Fn(Controller) -> Option<&'static str>,
) -> Vec<(Resource, u64)> {
    let l = &project.limits;
    let mut out = Vec::new();
    let nofile = l.nofile.unwrap_or(host.nofile_soft);
    out.push((Resource::RLIMIT_NOFILE, nofile.min(host.nofile_hard)));
    if let Some(m) = l.memory
        && layer(Controller::Memory).is_none()
    {
        out.push((Resource::RLIMIT_AS, m.as_u64()));
    }
    if let Some(p) = l.pids
        && own_user
        && layer(Controller::Pids).is_none()
    {
        out.push((Resource::RLIMIT_NPROC, p));
    }
    out
}
