//! What a project's programs may see of the file system, as a Landlock
//! ruleset: read-write on the project dir and its private tmp, read and
//! execute on the system, read-write on a few device nodes, nothing else.
//!
//! - **The system** is `/usr`, `/lib*`, `/bin`, `/sbin`, `/etc`, `/opt`,
//!   `/proc`, `/sys/devices/system/cpu` and a few store dirs where they
//!   exist, plus the targets of name-service files that are links out of
//!   them (`/etc/resolv.conf` into `/run/systemd/resolve`, say).
//! - **Minus bosun's own files.** Landlock can only allow, so a root that
//!   holds something protected (the config in `/etc/bosun`, a state dir or
//!   another project under `/opt`) is granted child by child instead,
//!   leaving out every branch that leads to a protected path. A link is
//!   judged by where it leads.
//! - **The ABI is pinned** to [`ABI`]: the newest whose rights bosun
//!   handles and is tested against (this machine's kernel has ABI 7, which
//!   adds only audit flags to 6). A newer kernel enforces exactly these
//!   rights; an older one enforces what it knows, and the report says
//!   "partial".
//! - **Scoped signals and abstract sockets** (ABI 6): a program cannot
//!   signal, or connect to an abstract unix socket of, anything outside the
//!   domain bosun created for it, whatever its uid.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetError, RulesetStatus, Scope,
};

/// The Landlock ABI whose rights bosun asks for.
pub(crate) const ABI: ABI = ABI::V6;

/// Read-only (and executable) system roots, where they exist.
const SYSTEM: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/proc",
    "/sys/devices/system/cpu",
    "/nix/store",
    "/gnu/store",
];

/// Name-service files that may be links to elsewhere; their targets are
/// readable too.
const LINKED: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/ssl/certs",
];

/// Device nodes a program may read and write.
/// No `/dev/tty`: a program has no controlling terminal (it runs in a
/// session of its own), and a terminal is where `TIOCSTI` types commands.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// The paths of a project's file view; the ruleset is built from them.
#[derive(Debug, Clone)]
pub(crate) struct FsView {
    read_only: Vec<PathBuf>,
    devices: Vec<PathBuf>,
}

impl FsView {
    /// The system roots minus `protected`, plus `extra` read-only paths.
    pub(crate) fn new(protected: &[PathBuf], extra: &[PathBuf]) -> Self {
        let mut read_only = Vec::new();
        for root in SYSTEM.iter().map(Path::new) {
            if let Ok(root) = root.canonicalize() {
                grant_except(&root, protected, &mut read_only);
            }
        }
        for file in LINKED {
            let Ok(target) = Path::new(file).canonicalize() else {
                continue;
            };
            // The target's dir, not the file: a resolver replaces its file
            // by renaming a new one over it, and a rule holds an inode.
            let target = match target.parent() {
                Some(parent) if !target.is_dir() => parent.to_path_buf(),
                _ => target,
            };
            if !read_only.iter().any(|r| target.starts_with(r))
                && !is_protected(&target, protected)
                && !protected.iter().any(|p| p.starts_with(&target))
            {
                read_only.push(target);
            }
        }
        read_only.extend(extra.iter().filter(|p| p.exists()).cloned());
        let devices = DEVICES
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect();
        Self { read_only, devices }
    }

    /// This view plus `extra` read-only paths.
    pub(crate) fn with(&self, extra: &[PathBuf]) -> Self {
        let mut view = self.clone();
        view.read_only
            .extend(extra.iter().filter(|p| p.exists()).cloned());
        view
    }

    /// This view plus `dirs`, read-only, whether they exist yet or not:
    /// dirs bosun itself makes before the first program that gets this
    /// view starts (a project's cgroups). Never a path a tenant could make:
    /// a ruleset follows the symlink it finds there.
    pub(crate) fn with_made_later(mut self, dirs: &[PathBuf]) -> Self {
        self.read_only.extend(dirs.iter().cloned());
        self
    }

    /// A ruleset granting this view, read-write on `rw`, and no TCP at all
    /// unless `network`.
    pub(crate) fn ruleset(
        &self,
        rw: &[&Path],
        network: bool,
    ) -> Result<RulesetCreated, RulesetError> {
        let mut ruleset = Ruleset::default()
            .handle_access(AccessFs::from_all(ABI))?
            .scope(Scope::from_all(ABI))?;
        if !network {
            ruleset = ruleset.handle_access(AccessNet::from_all(ABI))?;
        }
        let device = AccessFs::ReadFile | AccessFs::WriteFile;
        let rules = self
            .read_only
            .iter()
            .map(|p| (p.as_path(), AccessFs::from_read(ABI)))
            .chain(self.devices.iter().map(|p| (p.as_path(), device)))
            .chain(rw.iter().map(|p| (*p, AccessFs::from_all(ABI))));
        let mut created = ruleset.create()?;
        for (path, access) in rules {
            // A path that vanished since the view was made is skipped: the
            // ruleset then grants less, never more.
            let Ok(fd) = PathFd::new(path) else { continue };
            let access = if path.is_dir() {
                access
            } else {
                access & AccessFs::from_file(ABI)
            };
            created = created.add_rule(PathBeneath::new(fd, access))?;
        }
        Ok(created)
    }
}

/// Whether `dir` is one of the system roots (or `/`).
pub(crate) fn is_system_root(dir: &Path) -> bool {
    dir == Path::new("/") || SYSTEM.iter().any(|r| Path::new(r) == dir)
}

fn is_protected(path: &Path, protected: &[PathBuf]) -> bool {
    protected.iter().any(|p| path.starts_with(p))
}

/// Grant `root`, or, when something protected lies beneath it, each of its
/// children that neither is nor leads to something protected.
fn grant_except(root: &Path, protected: &[PathBuf], out: &mut Vec<PathBuf>) {
    if is_protected(root, protected) {
        return;
    }
    if !protected.iter().any(|p| p.starts_with(root)) {
        out.push(root.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    children.sort();
    for child in children {
        let Ok(target) = child.canonicalize() else {
            continue;
        };
        if target == child {
            grant_except(&child, protected, out);
        } else if !is_protected(&target, protected)
            && !protected.iter().any(|p| p.starts_with(&target))
        {
            // A link out: PathFd opens (and Landlock grants) its target.
            out.push(child);
        }
    }
}

/// What the kernel gives a ruleset of [`ABI`]: found by restricting a
/// thread made for the purpose, which then ends. Also the kernel's own ABI.
pub(crate) fn probe() -> (Enforcement, i32) {
    let kernel = kernel_abi();
    let status = std::thread::spawn(|| {
        let view = FsView {
            read_only: Vec::new(),
            devices: Vec::new(),
        };
        view.ruleset(&[], false)
            .and_then(RulesetCreated::restrict_self)
            .map(|s| s.ruleset)
    })
    .join();
    let enforcement = match status {
        Ok(Ok(RulesetStatus::FullyEnforced)) => Enforcement::Full,
        Ok(Ok(RulesetStatus::PartiallyEnforced)) => Enforcement::Partial,
        _ => Enforcement::None,
    };
    (enforcement, kernel)
}

/// The Landlock ABI the running kernel supports (0 without Landlock).
fn kernel_abi() -> i32 {
    const CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: landlock_create_ruleset with a null attribute, size 0 and the
    // VERSION flag only returns a number; it reads and writes no memory.
    #[allow(unsafe_code)]
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(abi).unwrap_or(0).max(0)
}

/// How much of the pinned ABI the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enforcement {
    /// Every right bosun asks for.
    Full,
    /// Some: an older kernel.
    Partial,
    /// None: no Landlock.
    None,
}

impl Enforcement {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Enforcement::Full => "full",
            Enforcement::Partial => "partial",
            Enforcement::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protected_path_is_carved_out_of_its_root() {
        let root = tempfile::TempDir::new().expect("temp");
        let r = root.path().canonicalize().expect("canonical");
        for d in ["etc/bosun", "etc/ssl", "etc/x"] {
            std::fs::create_dir_all(r.join(d)).expect("mkdir");
        }
        std::fs::write(r.join("etc/bosun/bosun.toml"), "").expect("write");
        std::os::unix::fs::symlink(r.join("etc/bosun"), r.join("etc/link")).expect("symlink");
        std::os::unix::fs::symlink(r.join("etc/ssl"), r.join("etc/fine")).expect("symlink");
        let mut out = Vec::new();
        grant_except(&r.join("etc"), &[r.join("etc/bosun")], &mut out);
        assert_eq!(
            out,
            vec![r.join("etc/fine"), r.join("etc/ssl"), r.join("etc/x")]
        );
    }
}
