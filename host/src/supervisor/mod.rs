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
mod spawn;
mod spec;
mod stats;
mod status;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use handle::{Follow, ProjectHandle, SupervisorError};
pub use logs::{LogLine, RING_LINES};
pub use status::{State, Status};

use crate::config::Config;
use crate::confine::Confinement;
use crate::project::Checkout;
use handle::Instance;
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
    projects: BTreeMap<String, ProjectHandle>,
    workers: Vec<JoinHandle<()>>,
    sampler: JoinHandle<()>,
    reaper: Option<JoinHandle<()>>,
    persist: Arc<Persist>,
    leftovers_stopped: usize,
    confinement: Arc<Confinement>,
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
        let mut projects = BTreeMap::new();
        let mut workers = Vec::new();
        let mut all_status = Vec::new();
        for (project, pcfg) in &config.projects {
            if pcfg.processes.is_empty() {
                // No processes, no log writer thread.
                let instances = Arc::new(Vec::new());
                projects.insert(project.clone(), ProjectHandle { instances });
                continue;
            }
            let merged = pcfg.merged_log.clone().map(|p| {
                file_spec(
                    p,
                    pcfg.merged_log_max_size.as_u64(),
                    pcfg.merged_log_keep,
                    &pcfg.dir,
                )
            });
            let jail = confinement
                .jail(project)
                .ok_or_else(|| StartError(anyhow::anyhow!("project `{project}` has no jail")))?;
            let writer = logfile::spawn_writer(project, merged);
            let mut instances = Vec::new();
            // Entries may share a name; their instances are numbered on
            // from one entry to the next, so every label (the persisted
            // key, the default log file) is the project's only one.
            let mut next: BTreeMap<&str, u32> = BTreeMap::new();
            for process in &pcfg.processes {
                let first = next.entry(process.name.as_str()).or_insert(0);
                let offset = *first;
                *first += process.instances;
                for i in offset..offset + process.instances {
                    let spec = Arc::new(InstanceSpec::new(
                        jail.clone(),
                        process,
                        i,
                        &config.state_dir,
                    ));
                    let leaf = jail.leaf(&format!("proc.{}", spec.label)).unwrap_or_else(|e| {
                        tracing::error!(project, process = %spec.label, "creating its cgroup: {e}");
                        None
                    });
                    let start = persist.desired(&spec).unwrap_or(process.autostart);
                    let status = Arc::new(watch::Sender::new(Status::new(&process.name, i, start)));
                    let log = Arc::new(ProcessLog::new());
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
                        writer: writer.clone(),
                        ready: match &spec.ready {
                            Some((Ready::Log(pattern), _)) => {
                                Some((pattern.clone(), watch::Sender::new(false)))
                            }
                            _ => None,
                        },
                    };
                    let worker = Worker {
                        spec,
                        status: status.clone(),
                        sink,
                        commands: rx,
                        persist: persist.clone(),
                        leaf,
                        start,
                        checkout: checkouts.get(project).cloned(),
                    };
                    workers.push(tokio::spawn(worker.run()));
                    all_status.push(status.clone());
                    instances.push(Instance {
                        name: process.name.clone(),
                        commands: tx,
                        status,
                        log,
                    });
                }
            }
            projects.insert(
                project.clone(),
                ProjectHandle {
                    instances: Arc::new(instances),
                },
            );
        }
        let sampler = tokio::spawn(stats::sample(all_status.clone()));
        let reaper = reaper::spawn_if_init(all_status);
        Ok(Self {
            projects,
            workers,
            sampler,
            reaper,
            persist,
            leftovers_stopped,
            confinement,
        })
    }

    /// The handle of `project`, if it is configured.
    pub fn project(&self, project: &str) -> Option<ProjectHandle> {
        self.projects.get(project).cloned()
    }

    /// How many process groups of a previous bosun were stopped at start.
    pub fn leftovers_stopped(&self) -> usize {
        self.leftovers_stopped
    }

    /// Stop every process by its own rules (all at once), keeping the desired
    /// state, and return once all are gone.
    pub async fn shutdown(mut self) {
        let mut acks = Vec::new();
        for handle in self.projects.values() {
            for inst in handle.instances.iter() {
                let (tx, rx) = oneshot::channel();
                if inst.commands.send(Command::Shutdown(tx)).await.is_ok() {
                    acks.push(rx);
                }
            }
        }
        for ack in acks {
            let _ = ack.await;
        }
        self.projects.clear();
        for worker in std::mem::take(&mut self.workers) {
            let _ = worker.await;
        }
        self.confinement.close();
    }
}
