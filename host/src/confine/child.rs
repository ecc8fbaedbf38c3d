//! The one `pre_exec` hook every program started for a project passes
//! through: in the child, after `fork` and before `exec`, in this order:
//!
//! 0. **session**: a session (and process group) of its own, so it can
//!    join no other program's group (`setpgid` works only within a
//!    session, and bosun signals whole groups);
//! 1. **work dir**: `fchdir` to a dir opened beneath the project dir;
//! 2. **cgroups**: join the program's cgroup2 leaf and the project's v1
//!    cgroups (writing "0" moves the writer);
//! 3. **namespaces**: a mount namespace with the private `/tmp` and the
//!    binds of [`super::mounts`], and a network namespace with only a
//!    loopback for programs without network;
//! 4. **limits**: rlimits;
//! 5. **capabilities**: the bounding set emptied;
//! 6. **identity**: supplementary groups cleared, then gid, then uid (all
//!    three of each), which also clears every capability;
//! 7. **no_new_privs**, then **Landlock**;
//! 8. **descriptors**: every fd above 2 close-on-exec, except the fds a
//!    caller passes from 3 on;
//! 9. **exec**, when the program's environment names its own pid
//!    (`LISTEN_PID` of socket activation, which only the child knows): the
//!    hook writes the pid into an environment prepared for it and calls
//!    `execve` itself. Otherwise std's own exec follows the hook.
//!
//! Each step needs the privileges the steps after it drop, which fixes the
//! order. std would switch the uid before any hook ran (`Command::uid`),
//! so the hook does it all. A forked child of a threaded process may only
//! make async-signal-safe calls: everything here is a raw system call on
//! data prepared in [`Prepared`] before the fork; nothing allocates or
//! takes a lock. A failing step writes its number to a pipe, so the parent
//! can say which step failed, not only the errno.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use landlock::RulesetCreated;
use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid, fchdir, mkdir, setgroups, setresgid, setresuid, setsid, write};

use super::mounts::{Plan, Step as MountStep};

/// Everything the child needs, prepared by the parent.
pub(crate) struct Prepared {
    /// The program's working directory (None: bosun's own).
    pub cwd: Option<OwnedFd>,
    /// `cgroup.procs` files to join.
    pub join: Vec<Arc<OwnedFd>>,
    /// The mount namespace's steps; `None`: no mount namespace.
    pub mounts: Option<Plan>,
    /// A network namespace of its own (no network).
    pub new_net: bool,
    /// rlimits, soft = hard.
    pub rlimits: Vec<(Resource, u64)>,
    /// Empty the capability bounding set, up to this capability number.
    pub drop_bounding: Option<u32>,
    /// Switch to this uid and gid.
    pub identity: Option<(u32, u32)>,
    /// Set `no_new_privs` (not for an unconfined project, whose programs
    /// may need setuid helpers).
    pub no_new_privs: bool,
    /// Restrict with this Landlock ruleset.
    pub ruleset: Option<Arc<RulesetCreated>>,
    /// Fds to hand over as 3, 4, … (at most [`MAX_PASSED`]).
    pub pass_fds: Vec<OwnedFd>,
    /// The exec to make at the end, with the child's pid in its environment.
    pub exec: Option<Exec>,
    /// Where a failing step writes its number.
    pub report: OwnedFd,
    /// The highest fd to mark close-on-exec one by one, where the kernel
    /// lacks `close_range(CLOSE_RANGE_CLOEXEC)` (before 5.11).
    pub fd_ceiling: Option<i32>,
}

/// The steps, numbered for the report pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Step {
    Session = 1,
    WorkDir,
    Cgroup,
    Namespaces,
    Mounts,
    Loopback,
    Limits,
    Capabilities,
    Identity,
    NoNewPrivs,
    Landlock,
    Descriptors,
}

impl Step {
    const ALL: [Step; 12] = [
        Step::Session,
        Step::WorkDir,
        Step::Cgroup,
        Step::Namespaces,
        Step::Mounts,
        Step::Loopback,
        Step::Limits,
        Step::Capabilities,
        Step::Identity,
        Step::NoNewPrivs,
        Step::Landlock,
        Step::Descriptors,
    ];

    /// The step a report byte names.
    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as u8 == b)
    }

    /// What the step does, for error messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Step::Session => "starting its own session",
            Step::WorkDir => "entering its working directory",
            Step::Cgroup => "joining its cgroup",
            Step::Namespaces => "creating its namespaces",
            Step::Mounts => "setting up its private /tmp and mounts",
            Step::Loopback => "bringing up its loopback interface",
            Step::Limits => "setting its resource limits",
            Step::Capabilities => "dropping capabilities",
            Step::Identity => "switching to the project's user",
            Step::NoNewPrivs => "setting no_new_privs",
            Step::Landlock => "applying its Landlock ruleset",
            Step::Descriptors => "closing inherited descriptors",
        }
    }
}

/// How many fds a program may be handed.
pub(crate) const MAX_PASSED: usize = 16;

/// An `execve` prepared before the fork, whose environment gets
/// `LISTEN_PID=<the child's pid>` in the child.
pub(crate) struct Exec {
    /// The paths to try in turn, as `execvp` does: a program's own path,
    /// or the name in each dir of its `PATH`.
    paths: Vec<CString>,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    env_ptrs: Vec<*const libc::c_char>,
    /// `LISTEN_PID=` and room for the digits and the NUL.
    pid_entry: Box<std::cell::UnsafeCell<[u8; 32]>>,
}

// SAFETY: the raw pointers point into the CStrings and the box this struct
// owns, which it never changes in the parent; only the forked child (one
// thread, its own copy of the memory) writes the pid into `pid_entry`.
#[allow(unsafe_code)]
unsafe impl Send for Exec {}
// SAFETY: as for Send.
#[allow(unsafe_code)]
unsafe impl Sync for Exec {}

impl Exec {
    const PID_KEY: &'static [u8] = b"LISTEN_PID=";

    /// The first of `paths` that runs, with `argv` and `env` (every entry
    /// `KEY=value`, without `LISTEN_PID`, which this adds).
    pub(crate) fn new(paths: Vec<CString>, argv: Vec<CString>, env: Vec<CString>) -> Self {
        let mut entry = [0u8; 32];
        entry[..Self::PID_KEY.len()].copy_from_slice(Self::PID_KEY);
        let pid_entry = Box::new(std::cell::UnsafeCell::new(entry));
        let null = std::iter::once(std::ptr::null());
        let argv_ptrs = argv.iter().map(|a| a.as_ptr()).chain(null).collect();
        let env_ptrs = env
            .iter()
            .map(|e| e.as_ptr())
            .chain(std::iter::once(pid_entry.get().cast_const().cast()))
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Self {
            paths,
            _argv: argv,
            argv_ptrs,
            _env: env,
            env_ptrs,
            pid_entry,
        }
    }

    /// In the child, confined: the pid into the environment, then the
    /// exec, trying each path as `execvp` does (on to the next when one is
    /// missing or not allowed). Returns only when none ran: EACCES if one
    /// was not allowed, else the last error.
    fn run(&self) -> Errno {
        // SAFETY: getpid cannot fail. The digits go into the child's own
        // copy of `pid_entry` (the parent's never changes), through a
        // pointer into that box; the box has room for any pid and the NUL,
        // which is there already (zeroed). execve reads NUL-terminated
        // strings and arrays that live as long as `self`.
        unsafe {
            let mut pid = libc::getpid() as u32;
            let mut digits = [0u8; 10];
            let mut n = 0;
            loop {
                digits[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            let at = self.pid_entry.get().cast::<u8>().add(Self::PID_KEY.len());
            for i in 0..n {
                *at.add(i) = digits[n - 1 - i];
            }
            let mut denied = false;
            let mut last = Errno::ENOENT;
            for path in &self.paths {
                libc::execve(
                    path.as_ptr(),
                    self.argv_ptrs.as_ptr(),
                    self.env_ptrs.as_ptr(),
                );
                last = Errno::last();
                match last {
                    Errno::EACCES => denied = true,
                    Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::ENAMETOOLONG => {}
                    _ => return last,
                }
            }
            if denied { Errno::EACCES } else { last }
        }
    }
}

/// The hook: run every step; on failure report which and return its errno.
/// A failed exec of its own is reported as std's is, by its errno alone.
pub(crate) fn enter(p: &Prepared) -> io::Result<()> {
    steps(p).map_err(|(step, errno)| {
        let _ = write(p.report.as_fd(), &[step as u8]);
        io::Error::from_raw_os_error(errno as i32)
    })?;
    match &p.exec {
        Some(exec) => Err(io::Error::from_raw_os_error(exec.run() as i32)),
        None => Ok(()),
    }
}

fn steps(p: &Prepared) -> Result<(), (Step, Errno)> {
    let at = |step: Step| move |e: Errno| (step, e);
    setsid().map_err(at(Step::Session))?;
    // Copies made before the limits step can lower the open-files limit
    // below the fds this copy of bosun's table already uses: the passed
    // fds, moved out of the way, and the Landlock ruleset's.
    let passed = move_passed(&p.pass_fds).map_err(at(Step::Descriptors))?;
    let ruleset = match &p.ruleset {
        Some(ruleset) => Some(
            ruleset
                .try_clone()
                .map_err(|_| (Step::Landlock, Errno::last()))?,
        ),
        None => None,
    };
    // A program gets the usual umask, whatever bosun was started with.
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    if let Some(cwd) = &p.cwd {
        fchdir(cwd.as_fd()).map_err(at(Step::WorkDir))?;
    }
    for procs in &p.join {
        write(procs.as_fd(), b"0").map_err(at(Step::Cgroup))?;
    }
    let mut flags = CloneFlags::empty();
    if p.mounts.is_some() {
        flags |= CloneFlags::CLONE_NEWNS;
    }
    if p.new_net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if !flags.is_empty() {
        unshare(flags).map_err(at(Step::Namespaces))?;
    }
    if let Some(plan) = &p.mounts {
        mount_all(plan).map_err(at(Step::Mounts))?;
    }
    if p.new_net {
        loopback_up().map_err(at(Step::Loopback))?;
    }
    for (resource, value) in &p.rlimits {
        setrlimit(*resource, *value, *value).map_err(at(Step::Limits))?;
    }
    if let Some(last) = p.drop_bounding {
        for cap in 0..=last {
            // SAFETY: PR_CAPBSET_DROP takes a capability number and touches
            // no memory. EINVAL (a number this kernel lacks) is harmless.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0
                && Errno::last() != Errno::EINVAL
            {
                return Err((Step::Capabilities, Errno::last()));
            }
        }
    }
    if let Some((uid, gid)) = p.identity {
        let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
        setgroups(&[])
            .and_then(|()| setresgid(gid, gid, gid))
            .and_then(|()| setresuid(uid, uid, uid))
            .map_err(at(Step::Identity))?;
    }
    if p.no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(at(Step::NoNewPrivs))?;
    }
    if let Some(ruleset) = ruleset {
        ruleset
            .restrict_self()
            .map_err(|_| (Step::Landlock, Errno::last()))?;
    }
    descriptors(&passed[..p.pass_fds.len()], p.fd_ceiling).map_err(at(Step::Descriptors))
}

fn mount_all(plan: &Plan) -> Result<(), Errno> {
    const NONE: Option<&CStr> = None;
    mount(
        NONE,
        c"/",
        NONE,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        NONE,
    )?;
    for step in &plan.steps {
        match step {
            MountStep::Attach { tree, target } => {
                const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
                // SAFETY: move_mount reads two NUL-terminated strings that
                // outlive the call; `tree` is an fd this process owns.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_move_mount,
                        *tree,
                        c"".as_ptr(),
                        libc::AT_FDCWD,
                        target.as_ptr(),
                        MOVE_MOUNT_F_EMPTY_PATH,
                    )
                };
                if r != 0 {
                    return Err(Errno::last());
                }
            }
            MountStep::Skeleton { target } => mount(
                Some(c"tmpfs"),
                target.as_c_str(),
                Some(c"tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(c"mode=0755,size=1m"),
            )?,
            MountStep::Mkdir(path) => match mkdir(path.as_c_str(), Mode::from_bits_truncate(0o755))
            {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            },
        }
    }
    Ok(())
}

/// A new network namespace has a loopback that is down; bring it up, so a
/// program without network can still talk to itself.
fn loopback_up() -> Result<(), Errno> {
    // SAFETY: plain socket/ioctl/close calls on a zeroed `ifreq` that lives
    // on this stack frame; the socket is closed on every path.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(Errno::last());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let mut result = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if result == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            result = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let errno = Errno::last();
        libc::close(fd);
        if result != 0 {
            return Err(errno);
        }
    }
    Ok(())
}

/// Copies of `pass`, each above the range 3..3+n it goes to, so that
/// placing one never overwrites another not yet placed (close-on-exec).
fn move_passed(pass: &[OwnedFd]) -> Result<[i32; MAX_PASSED], Errno> {
    let mut moved = [0i32; MAX_PASSED];
    if pass.len() > MAX_PASSED {
        return Err(Errno::EMFILE);
    }
    let above = 3 + pass.len() as i32;
    for (slot, fd) in moved.iter_mut().zip(pass) {
        // SAFETY: F_DUPFD_CLOEXEC copies a descriptor this process owns.
        *slot = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, above) };
        if *slot < 0 {
            return Err(Errno::last());
        }
    }
    Ok(moved)
}

/// Mark every fd above 2 close-on-exec (an fd bosun opened without the
/// flag must not reach a tenant), then hand `moved` (see [`move_passed`])
/// over as fds 3, 4, …. Nothing of bosun's sits there to be overwritten:
/// bosun holds 3..3+[`MAX_PASSED`] from its start (see `reserve_low_fds`).
fn descriptors(moved: &[i32], ceiling: Option<i32>) -> Result<(), Errno> {
    // SAFETY: close_range with CLOEXEC and fcntl(F_SETFD) only set a flag
    // on fds; dup2 acts on descriptor numbers this process owns.
    unsafe {
        match ceiling {
            None => {
                if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
                    return Err(Errno::last());
                }
            }
            Some(ceiling) => {
                for fd in 3..=ceiling {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
        }
        // dup2's copies are not close-on-exec.
        for (i, fd) in moved.iter().enumerate() {
            if libc::dup2(*fd, 3 + i as i32) < 0 {
                return Err(Errno::last());
            }
        }
    }
    Ok(())
}

const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Whether this kernel has `close_range(CLOSE_RANGE_CLOEXEC)`: tried once,
/// on an fd made for the purpose.
pub(crate) fn close_range_works() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        let Ok(file) = std::fs::File::open("/dev/null") else {
            return false;
        };
        let fd = file.as_raw_fd() as libc::c_uint;
        // SAFETY: sets the close-on-exec flag (already set) on our own fd.
        unsafe { libc::syscall(libc::SYS_close_range, fd, fd, CLOSE_RANGE_CLOEXEC) == 0 }
    })
}

/// The highest fd this process has open now, for [`descriptors`]' loop
/// (with room for fds opened while the spawn is prepared).
pub(crate) fn fd_ceiling() -> i32 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .max()
                .unwrap_or(1024)
        })
        .unwrap_or(1024)
        + 64
}

/// Hold fds 3..3+[`MAX_PASSED`] for as long as bosun runs (on /dev/null,
/// close-on-exec), so that no descriptor bosun uses (the pipe std reports a
/// failed exec through, a spawn's report pipe) ever sits where a program's
/// passed fds are placed. Called first thing, while they are free (and
/// again by a server started in-process, which fills what is left).
pub fn reserve_low_fds() {
    // Each open takes the lowest free fd: stop at the first above the range.
    for _ in 0..3 + MAX_PASSED {
        match std::fs::File::open("/dev/null") {
            Ok(file) if file.as_raw_fd() < 3 + MAX_PASSED as i32 => {
                std::mem::forget(file);
            }
            _ => return,
        }
    }
}
