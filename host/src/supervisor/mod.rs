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

mod group;
mod handle;
mod logfile;
mod logs;
mod persist;
mod procfs;
mod reaper;
mod reload;
mod spawn;
mod spec;
mod stats;
mod status;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use handle::{Follow, ProjectHandle, SupervisorError};
pub use logs::{LogLine, RING_LINES};
pub use reload::ProcessChanges;
pub use status::{State, Status};

use crate::config::{Config, ProcessConfig, ProjectConfig};
use crate::confine::Confinement;
use crate::project::Checkout;
use handle::Instance;
use logfile::WriteMsg;
use logs::{LineSink, ProcessLog, file_spec};
use persist::Persist;
use spec::{InstanceSpec, Ready};
use worker::{Command, Worker};

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
    state_dir: PathBuf,
    leftovers_stopped: usize,
    confinement: Arc<Confinement>,
}

/// The statuses of every instance, shared with the sampler and the reaper.
pub(crate) type Statuses = Arc<Mutex<Vec<Arc<watch::Sender<Status>>>>>;

/// One project as the supervisor keeps it.
struct Project {
    handle: ProjectHandle,
    /// The project's log writer; started with its first process.
    writer: Option<mpsc::Sender<Vec<WriteMsg>>>,
}

/// The safety net for a supervisor dropped without [`Supervisor::shutdown`]
/// (a panic): SIGKILL every group still running, so nothing is orphaned.
/// After a shutdown no group is recorded, and this does nothing.
impl Drop for Supervisor {
    fn drop(&mut self) {
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
        let persist = Arc::new(Persist::load(&config.state_dir).map_err(StartError)?);
        let leftovers_stopped = persist.sweep_leftovers(LEFTOVER_GRACE).await;
        let statuses = Statuses::default();
        let mut supervisor = Self {
            projects: BTreeMap::new(),
            workers: Vec::new(),
            sampler: tokio::spawn(stats::sample(statuses.clone())),
            reaper: reaper::spawn_if_init(statuses.clone()),
            statuses,
            persist,
            state_dir: config.state_dir.clone(),
            leftovers_stopped,
            confinement,
        };
        for (project, pcfg) in &config.projects {
            supervisor
                .add_project(project, pcfg, checkouts.get(project).cloned())
                .map_err(StartError)?;
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
                let spec = Arc::new(InstanceSpec::new(jail.clone(), process, i, &self.state_dir));
                let start = self.persist.desired(&spec).unwrap_or(process.autostart);
                self.spawn_instance(&mut entry, pcfg, spec, start, None, checkout.clone())
            })
            .collect();
        entry.handle.instances.store(Arc::new(instances));
        let handle = entry.handle.clone();
        self.projects.insert(project.to_string(), entry);
        Ok(handle)
    }

    /// Start the worker of one instance. `replaces` is the instance it
    /// takes over from: its status and log carry on, so watchers and
    /// followers see one process that restarted.
    fn spawn_instance(
        &mut self,
        entry: &mut Project,
        pcfg: &ProjectConfig,
        spec: Arc<InstanceSpec>,
        start: bool,
        replaces: Option<&Instance>,
        checkout: Option<Checkout>,
    ) -> Instance {
        let process = &spec.config;
        let leaf = spec
            .jail
            .leaf(&format!("proc.{}", spec.label))
            .unwrap_or_else(|e| {
                tracing::error!(project = %spec.project, process = %spec.label, "creating its cgroup: {e}");
                None
            });
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
        let writer = entry
            .writer
            .get_or_insert_with(|| {
                let merged = pcfg.merged_log.clone().map(|p| {
                    file_spec(
                        p,
                        pcfg.merged_log_max_size.as_u64(),
                        pcfg.merged_log_keep,
                        &pcfg.dir,
                    )
                });
                logfile::spawn_writer(&spec.project, merged)
            })
            .clone();
        let (tx, rx) = mpsc::channel(16);
        let sink = LineSink {
            label: spec.label.as_str().into(),
            strip_ansi: process.strip_ansi,
            timestamps: process.timestamps,
            log: log.clone(),
            file: file_spec(
                spec.log_file.clone(),
                process.log_max_size.as_u64(),
                process.log_keep,
                &pcfg.dir,
            ),
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
            start,
            checkout,
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

    /// Stop every process by its own rules (all at once), keeping the desired
    /// state, and return once all are gone.
    pub async fn shutdown(mut self) {
        let all: Vec<Instance> = self
            .projects
            .values()
            .flat_map(|p| {
                p.handle
                    .instances
                    .load()
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
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
        if inst.commands.send(Command::Shutdown(tx)).await.is_ok() {
            acks.push(rx);
        }
    }
    for ack in acks {
        let _ = ack.await;
    }
}
