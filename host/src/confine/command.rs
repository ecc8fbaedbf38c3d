//! [`JailCommand`]: a program about to start for a project, and the one
//! place where it gets its confinement.
//!
//! Built like a `tokio::process::Command` (from an empty environment plus
//! the confined base: see `env`); `spawn` prepares everything the child's
//! hook needs (the work dir opened beneath the project dir, the cgroup
//! leaf, the mount plan, the Landlock ruleset, the report pipe), installs
//! the hook, and forks.

use std::ffi::OsStr;
use std::io::{self, ErrorKind};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use nix::fcntl::OFlag;
use tokio::process::{Child, Command};

use super::child::{self, Prepared, Step};
use super::{Jail, Leaf, env, mounts};
use crate::project::{self, DirError};

/// Why a program could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Its working directory.
    #[error("{0}")]
    Dir(#[from] DirError),
    /// Preparing its confinement failed (before any fork).
    #[error("preparing to start `{program}`: {source:#}")]
    Prepare {
        /// The program.
        program: String,
        /// What failed.
        source: anyhow::Error,
    },
    /// The fork, a step of the confinement in the child, or the exec.
    #[error("{}", start_message(program, *step, source))]
    Start {
        /// The program.
        program: String,
        /// The confinement step that failed, in words; None: the exec itself.
        step: Option<&'static str>,
        /// The OS error.
        source: io::Error,
    },
}

impl SpawnError {
    /// Whether trying again later may work: the host or the project is out
    /// of something for now (descriptors, memory, processes: EMFILE,
    /// ENFILE, ENOMEM, EAGAIN, which a full pids cgroup also answers) or
    /// the program is being written (ETXTBSY, mid-deploy). A missing
    /// program, a permission or a bad working dir will not fix itself.
    pub fn is_transient(&self) -> bool {
        let transient = |errno: i32| {
            [
                libc::EMFILE,
                libc::ENFILE,
                libc::ENOMEM,
                libc::EAGAIN,
                libc::ETXTBSY,
                libc::EINTR,
            ]
            .contains(&errno)
        };
        match self {
            Self::Dir(_) => false,
            Self::Start { source, .. } => source.raw_os_error().is_some_and(transient),
            Self::Prepare { source, .. } => source.chain().any(|e| {
                e.downcast_ref::<io::Error>()
                    .and_then(io::Error::raw_os_error)
                    .or_else(|| e.downcast_ref::<nix::errno::Errno>().map(|n| *n as i32))
                    .is_some_and(transient)
            }),
        }
    }
}

fn start_message(program: &str, step: Option<&str>, source: &io::Error) -> String {
    match (step, source.kind()) {
        (Some(step), _) => format!("cannot start `{program}`: {step}: {source}"),
        (None, ErrorKind::NotFound) => format!(
            "program `{program}` not found (a name is looked up on PATH; a path is relative to the project dir)"
        ),
        (None, ErrorKind::PermissionDenied) => format!(
            "program `{program}` cannot be run by the project's user: it is not executable, or outside what the project may read (see `confinement.read_only`)"
        ),
        (None, _) => format!("cannot start `{program}`: {source}"),
    }
}

/// Kills a program's whole process group when dropped (every jailed
/// program leads a group of its own: the hook starts a session). Take it
/// while the program is unreaped, so its group id is still its own.
pub struct GroupKill(Option<nix::unistd::Pid>);

impl GroupKill {
    /// The group `child` leads.
    pub fn of(child: &Child) -> Self {
        Self(child.id().map(|id| nix::unistd::Pid::from_raw(id as i32)))
    }

    /// Kill nothing after all: the program is in hands that will stop it.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A started program and its cgroup leaf (if it got a fresh one).
pub struct Jailed {
    /// The process.
    pub child: Child,
    /// Its own leaf; dropping it kills whatever is left in it.
    pub leaf: Option<Leaf>,
}

/// Whose program it is.
enum Kind {
    /// The project's: every layer.
    Project,
    /// bosun's own, on the project's behalf (a fetch into its mirror, with
    /// the server's credentials): bosun's user and environment, in a leaf
    /// of the project's cgroup, under its limits.
    Host,
    /// bosun's helper serving the project, reading `readable` only (git
    /// `upload-pack` on a mirror): as the project's user (never root, so a
    /// bug in it holds nothing a tenant's own program would not), Landlock
    /// read-only on `readable` and the system, no network, a clean
    /// environment, in the project's cgroup. It works in `readable` through
    /// an fd, so it needs no way there by name.
    Helper(PathBuf),
}

enum LeafChoice {
    None,
    Fresh(&'static str),
    Given(Arc<OwnedFd>),
}

/// A program to start for a project.
pub struct JailCommand {
    jail: Arc<Jail>,
    kind: Kind,
    cmd: Command,
    program: String,
    cwd: Option<PathBuf>,
    network: bool,
    leaf: LeafChoice,
    pass_fds: Vec<OwnedFd>,
    /// Whether `LISTEN_PID` must name the program (socket activation).
    listen_pid: bool,
    workdir: Option<PathBuf>,
}

impl Jail {
    /// `program`, to be run for this project: an empty environment plus
    /// `PATH`, `HOME`, `USER`, `LOGNAME`, `LANG` and `TMPDIR`; stdin from
    /// /dev/null; in a session and process group of its own (pgid = pid).
    pub fn command(self: &Arc<Self>, program: impl AsRef<OsStr>) -> JailCommand {
        let user = match &self.identity {
            Some(id) => id.name.clone(),
            None => own_user_name(),
        };
        let mut cmd = self.build(program.as_ref(), Kind::Project);
        cmd.cmd
            .env_clear()
            .env("PATH", env::PATH)
            .env("HOME", &self.dir)
            .env("USER", &user)
            .env("LOGNAME", &user)
            .env("LANG", env::LANG)
            .env("TMPDIR", &self.tmpdir);
        cmd
    }

    /// `program` run by bosun itself for this project (see `Kind::Host`).
    pub fn host_command(self: &Arc<Self>, program: impl AsRef<OsStr>) -> JailCommand {
        let mut cmd = self.build(program.as_ref(), Kind::Host);
        cmd.own_leaf("host");
        cmd
    }

    /// `program` run by bosun for this project, reading only `readable`
    /// and working there (see `Kind::Helper`).
    pub fn helper_command(
        self: &Arc<Self>,
        program: impl AsRef<OsStr>,
        readable: impl Into<PathBuf>,
    ) -> JailCommand {
        let readable = readable.into();
        let mut cmd = self.build(program.as_ref(), Kind::Helper(readable.clone()));
        cmd.cmd
            .env_clear()
            .env("PATH", env::PATH)
            .env("HOME", &readable)
            .env("LANG", env::LANG);
        cmd.network(false).own_leaf("helper");
        cmd
    }

    fn build(self: &Arc<Self>, program: &OsStr, kind: Kind) -> JailCommand {
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null());
        JailCommand {
            jail: self.clone(),
            kind,
            cmd,
            program: program.to_string_lossy().into_owned(),
            cwd: None,
            network: true,
            leaf: LeafChoice::None,
            pass_fds: Vec::new(),
            listen_pid: false,
            workdir: None,
        }
    }
}

/// The name of the user bosun runs as, for `USER` when it cannot switch.
fn own_user_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map_or_else(|| "bosun".to_string(), |u| u.name)
}

impl JailCommand {
    /// Add arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Add one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// Set variables (over the base).
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.cmd.envs(vars);
        self
    }

    /// Set one variable.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.env(key, value);
        self
    }

    /// Put `dirs` in front of the `PATH` set so far (call it after the
    /// environment is complete). A program name is looked up on that `PATH`
    /// by the confined child itself, as `execvp` does, so a project-local
    /// dir is searched as the project, never stat'ed by bosun.
    pub fn prepend_path(&mut self, dirs: &[PathBuf]) -> &mut Self {
        if dirs.is_empty() {
            return self;
        }
        let current = self
            .cmd
            .as_std()
            .get_envs()
            .find(|(k, _)| *k == "PATH")
            .and_then(|(_, v)| v.map(OsStr::to_os_string))
            .unwrap_or_else(|| env::PATH.into());
        // A dir with a `:` in its name cannot be on PATH at all.
        if let Ok(joined) =
            std::env::join_paths(dirs.iter().cloned().chain(std::env::split_paths(&current)))
        {
            self.cmd.env("PATH", joined);
        }
        self
    }

    /// Where stdin comes from (default /dev/null).
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.cmd.stdin(cfg);
        self
    }

    /// Where stdout goes.
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.cmd.stdout(cfg);
        self
    }

    /// Where stderr goes.
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Self {
        self.cmd.stderr(cfg);
        self
    }

    /// Kill the process when its handle is dropped.
    pub fn kill_on_drop(&mut self, yes: bool) -> &mut Self {
        self.cmd.kill_on_drop(yes);
        self
    }

    /// Work in `rel`, relative to the project dir (and staying inside it).
    pub fn cwd(&mut self, rel: impl Into<PathBuf>) -> &mut Self {
        self.cwd = Some(rel.into());
        self
    }

    /// Whether it may use the network (default true).
    pub fn network(&mut self, yes: bool) -> &mut Self {
        self.network = yes;
        self
    }

    /// Run it in `leaf` (an instance's leaf, kept across its restarts).
    pub fn in_leaf(&mut self, leaf: &Leaf) -> &mut Self {
        self.leaf = LeafChoice::Given(leaf.procs());
        self
    }

    /// Run it in a fresh leaf of its own, named after `kind`, returned with
    /// the child.
    pub fn own_leaf(&mut self, kind: &'static str) -> &mut Self {
        self.leaf = LeafChoice::Fresh(kind);
        self
    }

    /// Give it `fd` as its fd 3.
    pub fn pass_fd(&mut self, fd: OwnedFd) -> &mut Self {
        self.pass_fds = vec![fd];
        self
    }

    /// Give it `sockets` by the systemd socket-activation protocol: as fds
    /// 3, 4, …, with `LISTEN_FDS`, `LISTEN_FDNAMES` (`name` for each) and
    /// `LISTEN_PID` set to its own pid.
    pub fn listen_fds(&mut self, sockets: Vec<OwnedFd>, name: &str) -> &mut Self {
        let names = vec![name; sockets.len()].join(":");
        self.cmd
            .env("LISTEN_FDS", sockets.len().to_string())
            .env("LISTEN_FDNAMES", names);
        self.pass_fds = sockets;
        self.listen_pid = true;
        self
    }

    /// Let it write `dir` instead of the project dir (a checkout being
    /// made beside it), and work there. `dir` must exist and belong to the
    /// project's user.
    pub fn workdir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        let dir = dir.into();
        self.cmd.env("HOME", &dir);
        self.workdir = Some(dir);
        self
    }

    /// Start it.
    pub fn spawn(mut self) -> Result<Jailed, SpawnError> {
        let program = self.program.clone();
        let prepare = |e: anyhow::Error| SpawnError::Prepare {
            program: program.clone(),
            source: e,
        };
        let jail = self.jail.clone();
        if let Some(why) = &jail.broken {
            return Err(prepare(anyhow::anyhow!(
                "its confinement could not be set up: {why}"
            )));
        }
        if jail.retired.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(prepare(anyhow::anyhow!(
                "a reload removed the project or replaced its confinement"
            )));
        }
        // Its cgroups, with their limits, before anything of it runs.
        let cgroup = jail
            .cgroup()
            .map_err(|e| prepare(anyhow::Error::new(e).context("making its cgroups")))?;
        let cwd = match &self.kind {
            Kind::Host => None,
            Kind::Helper(dir) => Some(project::open(dir)?),
            Kind::Project => {
                let root = self.workdir.as_deref().unwrap_or(&jail.dir);
                Some(project::subdir(&project::open(root)?, self.cwd.as_deref())?)
            }
        }
        .map(|dir| OwnedFd::from(dir.into_std_file()));
        let (leaf, mut join) = match &self.leaf {
            LeafChoice::None => (None, Vec::new()),
            LeafChoice::Given(procs) => (None, vec![procs.clone()]),
            LeafChoice::Fresh(kind) => {
                let leaf = jail
                    .fresh_leaf(kind)
                    .map_err(|e| prepare(anyhow::Error::new(e).context("creating its cgroup")))?;
                let join = leaf.iter().map(Leaf::procs).collect();
                (leaf, join)
            }
        };
        join.extend(cgroup.iter().flat_map(|c| c.v1_procs()));
        let project = matches!(self.kind, Kind::Project);
        let mounts = match (&jail.private, &jail.identity) {
            (Some(private), Some(id)) if project => {
                let root = self.workdir.clone().unwrap_or_else(|| jail.dir.clone());
                let root = root.canonicalize().unwrap_or(root);
                let mut needed: Vec<&Path> = vec![&root];
                needed.extend(jail.read_only.iter().map(PathBuf::as_path));
                Some(mounts::plan(private, &needed, id).map_err(prepare)?)
            }
            _ => None,
        };
        let ruleset = match &self.kind {
            Kind::Project => jail.ruleset(self.workdir.as_deref(), self.network),
            Kind::Host => Ok(None),
            Kind::Helper(dir) => jail.helper_ruleset(dir),
        }
        .map_err(prepare)?;
        let confined = !matches!(self.kind, Kind::Host) && !jail.unconfined;
        let (report_rx, report_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .map_err(|e| prepare(anyhow::Error::new(e).context("creating a pipe")))?;
        let prepared = Prepared {
            cwd,
            join,
            mounts,
            new_net: !self.network && jail.netns && confined,
            rlimits: jail.rlimits.clone(),
            drop_bounding: jail.drop_bounding.filter(|_| confined),
            identity: jail
                .identity
                .as_ref()
                .filter(|_| !matches!(self.kind, Kind::Host))
                .map(|id| (id.uid, id.gid)),
            no_new_privs: confined,
            ruleset,
            pass_fds: std::mem::take(&mut self.pass_fds),
            exec: match self.listen_pid {
                true => Some(
                    own_exec(self.cmd.as_std()).map_err(|source| SpawnError::Start {
                        program: program.clone(),
                        step: None,
                        source,
                    })?,
                ),
                false => None,
            },
            report: report_tx,
            fd_ceiling: (!child::close_range_works()).then(child::fd_ceiling),
        };
        // SAFETY: the hook only makes async-signal-safe system calls on
        // data prepared above (see `child`).
        #[allow(unsafe_code)]
        unsafe {
            self.cmd.pre_exec(move || child::enter(&prepared));
        }
        let spawned = self.cmd.spawn();
        // Drops the hook, and with it the parent's copies of every fd.
        drop(self.cmd);
        match spawned {
            Ok(child) => Ok(Jailed { child, leaf }),
            Err(source) => {
                let mut byte = [0u8; 1];
                let step = match nix::unistd::read(&report_rx, &mut byte) {
                    Ok(1) => Step::from_byte(byte[0]).map(Step::describe),
                    _ => None,
                };
                Err(SpawnError::Start {
                    program,
                    step,
                    source,
                })
            }
        }
    }
}

/// The exec std would make for `cmd`, made by the hook instead (see
/// `child::Exec`): a program name is tried in each dir of the `PATH` of
/// its own environment, in the child, as `execvp` would (the search runs
/// confined: bosun never looks at the paths a tenant's `.env` names).
fn own_exec(cmd: &std::process::Command) -> io::Result<child::Exec> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = |bytes: &[u8]| {
        std::ffi::CString::new(bytes).map_err(|_| io::Error::from(ErrorKind::InvalidInput))
    };
    let program = cmd.get_program();
    let mut env = Vec::new();
    let mut path_var = None;
    for (key, value) in cmd.get_envs() {
        let Some(value) = value else { continue };
        if key == "LISTEN_PID" {
            continue;
        }
        if key == "PATH" {
            path_var = Some(value);
        }
        env.push(c(&[key.as_bytes(), b"=", value.as_bytes()].concat())?);
    }
    let paths = if program.as_bytes().contains(&b'/') {
        vec![c(program.as_bytes())?]
    } else {
        path_var
            .map(std::env::split_paths)
            .into_iter()
            .flatten()
            .map(|dir| c(dir.join(program).as_os_str().as_bytes()))
            .collect::<io::Result<_>>()?
    };
    let argv = std::iter::once(program)
        .chain(cmd.get_args())
        .map(|a| c(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    Ok(child::Exec::new(paths, argv, env))
}
