//! A project's cgroups, made when they are first needed rather than while
//! bosun starts: each project costs four `mkdir`s and its limit writes,
//! which the kernel's cgroup lock serializes, and with 100 projects that
//! was half the time to bosun's first answer (32 of 62 ms). The daemon
//! makes them all once the API serves; before that, the start of any
//! program of the project makes its project's first.
//!
//! - **Limits before programs.** Every program start asks for them first
//!   and fails if they cannot be made, so nothing of a project runs before
//!   its limits are set. A failure is not kept: the next start tries again
//!   (making them is idempotent), as a restart after a transient error
//!   should.
//! - **Retired means never again.** Once a reload removed the project or
//!   replaced its jail, or bosun is removing its cgroups, nothing is made
//!   any more. A late maker could otherwise bring back a removed cgroup,
//!   or write this jail's limits into the dirs of the jail that replaced
//!   it; the lock makes making and retiring one after the other.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{ProjectCgroup, Tree};
use crate::config::Limits;

/// A project's cgroups, made on first use.
#[derive(Debug)]
pub(crate) struct OnDemand {
    tree: Arc<Tree>,
    project: String,
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Debug)]
enum State {
    /// Not made yet; why the last try failed, if one did.
    NotMade(Option<String>),
    Made(Arc<ProjectCgroup>),
    Retired,
}

/// Why a project's cgroups cannot be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unavailable {
    /// A reload removed the project or replaced its jail, or bosun is
    /// removing its cgroups.
    #[error("a reload removed the project or replaced its confinement")]
    Retired,
    /// Making them failed, with the errno if there was one.
    #[error("{why}")]
    Failed { why: String, errno: Option<i32> },
}

/// Errnos of making a cgroup that a later try may not get: the kernel
/// short of memory, or of cgroups, for now.
pub(crate) const TRANSIENT: [i32; 3] = [libc::ENOMEM, libc::EAGAIN, libc::ENOSPC];

impl Unavailable {
    /// Whether a later try may do better.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, Self::Failed { errno: Some(n), .. } if TRANSIENT.contains(n))
    }
}

impl OnDemand {
    /// The cgroups of `project` in `tree`, with `limits`, not made yet.
    pub(crate) fn new(tree: Arc<Tree>, project: &str, limits: &Limits) -> Self {
        Self {
            tree,
            project: project.to_string(),
            limits: limits.clone(),
            state: Mutex::new(State::NotMade(None)),
        }
    }

    /// The project's cgroups with their limits set, made on the first call.
    pub(crate) fn get(&self) -> Result<Arc<ProjectCgroup>, Unavailable> {
        let mut state = self.state();
        match &*state {
            State::Made(cgroup) => Ok(cgroup.clone()),
            State::Retired => Err(Unavailable::Retired),
            State::NotMade(_) => match self.tree.project(&self.project, &self.limits) {
                Ok(cgroup) => {
                    let cgroup = Arc::new(cgroup);
                    *state = State::Made(cgroup.clone());
                    Ok(cgroup)
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    let errno = e
                        .chain()
                        .find_map(|cause| cause.downcast_ref::<std::io::Error>())
                        .and_then(std::io::Error::raw_os_error);
                    *state = State::NotMade(Some(why.clone()));
                    Err(Unavailable::Failed { why, errno })
                }
            },
        }
    }

    /// The cgroup2 dir once made, for the report; or why the last try to
    /// make them failed.
    pub(crate) fn made(&self) -> Result<Option<PathBuf>, String> {
        match &*self.state() {
            State::Made(_) => Ok(self.v2_dir()),
            State::NotMade(Some(why)) => Err(why.clone()),
            State::NotMade(None) | State::Retired => Ok(None),
        }
    }

    /// The dirs they have once made, whether made yet or not (a program's
    /// file view names them before the first one starts).
    pub(crate) fn dirs(&self) -> Vec<PathBuf> {
        self.tree.project_dirs(&self.project)
    }

    /// The cgroup2 dir, made or to be made; `None` without cgroup2.
    pub(crate) fn v2_dir(&self) -> Option<PathBuf> {
        self.tree.v2_project_dir(&self.project)
    }

    /// Make nothing from now on.
    pub(crate) fn retire(&self) {
        *self.state() = State::Retired;
    }

    /// Make nothing from now on, and remove the dirs (the project's
    /// programs have stopped; anything still in them is killed first),
    /// whether this jail made them or a previous bosun image did.
    pub(crate) fn remove(&self) {
        self.retire();
        for dir in self.dirs() {
            super::remove_tree(&dir);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree of plain dirs: making and removing a project's cgroups is
    /// `mkdir` and `rmdir` there as in cgroupfs.
    fn tree(base: &std::path::Path) -> Arc<Tree> {
        Arc::new(Tree {
            v2: Some(base.to_path_buf()),
            v2_controllers: Vec::new(),
            v1: Vec::new(),
        })
    }

    #[test]
    fn made_once_on_first_use_and_never_after_retiring() {
        let root = tempfile::TempDir::new().expect("root");
        let cgroup = OnDemand::new(tree(root.path()), "p", &Limits::default());
        let dir = root.path().join("p");
        assert_eq!(cgroup.dirs(), std::slice::from_ref(&dir));
        assert!(!dir.exists(), "nothing is made before it is needed");
        let first = cgroup.get().expect("made");
        assert!(dir.is_dir());
        assert!(Arc::ptr_eq(&first, &cgroup.get().expect("again")));
        assert_eq!(cgroup.made(), Ok(Some(dir.clone())));
        cgroup.remove();
        assert!(!dir.exists());
        let late = cgroup.get().expect_err("a late maker is refused");
        assert!(matches!(late, Unavailable::Retired), "{late}");
        assert!(!dir.exists(), "and makes nothing");
    }

    #[test]
    fn what_a_previous_image_made_is_removed_though_this_one_made_nothing() {
        let root = tempfile::TempDir::new().expect("root");
        let cgroup = OnDemand::new(tree(root.path()), "p", &Limits::default());
        let leaf = root.path().join("p/proc.web-0");
        std::fs::create_dir_all(&leaf).expect("a leaf left as it was");
        cgroup.remove();
        assert!(!root.path().join("p").exists());
    }

    #[test]
    fn a_failure_is_not_kept() {
        let root = tempfile::TempDir::new().expect("root");
        let base = root.path().join("not-yet");
        let cgroup = OnDemand::new(tree(&base), "p", &Limits::default());
        let e = cgroup.get().expect_err("no base to make it in");
        assert!(e.to_string().contains("creating"), "{e}");
        assert!(cgroup.made().expect_err("said").contains("creating"));
        std::fs::create_dir(&base).expect("base");
        cgroup.get().expect("the next start tries again");
        assert!(base.join("p").is_dir());
        assert_eq!(cgroup.made(), Ok(Some(base.join("p"))));
    }
}
