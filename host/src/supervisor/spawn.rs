//! Starting one instance, through its project's jail (see `confine`): the
//! project's `.env` (re-read on every start, so editing it and restarting
//! is enough), the config's env over that, piped output, and the
//! instance's cgroup leaf, which it keeps across restarts.
//!
//! Failures are described in words a user can act on ("program `nodee` not
//! found on PATH"), because a program that cannot start goes to `fatal`
//! rather than into a restart loop, unless the failure is one that passes
//! (out of descriptors, memory or processes; the program being written):
//! those go through the restart schedule.
//!
//! The fork itself runs on a blocking thread, a few at a time. A fork
//! copies bosun's page tables and descriptor table, and the exec after it
//! tears the copy down: a few milliseconds each, which on a runtime thread
//! would keep the API from answering while hundreds of processes start
//! (bosun's start, a reload adding projects). More forks at once than
//! cores only queue on the same cores.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::process::Child;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::persist::MARKER_VAR;
use super::spec::InstanceSpec;
use crate::confine::{GroupKill, Jail, JailCommand, Leaf};

/// One turn to fork, held until the fork is done.
pub(crate) type Turn = OwnedSemaphorePermit;

/// A supervisor's turns to fork, shared by its workers: none while it is
/// held (bosun's start, until the API serves), then one per core.
#[derive(Clone)]
pub(crate) struct Forks {
    turns: Arc<Semaphore>,
    released: Arc<AtomicBool>,
    /// The turns there are once released.
    cores: u32,
}

impl Forks {
    pub(crate) fn held() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            turns: Arc::new(Semaphore::new(0)),
            released: Arc::default(),
            cores: u32::try_from(cores).unwrap_or(u32::MAX),
        }
    }

    /// A turn to fork; `None` only if the supervisor is gone.
    pub(crate) async fn turn(&self) -> Option<Turn> {
        self.turns.clone().acquire_owned().await.ok()
    }

    /// Let the forks begin; once is enough.
    pub(crate) fn release(&self) {
        if !self.released.swap(true, Ordering::SeqCst) {
            self.turns.add_permits(self.cores as usize);
        }
    }

    /// Resolves once every fork asked for before it is done (turns are
    /// given in the order asked): the start's wave of processes, when
    /// asked for as it begins.
    pub(crate) fn settled(&self) -> impl Future<Output = ()> + Send + 'static {
        let (turns, all) = (self.turns.clone(), self.cores);
        async move {
            let _ = turns.acquire_many_owned(all).await;
        }
    }
}

/// Why an instance did not start.
pub(crate) struct Failure {
    /// For the status and the log.
    pub message: String,
    /// Whether trying again later may work.
    pub transient: bool,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self {
            message,
            transient: false,
        }
    }
}

/// The cgroup leaf a spawn runs in: the instance's own, kept across its
/// runs, or the name of one to create first (on the same blocking thread:
/// a cgroup's mkdir costs about what a fork does).
pub(crate) enum LeafFor {
    Kept(Leaf),
    Create(String),
}

/// The cgroup leaf `name` of `spec`'s process that already runs in it
/// (handed over by the previous image); `None` without cgroup2 or when it
/// cannot be opened (logged: the process runs on, in it, but a stop then
/// reaches only its process group).
pub(crate) fn leaf_of(spec: &InstanceSpec, name: &str) -> Option<Leaf> {
    spec.jail.leaf(name).unwrap_or_else(|e| {
        tracing::error!(project = %spec.project, process = %spec.label, "creating its cgroup: {e}");
        None
    })
}

/// Spawn `spec` in its leaf, on `turn`; the leaf (kept or created), and
/// the child.
pub(crate) async fn spawn(
    spec: &Arc<InstanceSpec>,
    marker: &str,
    leaf: LeafFor,
    turn: Turn,
) -> (Option<Leaf>, Result<Child, Failure>) {
    let (spec, marker) = (spec.clone(), marker.to_string());
    let (tx, rx) = oneshot::channel();
    tokio::task::spawn_blocking(move || {
        // Held until the fork is done, even if nobody waits for it.
        let _turn = turn;
        // A process never starts outside its leaf where there are leaves:
        // there its limits may be cgroup2's, and a stop is the leaf's. It
        // is tried again on the backoff schedule when the host may make
        // one later (short of memory or of cgroups for now).
        let leaf = match leaf {
            LeafFor::Kept(leaf) => Ok(Some(leaf)),
            LeafFor::Create(name) => spec.jail.leaf(&name).map_err(|e| Failure {
                message: format!("creating its cgroup: {e}"),
                transient: Jail::leaf_failure_is_transient(&e),
            }),
        };
        let answer = match leaf {
            Err(failure) => (None, Err(failure)),
            Ok(leaf) => {
                let spawned = command(&spec, &marker, leaf.as_ref()).and_then(|cmd| {
                    let child = cmd.spawn().map_err(|e| Failure {
                        message: e.to_string(),
                        transient: e.is_transient(),
                    })?;
                    // Until the worker has it: a worker gone meanwhile
                    // (bosun's shutdown aborts them) leaves no process
                    // unsupervised, whether the send below fails or the
                    // answer is dropped unread.
                    let guard = GroupKill::of(&child.child);
                    Ok((child.child, guard))
                });
                (leaf, spawned)
            }
        };
        let _ = tx.send(answer);
    });
    match rx.await {
        Ok((leaf, spawned)) => {
            let child = spawned.map(|(child, guard)| {
                guard.disarm();
                child
            });
            (leaf, child)
        }
        Err(_) => {
            let failure = Failure {
                message: "the thread starting it ended early".into(),
                transient: true,
            };
            (None, Err(failure))
        }
    }
}

/// The command that starts `spec` in `leaf`, confined as its jail says.
fn command(spec: &InstanceSpec, marker: &str, leaf: Option<&Leaf>) -> Result<JailCommand, Failure> {
    let cfg = &spec.config;
    let app = cfg
        .app_dir
        .as_deref()
        .map(|dir| crate::project::pin(&spec.project_dir, dir));
    let mut cmd = spec.jail.command(program(spec, app.as_deref()));
    cmd.args(&cfg.args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false)
        .network(cfg.network);
    match (&app, &cfg.cwd) {
        (Some(app), Some(cwd)) => cmd.cwd(app.join(cwd)),
        (Some(dir), None) | (None, Some(dir)) => cmd.cwd(dir),
        (None, None) => &mut cmd,
    };
    if let Some(leaf) = leaf {
        cmd.in_leaf(leaf);
    }
    cmd.envs(crate::project::dotenv(
        &spec.project_dir,
        cfg.app_dir.as_deref(),
    )?)
    .envs(&cfg.env)
    .env("BOSUN_PROJECT", &spec.project)
    .env("BOSUN_PROCESS", &cfg.name)
    .env("BOSUN_INSTANCE", spec.instance.to_string())
    .env(MARKER_VAR, marker)
    .prepend_path(&local_path(spec, app.as_deref()));
    // After the environment: its LISTEN_* are bosun's, whatever `.env` says.
    if spec.sockets.any() {
        let sockets = spec.sockets.for_program().map_err(|message| Failure {
            message,
            // The address may be free later (another program held it).
            transient: true,
        })?;
        cmd.listen_fds(sockets, &cfg.name);
    }
    Ok(cmd)
}

/// The project's `path` dirs, absolute, in the release `app` names (the
/// project dir without the release layout).
fn local_path(spec: &InstanceSpec, app: Option<&Path>) -> Vec<PathBuf> {
    let root = spec.project_dir.join(app.unwrap_or(Path::new("")));
    spec.config
        .project_path
        .iter()
        .map(|dir| root.join(dir))
        .collect()
}

/// A bare name is looked up on PATH; anything with a `/` is a path, relative
/// to the project dir (to the release `app` names, in the release layout).
fn program(spec: &InstanceSpec, app: Option<&Path>) -> PathBuf {
    let command = Path::new(&spec.config.command);
    if spec.config.command.contains('/') && command.is_relative() {
        spec.project_dir
            .join(app.unwrap_or(Path::new("")))
            .join(command)
    } else {
        command.to_path_buf()
    }
}
