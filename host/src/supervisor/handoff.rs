//! Upgrade in place: what one bosun image hands the next across `execve`.
//!
//! The listening socket, every running child's stdout and stderr pipes and
//! the children themselves survive the exec (the children stay children of
//! this pid; the pipes and the socket are kept open by clearing their
//! close-on-exec flag). What the new image cannot learn from those
//! descriptors is written here, to `state_dir/handoff.json`, and named in
//! [`ENV`]: which descriptor is which instance's, the bytes of a line a
//! process had half written, and each instance's restart count and uptime.
//! The new image reads the file once, removes it, and adopts the children
//! instead of spawning them (see `adopt`).

use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde::{Deserialize, Serialize};

use super::status::State;

/// The environment variable naming the handoff file of an upgrade.
pub const ENV: &str = "BOSUN_HANDOFF";
/// Set when a stop was asked for while the upgrade handed over: the new
/// image adopts everything, then stops in order.
pub const STOP_ENV: &str = "BOSUN_HANDOFF_STOP";

/// The handoff format's version: an image refuses one it does not know.
pub const VERSION: u32 = 1;

/// Everything the next image needs.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handoff {
    /// [`VERSION`], as written.
    pub version: u32,
    /// The listening socket; `None` when it could not be kept (the next
    /// image binds anew).
    pub listener: Option<RawFd>,
    /// The soft open-files limit bosun was first started with; its
    /// programs get it back.
    pub nofile_soft: u64,
    /// Every instance: the running ones with their processes and pipes,
    /// the others with how they ended.
    pub instances: Vec<HandedInstance>,
    /// The listening sockets bosun holds for processes (`sockets`).
    #[serde(default)]
    pub sockets: Vec<HandedSocket>,
}

/// A listening socket bosun holds for a process, handed over.
#[derive(Debug, Serialize, Deserialize)]
pub struct HandedSocket {
    /// Whose: `project/process`.
    pub owner: String,
    /// The address it listens on.
    pub address: SocketAddr,
    /// The descriptor.
    pub fd: RawFd,
}

/// One instance, handed over: a running one with its process, or one that
/// is not running (stopped, exited, fatal), which stays as it is.
#[derive(Debug, Serialize, Deserialize)]
pub struct HandedInstance {
    /// `project/<name>-<instance>`.
    pub key: String,
    /// Its leader, also its process group; `None` when it is not running.
    pub pid: Option<u32>,
    /// Its state.
    pub state: State,
    /// How its last run ended, and the last notable event.
    pub exit_code: Option<i32>,
    /// See `exit_code`.
    pub exit_signal: Option<i32>,
    /// See `exit_code`.
    pub message: Option<String>,
    /// Its output pipes, each with the part of a line read but not yet
    /// ended; `None` once the process closed the stream.
    pub stdout: Option<HandedPipe>,
    /// See `stdout`.
    pub stderr: Option<HandedPipe>,
    /// Its cgroup leaf's name, to open again.
    pub leaf: Option<String>,
    /// Restarts so far.
    pub restarts: u32,
    /// Whether it had passed its readiness check.
    pub ready: bool,
    /// How long it had been running.
    pub uptime_ms: u64,
}

/// A pipe the next image reads on from.
#[derive(Debug, Serialize, Deserialize)]
pub struct HandedPipe {
    /// The descriptor.
    pub fd: RawFd,
    /// Bytes of an unfinished line.
    pub partial: Vec<u8>,
}

impl Handoff {
    /// Where the handoff of the bosun with `state_dir` is written.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("handoff.json")
    }

    /// Write the handoff (mode 0600: it names bosun's descriptors) and
    /// return its path.
    pub fn write(&self, state_dir: &Path) -> anyhow::Result<PathBuf> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = Self::path(state_dir);
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        file.write_all(&serde_json::to_vec(self)?)?;
        file.sync_all()?;
        Ok(path)
    }

    /// Read and remove the handoff named in [`ENV`], if bosun was started
    /// by an upgrade. (Programs bosun starts never see the variable: their
    /// environment is built from scratch.)
    pub fn take() -> anyhow::Result<Option<Self>> {
        let Some(path) = std::env::var_os(ENV) else {
            return Ok(None);
        };
        let path = PathBuf::from(path);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let _ = std::fs::remove_file(&path);
        let handoff: Self = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        anyhow::ensure!(
            handoff.version == VERSION,
            "{} is of handoff version {}; this bosun reads version {VERSION}",
            path.display(),
            handoff.version
        );
        Ok(Some(handoff))
    }
}

/// Keep `fds` open across the exec to come: close-on-exec cleared, and
/// never closed by this image.
pub fn keep_across_exec(fds: Vec<OwnedFd>) -> std::io::Result<()> {
    for fd in &fds {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
    }
    for fd in fds {
        let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
    }
    Ok(())
}

/// Ignore SIGHUP and SIGUSR2 across the exec to come: the new image
/// installs its own handlers a moment after it starts, and until then
/// their default action (the end of the process) would orphan every child.
/// One that comes in between is lost, not fatal.
pub fn ignore_reload_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [Signal::SIGHUP, Signal::SIGUSR2] {
        #[allow(unsafe_code)]
        // SAFETY: SIG_IGN runs no code in this process; nothing here relies
        // on the handlers it replaces, as the exec follows.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
}

/// Take ownership of descriptor `fd`, inherited from the previous image,
/// after checking it is open; it is made close-on-exec again.
pub fn adopt_fd(fd: RawFd) -> std::io::Result<OwnedFd> {
    if fd < 3 {
        return Err(std::io::Error::other(format!(
            "descriptor {fd} is not a handed-over one"
        )));
    }
    #[allow(unsafe_code)]
    // SAFETY: `fd` was named in the handoff as handed to this image, each
    // descriptor once; F_GETFD below proves it open before anything uses it.
    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    match fcntl(&owned, FcntlArg::F_GETFD) {
        Ok(_) => {
            fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
            Ok(owned)
        }
        Err(e) => {
            // Not ours to close: it was never open.
            std::mem::forget(owned);
            Err(e.into())
        }
    }
}
