//! Each project's own uid and gid: what makes one tenant's files and
//! processes another's business only through the kernel's own checks.
//!
//! - **Allocated** by default, one id as both uid and gid, from
//!   `[confinement] id_range`, skipping every id a user, a group or a
//!   subordinate id range (`/etc/subuid`, `/etc/subgid`) already uses. The
//!   choice is persisted in `state_dir/identities.json`, so a project keeps
//!   its id, and the files it owns, across restarts.
//! - **Named** with `[projects.<p>.confinement] user` (and `group`): an
//!   existing account, for programs that need a passwd entry.
//! - The project dir is made to belong to the identity: walked once when
//!   its top is not owned by it, changing owners without following links
//!   or crossing into other file systems. Files with more than one hard
//!   link are left alone: the other link may be anywhere, and root must
//!   not hand a tenant a file it reached only through the tenant's dir.
//!   Other users are kept out of it (no `o` bits on its top), so nothing
//!   in it, a unix socket included, is theirs to reach by path.
//! - Ids that another bosun's tenants run as (a running process's uid) are
//!   skipped too: two bosuns on one host share the default range.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat};
use nix::unistd::{Gid, Group, Uid, User, fchownat};
use serde::{Deserialize, Serialize};

use super::dirs;

/// Who a project's programs run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The uid.
    pub uid: u32,
    /// The gid (the only group: supplementary groups are cleared).
    pub gid: u32,
    /// `USER` and `LOGNAME` for its programs: the account name, or
    /// `bosun-<project>` for an allocated id (which has no passwd entry).
    pub name: String,
    /// Whether bosun allocated it.
    pub allocated: bool,
}

/// Why an identity could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// `user` or `group` names nobody on this machine.
    #[error("`{key}`: no {what} `{name}` on this machine")]
    Unknown {
        /// The config key.
        key: String,
        /// "user" or "group".
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// `user` or `group` resolves to root's id.
    #[error("`{key}` resolves to id 0: use `unconfined = true` to run a project as bosun itself")]
    Privileged {
        /// The config key.
        key: String,
    },
    /// `user` or `group` is -1, which the kernel reads as "no change".
    #[error("`{key}` is 4294967295 (-1), which no process can run as")]
    Unusable {
        /// The config key.
        key: String,
    },
    /// Every id of the range is taken.
    #[error("`confinement.id_range`: no free id left in [{0}, {1}]")]
    Exhausted(u32, u32),
    /// Reading or writing `identities.json`.
    #[error("{0:#}")]
    State(anyhow::Error),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    /// project → its allocated id.
    projects: BTreeMap<String, u32>,
}

/// The allocated identities of one state dir.
pub(crate) struct Allocations {
    path: PathBuf,
    stored: Stored,
    taken: BTreeSet<u32>,
    /// The uids of running processes: another bosun on this host allocates
    /// from the same default range, and an id its tenants run as is in use.
    /// Only for new allocations: a project's own id is in use by its own
    /// running processes. Read at the first new allocation: a start that
    /// makes none does not read every process's status.
    running: OnceCell<BTreeSet<u32>>,
    ranges: Vec<(u32, u32)>,
    changed: bool,
}

impl Allocations {
    /// Load `state_dir/identities.json` and what the machine already uses.
    pub(crate) fn load(state_dir: &Path) -> Result<Self, IdentityError> {
        let path = state_dir.join("identities.json");
        let stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))
                .map_err(IdentityError::State)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => {
                return Err(IdentityError::State(
                    anyhow::Error::new(e).context(format!("reading {}", path.display())),
                ));
            }
        };
        let mut taken = BTreeSet::new();
        for file in ["/etc/passwd", "/etc/group"] {
            taken.extend(third_fields(file));
        }

        let ranges = ["/etc/subuid", "/etc/subgid"]
            .iter()
            .flat_map(|f| subordinate_ranges(f))
            .collect();
        Ok(Self {
            path,
            stored,
            taken,
            running: OnceCell::new(),
            ranges,
            changed: false,
        })
    }

    fn in_use(&self, id: u32) -> bool {
        self.taken.contains(&id)
            || self.ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&id))
            || User::from_uid(Uid::from_raw(id)).ok().flatten().is_some()
            || Group::from_gid(Gid::from_raw(id)).ok().flatten().is_some()
    }

    /// The allocated identity of `project`: its persisted id, or a new one
    /// from `range`. A persisted id that a user or group has taken since is
    /// replaced (and said so), since sharing it would share files.
    pub(crate) fn allocate(
        &mut self,
        project: &str,
        range: [u32; 2],
    ) -> Result<Identity, IdentityError> {
        let name = format!("bosun-{project}");
        if let Some(&id) = self.stored.projects.get(project) {
            if !self.in_use(id) {
                return Ok(Identity {
                    uid: id,
                    gid: id,
                    name,
                    allocated: true,
                });
            }
            tracing::warn!(
                project,
                id,
                "the project's allocated id is now used by a user or group; allocating another"
            );
        }
        let mine: BTreeSet<u32> = self.stored.projects.values().copied().collect();
        let running = self.running.get_or_init(running_uids);
        let id = (range[0]..=range[1])
            .find(|id| !mine.contains(id) && !running.contains(id) && !self.in_use(*id))
            .ok_or(IdentityError::Exhausted(range[0], range[1]))?;
        self.stored.projects.insert(project.to_string(), id);
        self.changed = true;
        Ok(Identity {
            uid: id,
            gid: id,
            name,
            allocated: true,
        })
    }

    /// Write the file if an allocation changed it (mode 0600, atomically).
    pub(crate) fn save(&self) -> Result<(), IdentityError> {
        if !self.changed {
            return Ok(());
        }
        let write = || -> anyhow::Result<()> {
            let dir = self.path.parent().context("identities.json has a parent")?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            tmp.write_all(&serde_json::to_vec_pretty(&self.stored)?)?;
            tmp.persist(&self.path)?;
            Ok(())
        };
        write()
            .with_context(|| format!("writing {}", self.path.display()))
            .map_err(IdentityError::State)
    }
}

/// The identity of a project that names its `user` (and maybe `group`).
pub(crate) fn named(
    project: &str,
    user: &str,
    group: Option<&str>,
) -> Result<Identity, IdentityError> {
    let key = |k: &str| format!("projects.{project}.confinement.{k}");
    let account = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).ok().flatten(),
        Err(_) => User::from_name(user).ok().flatten(),
    };
    let (uid, mut gid, name) = match (account, user.parse::<u32>()) {
        (Some(u), _) => (u.uid.as_raw(), u.gid.as_raw(), u.name),
        (None, Ok(uid)) => (uid, uid, user.to_string()),
        (None, Err(_)) => {
            return Err(IdentityError::Unknown {
                key: key("user"),
                what: "user",
                name: user.to_string(),
            });
        }
    };
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => Group::from_name(group)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
                .ok_or_else(|| IdentityError::Unknown {
                    key: key("group"),
                    what: "group",
                    name: group.to_string(),
                })?,
        };
    }
    if uid == u32::MAX || gid == u32::MAX {
        return Err(IdentityError::Unusable {
            key: key(if uid == u32::MAX { "user" } else { "group" }),
        });
    }
    if uid == 0 || gid == 0 {
        return Err(IdentityError::Privileged {
            key: key(if uid == 0 { "user" } else { "group" }),
        });
    }
    Ok(Identity {
        uid,
        gid,
        name,
        allocated: false,
    })
}

/// The real uids of every running process.
fn running_uids() -> BTreeSet<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| {
        let status = std::fs::read_to_string(e.ok()?.path().join("status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
    .collect()
}

/// The numbers in the third field of a passwd- or group-style file.
fn third_fields(path: &str) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect()
}

/// The `name:start:count` ranges of a subuid- or subgid-style file.
fn subordinate_ranges(path: &str) -> Vec<(u32, u32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':').skip(1);
            let start: u32 = f.next()?.parse().ok()?;
            let count: u32 = f.next()?.parse().ok()?;
            Some((start, start.saturating_add(count.saturating_sub(1))))
        })
        .collect()
}

/// What [`give_dir`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Handover {
    /// Entries whose owner changed.
    pub changed: u64,
    /// Files left alone because they have other hard links.
    pub shared: u64,
    /// Dirs left alone because they are deeper than [`MAX_DEPTH`].
    pub deep: u64,
}

/// Make `dir` and everything in it belong to `id`, unless its top already
/// does; and keep other users out of it (no `o` bits on its top: a web
/// server that must read a project's files gets in through a named
/// `group`). Never follows a symlink, never crosses a mount point: every
/// entry is opened (`O_PATH | O_NOFOLLOW`) and changed through that fd, so
/// an entry swapped between the look and the change is never the one
/// changed.
pub(crate) fn give_dir(dir: &Path, id: &Identity) -> anyhow::Result<Handover> {
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", dir.display()))?;
    let top = fstat(&fd).with_context(|| format!("reading {}", dir.display()))?;
    if top.st_mode & 0o007 != 0 {
        fchmod(&fd, Mode::from_bits_truncate(top.st_mode & 0o7770))
            .with_context(|| format!("closing {} to other users", dir.display()))?;
    }
    let owner = (Some(Uid::from_raw(id.uid)), Some(Gid::from_raw(id.gid)));
    let mut done = Handover::default();
    if owned_by(&top, owner) {
        return Ok(done);
    }
    walk(&fd, top.st_dev, owner, &mut done, dir)?;
    // The top last: it marks the walk done, so one that failed is redone.
    chown_fd(&fd, owner).with_context(|| format!("changing the owner of {}", dir.display()))?;
    done.changed += 1;
    Ok(done)
}

fn chown_fd(fd: &OwnedFd, owner: (Option<Uid>, Option<Gid>)) -> nix::Result<()> {
    fchownat(fd, "", owner.0, owner.1, AtFlags::AT_EMPTY_PATH)
}

/// Dirs deeper than this are left as they are (and counted): a walk holds
/// one fd per level.
const MAX_DEPTH: usize = 256;

/// Hand every entry under `top` over, depth first, one fd per level.
fn walk(
    top: &OwnedFd,
    dev: u64,
    owner: (Option<Uid>, Option<Gid>),
    done: &mut Handover,
    shown: &Path,
) -> anyhow::Result<()> {
    struct Level {
        fd: OwnedFd,
        names: Vec<std::ffi::CString>,
        path: PathBuf,
    }
    let mut stack = vec![Level {
        fd: top.try_clone()?,
        names: dirs::names(top).with_context(|| format!("listing {}", shown.display()))?,
        path: shown.to_path_buf(),
    }];
    loop {
        let depth = stack.len();
        let Some(level) = stack.last_mut() else {
            break;
        };
        let Some(name) = level.names.pop() else {
            stack.pop();
            continue;
        };
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let Ok(entry) = openat(level.fd.as_fd(), name.as_c_str(), flags, Mode::empty()) else {
            continue;
        };
        let Ok(stat) = fstat(&entry) else { continue };
        if stat.st_dev != dev {
            continue;
        }
        let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
        if kind != SFlag::S_IFDIR && stat.st_nlink > 1 {
            done.shared += 1;
            continue;
        }
        let path = level.path.join(name.to_string_lossy().as_ref());
        if !owned_by(&stat, owner) {
            chown_fd(&entry, owner)
                .with_context(|| format!("changing the owner of {}", path.display()))?;
            done.changed += 1;
        }
        if kind != SFlag::S_IFDIR {
            continue;
        }
        if depth >= MAX_DEPTH {
            done.deep += 1;
            continue;
        }
        let sub = dirs::open_dir_at(&level.fd, &name)?;
        // The dir listed must be the one just changed.
        if fstat(&sub).is_ok_and(|s| s.st_ino == stat.st_ino && s.st_dev == stat.st_dev) {
            let names = dirs::names(&sub).with_context(|| format!("listing {}", path.display()))?;
            stack.push(Level {
                fd: sub,
                names,
                path,
            });
        }
    }
    Ok(())
}

fn owned_by(stat: &FileStat, owner: (Option<Uid>, Option<Gid>)) -> bool {
    Some(Uid::from_raw(stat.st_uid)) == owner.0 && Some(Gid::from_raw(stat.st_gid)) == owner.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_are_inclusive() {
        let dir = tempfile::TempDir::new().expect("temp");
        let f = dir.path().join("subuid");
        std::fs::write(&f, "alice:100000:65536\nbroken line\n").expect("write");
        assert_eq!(
            subordinate_ranges(f.to_str().expect("utf-8")),
            vec![(100000, 165535)]
        );
    }
}
