//! The process supervisor: keeps each project's processes alive, PM2-style,
//! and stops them without leaving anything behind.
//!
//! - Every instance runs in its own process group; stopping means the stop
//!   signal to the group, `kill_timeout`, then SIGKILL to the group, until no
//!   live member is left. That covers a script's background children, which
//!   supervisord orphans by default.
//! - Crashes restart on the `restart_at` schedule; a program that cannot be
//!   spawned at all goes to `fatal` with the reason instead of a tight loop.
//! - Output is reassembled into whole lines per stream, so no log (per
//!   process or merged) ever holds a spliced line.
//! - Run as PID 1 (a container's init), it also reaps the orphans it adopts.
//! - What should run, and which groups exist, is persisted: a restarted bosun
//!   stops the groups a killed predecessor left, then brings back exactly the
//!   set that was running.
//!
//! Each instance is one worker task that owns its child; the rest of bosun
//! reaches a project's instances only through its [`ProjectHandle`].

mod adopt;
mod backoff;
mod group;
mod handle;
pub mod handoff;
mod log_line;
mod logfile;
mod logs;
mod persist;
mod probe;
mod procfs;
mod readiness;
mod reaper;
mod reload;
mod replace;
mod running;
mod sockets;
mod spawn;
mod spec;
mod stats;
mod status;
mod worker;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use handle::{Follow, ProjectHandle, SupervisorError};
pub use log_line::LogLine;
pub use logs::RING_LINES;
pub use reload::ProcessChanges;
pub use status::{State, Status};

use crate::config::{Config, ProcessConfig, ProjectConfig, resolved};
use crate::confine::Confinement;
use crate::project::Checkout;
use handle::Instance;
use handoff::{HandedInstance, HandedSocket};
use logfile::WriteMsg;
use logs::{LineSink, ProcessLog, file_spec, own_file_spec};
use persist::Persist;
use sockets::Sockets;
use spawn::Forks;
use spec::{InstanceSpec, Ready};
use worker::{Order, Worker};

/// How long an upgrade waits for each worker and for the log writers.
const HANDOVER_WAIT: Duration = Duration::from_secs(10);
/// Grace given to leftovers of a previous bosun at boot.
const LEFTOVER_GRACE: Duration = Duration::from_secs(5);

/// Why the supervisor could not start.
#[derive(Debug, thiserror::Error)]
#[error("starting the supervisor: {0:#}")]
pub struct StartError(anyhow::Error);

/// All projects' processes.
pub struct Supervisor {
    projects: BTreeMap<String, Project>,
    workers: Vec<JoinHandle<()>>,
    /// Every instance's status, for the sampler and the reaper.
    statuses: Statuses,
    sampler: JoinHandle<()>,
    reaper: Option<JoinHandle<()>>,
    persist: Arc<Persist>,
    /// Resolved once: the default log files beneath it are then resolved
    /// by construction (bosun alone makes the dirs there).
    state_dir: PathBuf,
    leftovers_stopped: usize,
    confinement: Arc<Confinement>,
    /// Running instances the previous image handed over, by
    /// `project/label`, until their workers adopt them.
    handed: BTreeMap<String, HandedInstance>,
    /// Set once everything was handed over: the drop then kills nothing.
    handed_over: bool,
    /// The listening sockets bound for processes.
    sockets: Arc<Sockets>,
    /// The workers' turns to fork: held until [`Supervisor::release`].
    forks: Forks,
}

/// The statuses of every instance, shared with the sampler and the reaper.
pub(crate) type Statuses = Arc<Mutex<Vec<Arc<watch::Sender<Status>>>>>;

/// How an instance's worker begins.
#[derive(Default)]
struct Begin<'a> {
    /// Whether it starts at once.
    start: bool,
    /// The instance it takes over from: its status and log carry on, so
    /// watchers and followers see one process that restarted.
    replaces: Option<&'a Instance>,
    /// The project's first checkout, to wait for.
    checkout: Option<Checkout>,
    /// The running process it adopts (an upgrade).
    adopt: Option<HandedInstance>,
}

/// One project as the supervisor keeps it.
struct Project {
    handle: ProjectHandle,
    /// The project's log writer, started with its first process, and its
    /// thread (joined when an upgrade must know every line is written).
    writer: Option<(mpsc::Sender<Vec<WriteMsg>>, std::thread::JoinHandle<()>)>,
}

/// The safety net for a supervisor dropped without [`Supervisor::shutdown`]
/// (a panic): SIGKILL every group still running, so nothing is orphaned.
/// After a shutdown no group is recorded, and this does nothing.
impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.handed_over {
            return;
        }
        // Workers first, or one would restart what is killed below.
        for worker in &self.workers {
            worker.abort();
        }
        self.sampler.abort();
        if let Some(reaper) = &self.reaper {
            reaper.abort();
        }
        self.persist.kill_all();
    }
}

impl Supervisor {
    /// Stop what a previous bosun left running, then start every instance that
    /// should run: as persisted, or per `autostart` when never recorded.
    /// Every program runs in its project's jail of `confinement`; the
    /// supervisor removes the cgroups when it shuts down.
    pub async fn start(config: &Config, confinement: Arc<Confinement>) -> Result<Self, StartError> {
        Self::start_after(config, confinement, &BTreeMap::new()).await
    }

    /// [`Supervisor::start`], with the processes of a project in
    /// `checkouts` first waiting for its first checkout.
    pub async fn start_after(
        config: &Config,
        confinement: Arc<Confinement>,
        checkouts: &BTreeMap<String, Checkout>,
    ) -> Result<Self, StartError> {
        let supervisor =
            Self::start_adopting(config, confinement, checkouts, Vec::new(), Vec::new()).await?;
        supervisor.release();
        Ok(supervisor)
    }

    /// Let the processes start. Until then every worker waits for its turn
    /// to fork: bosun's start sets up every project and serves its API
    /// first, then starts hundreds of processes without keeping it waiting.
    pub fn release(&self) {
        self.forks.release();
    }

    /// Resolves once the processes started so far have been forked.
    pub fn settled(&self) -> impl Future<Output = ()> + Send + 'static {
        self.forks.settled()
    }

    /// [`Supervisor::start_after`] in a new image after an upgrade: the
    /// `handed` instances are adopted, running as they were, with the
    /// listening `sockets` they share, and nothing is swept (the previous
    /// image left nothing behind but them).
    pub async fn start_adopting(
        config: &Config,
        confinement: Arc<Confinement>,
        checkouts: &BTreeMap<String, Checkout>,
        handed: Vec<HandedInstance>,
        sockets: Vec<HandedSocket>,
    ) -> Result<Self, StartError> {
        let persist = Arc::new(Persist::load(&config.state_dir).map_err(StartError)?);
        let leftovers_stopped = if handed.is_empty() {
            persist.sweep_leftovers(LEFTOVER_GRACE).await
        } else {
            0
        };
        let statuses = Statuses::default();
        let mut supervisor = Self {
            projects: BTreeMap::new(),
            workers: Vec::new(),
            sampler: tokio::spawn(stats::sample(statuses.clone())),
            reaper: reaper::spawn_if_init(statuses.clone()),
            statuses,
            persist,
            state_dir: resolved(&config.state_dir),
            leftovers_stopped,
            confinement,
            handed: handed.into_iter().map(|h| (h.key.clone(), h)).collect(),
            handed_over: false,
            sockets: Arc::default(),
            forks: Forks::held(),
        };
        // Held until the instances have taken them; one no process names
        // any more closes after.
        let _adopted: Vec<_> = sockets
            .into_iter()
            .filter_map(|s| match handoff::adopt_fd(s.fd) {
                Ok(fd) => Some(supervisor.sockets.adopt(s.owner, s.address, fd)),
                Err(e) => {
                    tracing::warn!(address = %s.address, "a handed-over socket: {e}; binding anew");
                    None
                }
            })
            .collect();
        for (project, pcfg) in &config.projects {
            supervisor
                .add_project(project, pcfg, checkouts.get(project).cloned())
                .map_err(StartError)?;
        }
        for (key, gone) in std::mem::take(&mut supervisor.handed) {
            if let Some(pid) = gone.pid {
                tracing::warn!(process = %key, pid, "handed over, but the config no longer has it; stopping it");
                tokio::spawn(stop_unclaimed(gone, pid));
            }
        }
        Ok(supervisor)
    }

    /// Start `project`'s processes (as persisted, or per `autostart`), in
    /// its jail, after `checkout` when given.
    pub(crate) fn add_project(
        &mut self,
        project: &str,
        pcfg: &ProjectConfig,
        checkout: Option<Checkout>,
    ) -> anyhow::Result<ProjectHandle> {
        let jail = self
            .confinement
            .jail(project)
            .ok_or_else(|| anyhow::anyhow!("project `{project}` has no jail"))?;
        let mut entry = Project {
            handle: ProjectHandle::new(Vec::new()),
            writer: None,
        };
        let instances = numbered(pcfg)
            .map(|(process, i)| {
                let spec = Arc::new(InstanceSpec::new(
                    jail.clone(),
                    process,
                    i,
                    &self.state_dir,
                    &self.sockets,
                ));
                let handed = self.handed.remove(&format!("{project}/{}", spec.label));
                let (begin, idle) = match handed {
                    // Running: adopted, and no checkout to wait for (it runs).
                    Some(running) if running.pid.is_some() => {
                        let begin = Begin {
                            start: true,
                            adopt: Some(running),
                            ..Begin::default()
                        };
                        (begin, None)
                    }
                    // Not running: it stays as it was.
                    Some(idle) => (Begin::default(), Some(idle)),
                    None => {
                        let begin = Begin {
                            start: self.persist.desired(&spec).unwrap_or(process.autostart),
                            checkout: checkout.clone(),
                            ..Begin::default()
                        };
                        (begin, None)
                    }
                };
                let instance = self.spawn_instance(&mut entry, pcfg, spec, begin);
                if let Some(idle) = idle {
                    instance.status.send_modify(|s| {
                        s.state = idle.state;
                        s.restarts = idle.restarts;
                        s.exit_code = idle.exit_code;
                        s.exit_signal = idle.exit_signal;
                        s.message = idle.message;
                    });
                }
                instance
            })
            .collect();
        entry.handle.instances.store(Arc::new(instances));
        let handle = entry.handle.clone();
        self.projects.insert(project.to_string(), entry);
        Ok(handle)
    }

    /// Start the worker of one instance, as `begin` says.
    fn spawn_instance(
        &mut self,
        entry: &mut Project,
        pcfg: &ProjectConfig,
        spec: Arc<InstanceSpec>,
        begin: Begin<'_>,
    ) -> Instance {
        let Begin {
            start,
            replaces,
            checkout,
            adopt,
        } = begin;
        let process = &spec.config;
        // A replacement gets a leaf of its own: the one it replaces is
        // removed by its worker as it ends, which may be after this starts.
        let leaf_name = match (adopt.as_ref().and_then(|h| h.leaf.clone()), replaces) {
            (Some(handed), _) => handed,
            (None, Some(_)) => format!("proc.{}.{}", spec.label, uuid::Uuid::now_v7().simple()),
            (None, None) => format!("proc.{}", spec.label),
        };
        // Opened now for a process handed over (it runs in it); made by the
        // worker at its first spawn otherwise, off the runtime's threads.
        let leaf = adopt
            .as_ref()
            .and_then(|_| spawn::leaf_of(&spec, &leaf_name));
        let (status, log) = match replaces {
            Some(old) => {
                old.status.send_modify(|s| {
                    let restarts = s.restarts + 1;
                    *s = Status::new(&process.name, spec.instance, start);
                    s.restarts = restarts;
                });
                (old.status.clone(), old.log.clone())
            }
            None => {
                let status = Arc::new(watch::Sender::new(Status::new(
                    &process.name,
                    spec.instance,
                    start,
                )));
                self.statuses
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(status.clone());
                (status, Arc::new(ProcessLog::new()))
            }
        };
        let (writer, _) = entry.writer.get_or_insert_with(|| {
            let merged = pcfg.merged_log.clone().map(|p| {
                file_spec(
                    &p,
                    pcfg.merged_log_max_size.as_u64(),
                    pcfg.merged_log_keep,
                    &pcfg.dir,
                )
            });
            logfile::spawn_writer(&spec.project, merged)
        });
        let writer = writer.clone();
        let (tx, rx) = mpsc::channel(16);
        let sink = LineSink {
            label: spec.label.as_str().into(),
            strip_ansi: process.strip_ansi,
            timestamps: process.timestamps,
            log: log.clone(),
            file: match process.log_file {
                Some(_) => file_spec(
                    &spec.log_file,
                    process.log_max_size.as_u64(),
                    process.log_keep,
                    &pcfg.dir,
                ),
                None => own_file_spec(
                    spec.log_file.clone(),
                    process.log_max_size.as_u64(),
                    process.log_keep,
                ),
            },
            writer,
            ready: match &spec.ready {
                Some((Ready::Log(pattern), _)) => {
                    Some((pattern.clone(), watch::Sender::new(false)))
                }
                _ => None,
            },
        };
        let worker = Worker {
            spec: spec.clone(),
            status: status.clone(),
            sink,
            commands: rx,
            persist: self.persist.clone(),
            leaf,
            leaf_name,
            forks: self.forks.clone(),
            start,
            checkout,
            adopt,
            captures: Vec::new(),
            handing: CancellationToken::new(),
            deferred: None,
            backoff: backoff::Backoff::default(),
        };
        self.workers.push(tokio::spawn(worker.run()));
        Instance {
            name: process.name.clone(),
            spec,
            commands: tx,
            status,
            log,
        }
    }

    /// The handle of `project`, if it is configured.
    pub fn project(&self, project: &str) -> Option<ProjectHandle> {
        self.projects.get(project).map(|p| p.handle.clone())
    }

    /// How many process groups of a previous bosun were stopped at start.
    pub fn leftovers_stopped(&self) -> usize {
        self.leftovers_stopped
    }

    /// Every instance of every project.
    fn instances(&self) -> Vec<Instance> {
        self.projects
            .values()
            .flat_map(|p| {
                p.handle
                    .instances
                    .load()
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Leave every running process running for the next bosun image (an
    /// upgrade): stop reading their pipes, write every line read so far,
    /// keep their cgroups and jails, and return what the next image needs.
    pub async fn hand_over(mut self) -> (Vec<HandedInstance>, Vec<HandedSocket>, Vec<OwnedFd>) {
        // Taken first: the sockets close with the last instance naming them.
        let held = self.sockets.in_use();
        let all = self.instances();
        let mut replies = Vec::new();
        for inst in &all {
            let (tx, rx) = oneshot::channel();
            if inst.commands.send(Order::Handover(tx)).await.is_ok() {
                replies.push(rx);
            }
        }
        let (mut handed, mut fds) = (Vec::new(), Vec::new());
        for reply in replies {
            // A worker that does not answer keeps its process; it is then
            // orphaned by the exec, and the next start sweeps it.
            if let Ok(Ok(Some((instance, pipes)))) =
                tokio::time::timeout(HANDOVER_WAIT, reply).await
            {
                handed.push(instance);
                fds.extend(pipes);
            }
        }
        drop(all);
        for worker in std::mem::take(&mut self.workers) {
            let _ = worker.await;
        }
        self.sampler.abort();
        if let Some(reaper) = &self.reaper {
            reaper.abort();
        }
        // Every sink is gone with its worker; the writers end once they
        // have written what was sent.
        let threads: Vec<_> = std::mem::take(&mut self.projects)
            .into_values()
            .filter_map(|p| p.writer.map(|(_, thread)| thread))
            .collect();
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        if tokio::time::timeout(HANDOVER_WAIT, joined).await.is_err() {
            tracing::warn!(
                "a project's log writer did not finish in time; its last lines may be lost"
            );
        }
        let mut sockets = Vec::new();
        for (owner, address, socket) in held {
            match socket.try_clone() {
                Ok(fd) => {
                    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
                    sockets.push(HandedSocket {
                        owner,
                        address,
                        fd: raw,
                    });
                    fds.push(fd);
                }
                Err(e) => tracing::warn!(%address, "cannot hand its socket over: {e}"),
            }
        }
        self.confinement.keep();
        self.handed_over = true;
        (handed, sockets, fds)
    }

    /// Stop every process by its own rules (all at once), keeping the desired
    /// state, and return once all are gone.
    pub async fn shutdown(mut self) {
        let all = self.instances();
        stop_all(&all).await;
        self.projects.clear();
        for worker in std::mem::take(&mut self.workers) {
            let _ = worker.await;
        }
        self.confinement.close();
    }
}

/// Each process entry of `pcfg` with its instance numbers. Entries may
/// share a name; their instances are numbered on from one entry to the
/// next, so every label (the persisted key, the default log file) is the
/// project's only one.
fn numbered(pcfg: &ProjectConfig) -> impl Iterator<Item = (&ProcessConfig, u32)> {
    let mut next: BTreeMap<&str, u32> = BTreeMap::new();
    pcfg.processes.iter().flat_map(move |process| {
        let first = next.entry(process.name.as_str()).or_insert(0);
        let offset = *first;
        *first += process.instances;
        (offset..offset + process.instances).map(move |i| (process, i))
    })
}

/// Stop `instances` for good (all at once, each by its own rules), keeping
/// their desired state; returns once all are gone.
async fn stop_all(instances: &[Instance]) {
    let mut acks = Vec::new();
    for inst in instances {
        let (tx, rx) = oneshot::channel();
        if inst.commands.send(Order::Shutdown(tx)).await.is_ok() {
            acks.push(rx);
        }
    }
    for ack in acks {
        let _ = ack.await;
    }
}

/// Stop a process the previous image handed over that the config no
/// longer has: its pipes closed, its group stopped, its leader reaped.
async fn stop_unclaimed(gone: HandedInstance, pid: u32) {
    for pipe in [gone.stdout, gone.stderr].into_iter().flatten() {
        drop(handoff::adopt_fd(pipe.fd));
    }
    let mut leader = running::Proc::Adopted(running::Adopted::new(pid));
    let exited = async {
        let _ = leader.wait().await;
    };
    group::stop_group_after(
        pid as i32,
        None,
        nix::sys::signal::Signal::SIGTERM,
        LEFTOVER_GRACE,
        exited,
    )
    .await;
    let _ = leader.wait().await;
}
