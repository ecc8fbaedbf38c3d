//! `bosun serve` as a value: the supervisor, the plugin engine, the job
//! system and the HTTP API, started in the right order and stopped in the
//! reverse one. The CLI runs one until a signal; tests and benchmarks run
//! one in-process on `127.0.0.1:0`.
//!
//! Start order: bind first (a port in use fails before any process starts),
//! then plugins, the job store, the confinement (identities, cgroups, and
//! the sweep of what a killed predecessor left), first checkouts
//! (`git.clone`), the supervisor (its workers waiting for their turn to
//! fork), the jobs, which need the supervisor's handles, and the API; then
//! the supervisor is released and the processes start, and the projects'
//! cgroups are made (each before its project's first program in any
//! case), so the API answers at once however many there are. Stop order:
//! no new connections, running jobs get `shutdown_grace` to finish (then
//! are interrupted), open requests end, and the supervisor stops every
//! process last, so a running deploy never loses the processes under it;
//! then the cgroups are removed.
//!
//! One control task owns what a reload changes (the supervisor, the job
//! queues, the jails, the config as applied); reloads and upgrades reach it
//! through a channel, so they never overlap each other or the stop. An
//! image started by an upgrade starts the same way, but on the socket and
//! with the processes the previous image handed over (see `handoff`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::server::{Listener, ServeError};
use crate::api::{AppState, Auth, Connections, LongRequests, router};
use crate::backends;
use crate::config::Config;
use crate::confine::{ConfineError, Confinement, Role};
use crate::control::{Control, Request, UpgradeError};
use crate::hooks::{Deliveries, DeliveryError, Hooks};
use crate::jobs::{Jobs, Store, StoreError};
use crate::metrics::Metrics;
use crate::plugins::grants::ProcessControl;
use crate::plugins::{
    ActionRegistry, Actions, Catalog, Engine, EngineConfig, EngineError, ProjectScope, UploadStore,
};
use crate::project::Checkout;
use crate::supervisor::handoff::Handoff;
use crate::supervisor::{ProjectHandle, StartError, Supervisor};

mod procfile;
mod reload;
mod trim;
mod upgrade;

/// Reload and upgrade requests that may wait while one is applied; more
/// wait to send.
const REQUESTS_WAITING: usize = 4;

/// Why bosun could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The HTTP listener.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The plugin engine.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The job store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The supervisor.
    #[error(transparent)]
    Supervisor(#[from] StartError),
    /// The confinement of the projects.
    #[error(transparent)]
    Confine(#[from] ConfineError),
    /// The webhook deliveries' store.
    #[error(transparent)]
    Deliveries(#[from] DeliveryError),
    /// The store of uploaded actions.
    #[error("opening the upload store: {0:#}")]
    Uploads(anyhow::Error),
}

/// A running bosun.
pub struct Daemon {
    addr: SocketAddr,
    url: String,
    control: Control,
    stop: CancellationToken,
    task: JoinHandle<Ended>,
}

/// How `bosun serve` runs a daemon: the binary an upgrade re-executes, and
/// what the previous image handed over when this one is an upgrade.
pub struct Serving {
    /// The path bosun was started from.
    pub binary: PathBuf,
    /// The handoff of the image this one replaces.
    pub handoff: Option<Handoff>,
}

/// How a daemon's run ended.
#[derive(Debug)]
pub enum Ended {
    /// Stopped in order: every process is gone.
    Stopped,
    /// An upgrade: everything is handed over; the caller executes this.
    Upgrade(Upgrade),
}

/// The exec that completes an upgrade.
#[derive(Debug)]
pub struct Upgrade {
    /// The binary to execute.
    pub binary: PathBuf,
    /// The config file it serves.
    pub config: PathBuf,
    /// The handoff file to give it; `None` when it could not be written
    /// (the new image then starts afresh, sweeping what runs).
    pub handoff: Option<PathBuf>,
}

/// Everything a reload changes, owned by the daemon's control task.
struct Running {
    /// The config as applied: the file's, but with the settings that need
    /// a restart as bosun started with them.
    config: Config,
    engine: Engine,
    registry: Actions,
    auth: Arc<Auth>,
    projects: Arc<ArcSwap<BTreeMap<String, ProjectHandle>>>,
    confinement: Arc<Confinement>,
    supervisor: Supervisor,
    jobs: Jobs,
    /// The binary an upgrade re-executes; `None` in-process.
    binary: Option<PathBuf>,
    /// Cancelled when bosun stops: a reload's waits end early.
    stop: CancellationToken,
    /// First checkouts (`git.clone`) started at boot or by reloads, by
    /// project: an upgrade waits for none, so it is refused while one runs.
    checkouts: BTreeMap<String, Checkout>,
    /// Requests to this task, for the scopes of projects with a Procfile.
    control: Control,
    /// The projects' webhooks.
    hooks: Arc<Hooks>,
    /// Uploaded and repository actions.
    catalog: Arc<Catalog>,
}

impl Daemon {
    /// Start serving `config` in-process (tests, benchmarks): everything
    /// but upgrades.
    pub async fn start(config: &Config) -> Result<Self, DaemonError> {
        Self::start_with(config, None, None).await
    }

    /// [`Daemon::start`], compiling teams' plugins (uploads, repository
    /// plugins) with the bosun `binary` within the config's budget, as
    /// `bosun serve` does with itself.
    pub async fn start_compiling_with(
        config: &Config,
        binary: PathBuf,
    ) -> Result<Self, DaemonError> {
        Self::start_with(config, None, Some(binary)).await
    }

    /// Start serving `config` as `bosun serve`.
    pub async fn serve(config: &Config, serving: Serving) -> Result<Self, DaemonError> {
        // The image running now, not the file at its path: an upgrade may
        // have put another bosun there, whose compiled code this one would
        // not find in the cache.
        let this_image = PathBuf::from(crate::plugins::compile::THIS_IMAGE);
        Self::start_with(config, Some(serving), Some(this_image)).await
    }

    async fn start_with(
        config: &Config,
        serving: Option<Serving>,
        compiler: Option<PathBuf>,
    ) -> Result<Self, DaemonError> {
        crate::confine::reserve_low_fds();
        let (binary, handoff) = match serving {
            Some(s) => (Some(s.binary), s.handoff),
            None => (None, None),
        };
        let inherited = handoff
            .as_ref()
            .and_then(|h| h.listener)
            .map(|fd| {
                crate::supervisor::handoff::adopt_fd(fd).map_err(|source| ServeError::Bind {
                    addr: config.server.listen,
                    source,
                })
            })
            .transpose()?;
        let listener = match inherited {
            Some(fd) => Listener::inherit(&config.server, fd)?,
            None => Listener::bind(&config.server).await?,
        };
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.server.listen,
            source,
        })?;
        let url = listener.url();
        let mut engine_config = EngineConfig::from_config(config);
        if let Some(binary) = compiler {
            engine_config = engine_config.compiling_with(config, binary);
        }
        let engine = Engine::new(&engine_config)?;
        let uploads = UploadStore::open(&config.state_dir).map_err(DaemonError::Uploads)?;
        let registry: Actions = Arc::new(ArcSwap::from_pointee(
            ActionRegistry::load_serving(&engine, config, &uploads).await,
        ));
        let catalog = Arc::new(Catalog::new(
            engine.clone(),
            registry.clone(),
            uploads,
            config,
        ));
        let store = Store::open(&config.state_dir)?;
        let hooks = Arc::new(Hooks::new(config, Deliveries::open(&config.state_dir)?));
        let role = match handoff {
            Some(_) => Role::Successor,
            None => Role::Server,
        };
        let confinement = Arc::new(Confinement::start(config, role).await?);
        let checkouts = backends::clone_missing(config, &confinement);
        let pending_checkouts = checkouts.clone();
        let (handed, sockets) = handoff
            .map(|h| (h.instances, h.sockets))
            .unwrap_or_default();
        let supervisor =
            Supervisor::start_adopting(config, confinement.clone(), &checkouts, handed, sockets)
                .await?;
        let leftovers = supervisor.leftovers_stopped() + confinement.leftovers_stopped();
        if leftovers > 0 {
            tracing::warn!(
                groups = leftovers,
                "stopped processes left by a previous bosun"
            );
        }
        let handles: BTreeMap<_, _> = config
            .projects
            .keys()
            .filter_map(|p| supervisor.project(p).map(|h| (p.clone(), h)))
            .collect();
        let (request_tx, mut requests) = mpsc::channel(REQUESTS_WAITING);
        let control = Control::new(request_tx);
        let scopes = config
            .projects
            .keys()
            .filter_map(|name| {
                let handle = handles.get(name)?.clone();
                let scope = scope_of(config, name, &confinement, handle, &control)?;
                Some((name.clone(), scope))
            })
            .collect();
        let metrics = Metrics::default();
        let started = Jobs::start(
            store,
            engine.clone(),
            registry.clone(),
            scopes,
            config.jobs.clone(),
            metrics.clone(),
            &checkouts,
        )
        .await;
        let (jobs, report) = match started {
            Ok(started) => started,
            Err(e) => {
                supervisor.shutdown().await;
                return Err(e.into());
            }
        };
        let refresher = catalog.clone();
        jobs.after_each_run(Arc::new(move |project, log| {
            let catalog = refresher.clone();
            Box::pin(async move { catalog.refresh_repo(&project, &*log).await })
        }));
        if report.interrupted > 0 || report.requeued > 0 || report.pruned > 0 {
            tracing::info!(
                interrupted = report.interrupted,
                requeued = report.requeued,
                pruned = report.pruned,
                "job history recovered"
            );
        }
        let stop = CancellationToken::new();
        // Reported at start (see `cli::serve`); what runs is what counts.
        let mut applied = config.clone();
        applied.procfile_problems.clear();
        let mut running = Running {
            config: applied,
            engine,
            registry: registry.clone(),
            auth: Arc::new(Auth::new(config)),
            projects: Arc::new(ArcSwap::from_pointee(handles)),
            confinement,
            supervisor,
            jobs: jobs.clone(),
            binary,
            stop: stop.clone(),
            checkouts: pending_checkouts,
            control: control.clone(),
            hooks: hooks.clone(),
            catalog: catalog.clone(),
        };
        let state = AppState {
            auth: running.auth.clone(),
            jobs,
            registry,
            projects: running.projects.clone(),
            metrics,
            server: Arc::new(config.server.clone()),
            confinement: running.confinement.clone(),
            long_requests: LongRequests::new(&config.server),
            control: control.clone(),
            hooks,
            catalog,
            hook_bodies: Connections::with_limits(
                crate::hooks::MAX_BODIES,
                crate::hooks::MAX_BODIES_PER_SOURCE,
            ),
            sessions: Arc::default(),
        };
        let grace = config.server.shutdown_grace;
        let http_stop = CancellationToken::new();
        let keep = Arc::new(AtomicBool::new(false));
        let http =
            tokio::spawn(listener.serve(router(state), http_stop.clone(), grace, keep.clone()));
        // Serving first: the processes start after, a few forks at a time,
        // and the cgroups no program has needed yet are made.
        running.supervisor.release();
        let confinement = running.confinement.clone();
        let made = tokio::task::spawn_blocking(move || confinement.make_cgroups());
        tokio::spawn(async move {
            if let Err(e) = made.await {
                tracing::error!("making the projects' cgroups: {e}");
            }
        });
        if running.binary.is_some() {
            // `bosun serve`, once they have: see `trim`.
            let settled = running.supervisor.settled();
            tokio::spawn(async move {
                settled.await;
                let _ = tokio::task::spawn_blocking(trim::give_back_start_pages).await;
            });
        }
        let stopping = stop.clone();
        // The control task: reloads one at a time, then the stop in order,
        // or an upgrade's handover.
        let task = tokio::spawn(async move {
            let mut upgrade = None;
            loop {
                tokio::select! {
                    biased;
                    () = stopping.cancelled() => break,
                    Some(request) = requests.recv() => match request {
                        Request::Reload(reply) => {
                            let _ = reply.send(running.reload().await);
                        }
                        Request::Procfile(project, reply) => {
                            let _ = reply.send(running.apply_procfile(&project).await);
                        }
                        Request::Upgrade(reply) => match running.check_upgrade().await {
                            // A stop asked for during the check wins.
                            Ok(_) if stopping.is_cancelled() => {
                                let _ = reply.send(Err(UpgradeError::ShuttingDown));
                                break;
                            }
                            Ok((report, binary)) => {
                                let _ = reply.send(Ok(report));
                                upgrade = Some(binary);
                                break;
                            }
                            Err(e) => {
                                tracing::error!("upgrade refused: {e}");
                                let _ = reply.send(Err(e));
                            }
                        },
                    }
                }
            }
            drop(requests);
            match upgrade {
                Some(binary) => {
                    // Jobs taken from now on wait for the next image.
                    running.jobs.hold_starts();
                    keep.store(true, Ordering::SeqCst);
                    http_stop.cancel();
                    running.hand_over(binary, http).await
                }
                None => {
                    http_stop.cancel();
                    running.jobs.shutdown(grace).await;
                    let _ = http.await;
                    running.supervisor.shutdown().await;
                    Ended::Stopped
                }
            }
        });
        Ok(Self {
            addr,
            url,
            control,
            stop,
            task,
        })
    }

    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:8750`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A handle that asks this bosun to reload.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Stop everything, in order, and return once every process is gone:
    /// [`Ended::Stopped`]. If an upgrade was already handing over, it is
    /// finished instead ([`Ended::Upgrade`]): the caller executes it, and
    /// the new image then stops.
    pub async fn stop(self) -> Ended {
        self.stop.cancel();
        self.task.await.unwrap_or(Ended::Stopped)
    }

    /// Wait until the daemon ends by itself: an upgrade has handed
    /// everything over (or a stop, asked for elsewhere, completed).
    pub async fn ended(&mut self) -> Ended {
        match (&mut self.task).await {
            Ok(ended) => ended,
            Err(e) => {
                tracing::error!("the control task failed: {e}");
                Ended::Stopped
            }
        }
    }
}

/// What `project`'s plugins may touch: its dir, git, commands and processes.
fn scope_of(
    config: &Config,
    project: &str,
    confinement: &Confinement,
    handle: ProjectHandle,
    control: &Control,
) -> Option<ProjectScope> {
    let pcfg = config.projects.get(project)?;
    let jail = confinement.jail(project)?;
    let processes: Arc<dyn ProcessControl> = match pcfg.procfile {
        Some(_) => Arc::new(procfile::ProcfileProcesses {
            inner: Arc::new(handle),
            control: control.clone(),
            project: project.to_string(),
        }),
        None => Arc::new(handle),
    };
    Some(backends::project_scope(project, pcfg, jail, &config.state_dir).with_processes(processes))
}
