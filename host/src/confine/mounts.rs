//! The mount namespace of a confined program (when bosun is root).
//!
//! - **A private `/tmp` and `/dev/shm`:** per-project dirs under the state
//!   dir (root-owned, mode 1777, like the real ones), bind-mounted over
//!   them. All of a project's programs share them, as a systemd service's
//!   `PrivateTmp=` does; no other project sees them. They are emptied at
//!   each start of bosun.
//! - **A `/proc` that shows only its own processes:** a procfs instance of
//!   the project's, mounted once with `hidepid=invisible` and bound over
//!   `/proc`, so no command line of another tenant or of bosun's own git
//!   (whose arguments may name things a tenant should not see) is listed.
//! - **Paths it needs keep their names.** A project dir (or a `read_only`
//!   path) that its identity could not reach by name (an ancestor it may
//!   not search, like `/root`, or a place under `/tmp`, which the private
//!   `/tmp` hides) is bound back at its own path: inside the private tmp
//!   for places under `/tmp`, else on a small tmpfs laid over the blocking
//!   ancestor, which also hides whatever else was there. Programs and git
//!   then find their files by absolute path, as anywhere else.
//!
//! Everything the child needs is prepared here, before the fork: the
//! child only makes the calls.

use std::ffi::CString;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt as _};

use super::dirs;
use super::identity::Identity;

/// One step of the child's mount setup.
#[derive(Debug)]
pub(crate) enum Step {
    /// Attach the detached mount tree `tree` (a clone made by `open_tree`
    /// before the fork) over `target`.
    Attach { tree: RawFd, target: CString },
    /// A small root-owned tmpfs over `target`.
    Skeleton { target: CString },
    /// Make a directory (an existing one is fine).
    Mkdir(CString),
}

/// The child's mount steps, and the mount trees they attach (kept open
/// until the spawn is done).
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub steps: Vec<Step>,
    sources: Vec<OwnedFd>,
}

/// A project's private tmp and shm dirs on the host.
#[derive(Debug, Clone)]
pub(crate) struct Private {
    pub tmp: PathBuf,
    pub shm: Option<PathBuf>,
    /// A procfs of the project's own, mounted with `hidepid=invisible`:
    /// its programs see only the processes they could trace (their own),
    /// not other tenants' or bosun's command lines. None where the kernel
    /// (before 5.8) or the host does not allow it.
    pub proc: Option<PathBuf>,
    /// Whether this bosun mounted it (else one left mounted was reused).
    mounted_proc: bool,
}

impl Private {
    /// The private dirs of a project under `dir`: created, and emptied
    /// when `fresh` (the server's start).
    pub(crate) fn prepare(dir: &Path, fresh: bool) -> anyhow::Result<Self> {
        let tmp = dir.join("tmp");
        sticky(&tmp, fresh)?;
        let shm = if Path::new("/dev/shm").is_dir() {
            let shm = dir.join("shm");
            sticky(&shm, fresh)?;
            Some(shm)
        } else {
            None
        };
        let (proc, mounted_proc) = match own_proc(&dir.join("proc")) {
            Ok((proc, mounted)) => (Some(proc), mounted),
            Err(e) => {
                tracing::warn!("no private /proc ({e:#}): other users' processes stay visible");
                (None, false)
            }
        };
        Ok(Self {
            tmp,
            shm,
            proc,
            mounted_proc,
        })
    }

    /// Unmount the private procfs when done: the server always, a guest
    /// (`bosun exec`) only one it mounted itself.
    pub(crate) fn release(&self, server: bool) {
        if let Some(proc) = self.proc.as_ref().filter(|_| server || self.mounted_proc) {
            let _ = nix::mount::umount2(proc, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A `hidepid=invisible` procfs at `dir`, and whether it was mounted now
/// (one left mounted by a killed bosun, or by the server beside a guest,
/// is reused).
fn own_proc(dir: &Path) -> anyhow::Result<(PathBuf, bool)> {
    const PROC_SUPER_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::PROC_SUPER_MAGIC;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if nix::sys::statfs::statfs(dir).is_ok_and(|s| s.filesystem_type() == PROC_SUPER_MAGIC) {
        return Ok((dir.to_path_buf(), false));
    }
    use nix::mount::MsFlags;
    nix::mount::mount(
        Some("proc"),
        dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("hidepid=invisible"),
    )
    .with_context(|| format!("mounting a procfs at {}", dir.display()))?;
    Ok((dir.to_path_buf(), true))
}

/// `dir` as a root-owned 1777 dir, emptied when `fresh`. Whatever a
/// program left in it is removed without following any link it planted.
fn sticky(dir: &Path, fresh: bool) -> anyhow::Result<()> {
    if dir.exists() && fresh {
        dirs::empty(dir).with_context(|| format!("emptying {}", dir.display()))?;
    } else if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}

/// The mount steps that give `id` its private tmp and make each of
/// `needed` (absolute, resolved paths) reachable at its own path.
pub(crate) fn plan(private: &Private, needed: &[&Path], id: &Identity) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    plan.bind(&private.tmp, Path::new("/tmp"))?;
    if let Some(shm) = &private.shm {
        plan.bind(shm, Path::new("/dev/shm"))?;
    }
    if let Some(proc) = &private.proc {
        plan.bind(proc, Path::new("/proc"))?;
    }
    let tmp = Path::new("/tmp");
    let mut skeletons: Vec<PathBuf> = needed
        .iter()
        .filter(|p| !p.starts_with(tmp))
        .filter_map(|p| blocked_ancestor(p, id))
        .collect();
    skeletons.sort();
    skeletons.dedup();
    let outer: Vec<PathBuf> = skeletons
        .iter()
        .filter(|s| !skeletons.iter().any(|o| o != *s && s.starts_with(o)))
        .cloned()
        .collect();
    for s in &outer {
        plan.steps.push(Step::Skeleton { target: c_path(s)? });
    }
    let mut binds = Plan::default();
    for path in needed {
        if let Ok(rel) = path.strip_prefix(tmp) {
            make_chain(&private.tmp, rel)?;
        } else if let Some(base) = outer.iter().find(|o| path.starts_with(o)) {
            let mut at = base.clone();
            for part in path.strip_prefix(base).unwrap_or(path).components() {
                at.push(part);
                plan.steps.push(Step::Mkdir(c_path(&at)?));
            }
        } else {
            continue;
        }
        binds.bind(path, path)?;
    }
    plan.steps.extend(binds.steps);
    plan.sources.extend(binds.sources);
    Ok(plan)
}

impl Plan {
    /// Bind `source` over `target`: a clone of its mount tree is made now,
    /// in bosun's namespace, and attached in the child's. (A path or an
    /// `O_PATH` fd will not do: the first may be covered by then, and a
    /// mount of another namespace cannot be bound.)
    fn bind(&mut self, source: &Path, target: &Path) -> anyhow::Result<()> {
        let tree = open_tree(source)
            .with_context(|| format!("cloning the mount of {}", source.display()))?;
        self.steps.push(Step::Attach {
            tree: tree.as_raw_fd(),
            target: c_path(target)?,
        });
        self.sources.push(tree);
        Ok(())
    }
}

/// A detached clone of the mount tree at `path` (`open_tree(2)` with
/// `OPEN_TREE_CLONE`, Linux 5.2).
fn open_tree(path: &Path) -> std::io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let path = c_path(path).map_err(std::io::Error::other)?;
    // SAFETY: open_tree reads a NUL-terminated path that outlives the call
    // and returns a new fd, which is owned from here on.
    #[allow(unsafe_code)]
    unsafe {
        let fd = libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd as RawFd))
    }
}

/// The outermost ancestor of `path` (below `/`) that `id` may not search.
fn blocked_ancestor(path: &Path, id: &Identity) -> Option<PathBuf> {
    let mut at = PathBuf::from("/");
    for part in path.parent()?.components().skip(1) {
        at.push(part);
        let meta = std::fs::metadata(&at).ok()?;
        let mode = meta.mode();
        let bit = if meta.uid() == id.uid {
            0o100
        } else if meta.gid() == id.gid {
            0o010
        } else {
            0o001
        };
        if mode & bit == 0 {
            return Some(at);
        }
    }
    None
}

/// Root-owned 0755 dirs for each step of `rel` inside the private tmp, as
/// mount points. A program of the project can write the tmp dir itself,
/// so an entry in the way that is not a root-owned dir is removed first;
/// nothing is ever followed out of the dir.
fn make_chain(tmp: &Path, rel: &Path) -> anyhow::Result<()> {
    let root = Dir::open_ambient_dir(tmp, ambient_authority())
        .with_context(|| format!("opening {}", tmp.display()))?;
    let mut at = PathBuf::new();
    for part in rel.components() {
        let Component::Normal(part) = part else {
            continue;
        };
        at.push(part);
        match root.symlink_metadata(&at) {
            Ok(m) if m.is_dir() && m.uid() == 0 => continue,
            Ok(m) if m.is_dir() => root.remove_dir_all(&at)?,
            Ok(_) => root.remove_file(&at)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        match root.create_dir(&at) {
            // Another spawn of the project made it just now.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if !root
                    .symlink_metadata(&at)
                    .is_ok_and(|m| m.is_dir() && m.uid() == 0)
                {
                    anyhow::bail!("{}/{} is in the way", tmp.display(), at.display());
                }
            }
            other => {
                other.with_context(|| format!("creating {}/{}", tmp.display(), at.display()))?
            }
        }
        let mode = cap_std::fs::Permissions::from_std(std::fs::Permissions::from_mode(0o755));
        root.set_permissions(&at, mode)?;
    }
    Ok(())
}

fn c_path(path: &Path) -> anyhow::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} has a NUL byte", path.display()))
}
