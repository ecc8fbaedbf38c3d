//! Directory walks over trees a tenant built: never recursive (a chain of
//! 70,000 nested dirs would overflow the stack or run out of fds), never
//! following a link, always through fds of the dirs themselves.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use anyhow::Context as _;
use nix::errno::Errno;
use nix::fcntl::{OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

/// The names in the open dir `dir` (not `.` and `..`).
pub(crate) fn names(dir: &OwnedFd) -> anyhow::Result<Vec<CString>> {
    let mut entries = nix::dir::Dir::from_fd(dir.try_clone()?).context("listing a dir")?;
    Ok(entries
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect())
}

/// Open `name` in `dir` as a directory, not following a link.
pub(crate) fn open_dir_at(dir: &OwnedFd, name: &CString) -> nix::Result<OwnedFd> {
    openat(
        dir.as_fd(),
        name.as_c_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Remove everything in `dir`, keeping `dir`. A subdir that is not empty
/// has its entries moved up into `dir` and is removed once empty, so the
/// work holds two fds at most, whatever the depth.
pub(crate) fn empty(dir: &Path) -> anyhow::Result<()> {
    let top = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", dir.display()))?;
    let mut hoisted = 0u64;
    loop {
        let entries = names(&top)?;
        if entries.is_empty() {
            return Ok(());
        }
        for name in entries {
            match unlinkat(top.as_fd(), name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => continue,
                Err(Errno::EISDIR) => {}
                Err(e) => return Err(e).with_context(|| format!("emptying {}", dir.display())),
            }
            match unlinkat(top.as_fd(), name.as_c_str(), UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => continue,
                Err(Errno::ENOTEMPTY | Errno::EEXIST) => {}
                Err(e) => return Err(e).with_context(|| format!("emptying {}", dir.display())),
            }
            let sub =
                open_dir_at(&top, &name).with_context(|| format!("emptying {}", dir.display()))?;
            for child in names(&sub)? {
                loop {
                    hoisted += 1;
                    let to = CString::new(format!(".bosun-emptying-{hoisted}"))?;
                    match renameat2(
                        sub.as_fd(),
                        child.as_c_str(),
                        top.as_fd(),
                        to.as_c_str(),
                        RenameFlags::RENAME_NOREPLACE,
                    ) {
                        Err(Errno::EEXIST) => continue,
                        other => {
                            other.with_context(|| format!("emptying {}", dir.display()))?;
                            break;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deep_chain_is_emptied_without_recursion() {
        let root = tempfile::TempDir::new().expect("temp");
        let top = root.path().join("tmp");
        std::fs::create_dir(&top).expect("mkdir");
        // Deep enough that a path to the bottom would pass PATH_MAX.
        let mut dir = nix::fcntl::open(&top, OFlag::O_DIRECTORY, Mode::empty()).expect("open");
        for _ in 0..3000 {
            let name = CString::new("d").expect("name");
            nix::sys::stat::mkdirat(
                dir.as_fd(),
                name.as_c_str(),
                Mode::from_bits_truncate(0o755),
            )
            .expect("mkdirat");
            dir = open_dir_at(&dir, &name).expect("open");
        }
        std::os::unix::fs::symlink("/etc", top.join("link")).expect("symlink");
        std::fs::write(top.join("file"), "x").expect("write");
        empty(&top).expect("emptied");
        assert_eq!(std::fs::read_dir(&top).expect("read").count(), 0);
        assert!(
            Path::new("/etc/passwd").exists(),
            "a link is removed, never followed"
        );
    }
}
