//! The per-project handle: everything the rest of bosun may do to a
//! project's processes. The `processes` WIT import and the HTTP API both sit
//! on it, so a project's handle is also the boundary of what a plugin can
//! reach: it holds only that project's instances.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use nix::sys::signal::Signal;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::log_line::LogLine;
use super::logs::ProcessLog;
use super::spec::InstanceSpec;
use super::status::{State, Status};
use super::worker::Order;
use crate::config::RestartOrder;

/// Why a handle operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// No process of the project has that name.
    #[error("this project has no process named `{0}`")]
    NotFound(String),
    /// The operation could not be done.
    #[error("{0}")]
    Failed(String),
    /// `wait_ready` ran out of time.
    #[error("{0}")]
    Timeout(String),
}

/// A log follower: the recent lines, then each new one as it comes.
pub struct Follow {
    /// The lines logged before following began, oldest first per process.
    pub recent: Vec<Arc<LogLine>>,
    /// Every line after those; ends when the processes' logs close.
    pub lines: mpsc::Receiver<Arc<LogLine>>,
}

#[derive(Clone)]
pub(crate) struct Instance {
    pub name: String,
    /// What it runs; a reload compares it with the new config.
    pub spec: Arc<InstanceSpec>,
    pub commands: mpsc::Sender<Order>,
    pub status: Arc<watch::Sender<Status>>,
    pub log: Arc<ProcessLog>,
}

/// One project's processes. Cheap to clone; every clone sees the instances
/// a reload puts in place.
#[derive(Clone)]
pub struct ProjectHandle {
    pub(crate) instances: Arc<ArcSwap<Vec<Instance>>>,
}

impl ProjectHandle {
    pub(crate) fn new(instances: Vec<Instance>) -> Self {
        Self {
            instances: Arc::new(ArcSwap::from_pointee(instances)),
        }
    }

    /// Every instance's status, in config order.
    pub fn list(&self) -> Vec<Status> {
        self.instances
            .load()
            .iter()
            .map(|i| i.status.borrow().clone())
            .collect()
    }

    fn select(&self, name: Option<&str>) -> Result<Vec<Instance>, SupervisorError> {
        let selected: Vec<Instance> = self
            .instances
            .load()
            .iter()
            .filter(|i| name.is_none_or(|n| i.name == n))
            .cloned()
            .collect();
        match name {
            Some(n) if selected.is_empty() => Err(SupervisorError::NotFound(n.to_string())),
            _ => Ok(selected),
        }
    }

    /// Send one command to each selected instance and wait for every reply.
    async fn each<R>(
        &self,
        name: Option<&str>,
        make: impl Fn(oneshot::Sender<R>) -> Order,
    ) -> Result<(Vec<Instance>, Vec<R>), SupervisorError> {
        let selected = self.select(name)?;
        let mut replies = Vec::new();
        for inst in &selected {
            let (tx, rx) = oneshot::channel();
            inst.commands.send(make(tx)).await.map_err(|_| gone(inst))?;
            replies.push(rx);
        }
        let mut out = Vec::new();
        for (rx, inst) in replies.into_iter().zip(&selected) {
            out.push(rx.await.map_err(|_| gone(inst))?);
        }
        Ok((selected, out))
    }

    fn statuses(selected: &[Instance]) -> Vec<Status> {
        selected.iter().map(|i| i.status.borrow().clone()).collect()
    }

    /// Start the selected processes (all when `None`). Returns once each has
    /// been spawned (or failed to).
    pub async fn start(&self, name: Option<&str>) -> Result<Vec<Status>, SupervisorError> {
        let (selected, _) = self.each(name, Order::Start).await?;
        Ok(Self::statuses(&selected))
    }

    /// Stop the selected processes; returns once their groups are gone.
    pub async fn stop(&self, name: Option<&str>) -> Result<Vec<Status>, SupervisorError> {
        let (selected, _) = self.each(name, Order::Stop).await?;
        Ok(Self::statuses(&selected))
    }

    /// Stop, then start, the selected processes, one process name after
    /// another. A process's instances restart one at a time, each once the
    /// one before is running (ready, with a check) again
    /// (`restart_order = "rolling"`, the default), or all together
    /// (`"all-at-once"`). An instance with `sockets` starts its
    /// replacement before it stops. An instance that does not come back
    /// fails the restart, and the ones after it keep running as they were.
    pub async fn restart(&self, name: Option<&str>) -> Result<Vec<Status>, SupervisorError> {
        let selected = self.select(name)?;
        let mut names: Vec<&str> = Vec::new();
        for inst in &selected {
            if !names.contains(&inst.name.as_str()) {
                names.push(&inst.name);
            }
        }
        for name in names {
            let group: Vec<&Instance> = selected.iter().filter(|i| i.name == name).collect();
            match group[0].spec.config.restart_order {
                RestartOrder::AllAtOnce => {
                    let mut replies = Vec::new();
                    for inst in &group {
                        replies.push(restart_one(inst).await?);
                    }
                    for (reply, inst) in replies.into_iter().zip(&group) {
                        answered(inst, reply.await)?;
                    }
                }
                RestartOrder::Rolling => {
                    for (i, inst) in group.iter().enumerate() {
                        let up = match answered(inst, restart_one(inst).await?.await) {
                            Ok(()) => until_up(inst).await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = up {
                            let rest = group.len() - i - 1;
                            return Err(match rest {
                                0 => e,
                                _ => SupervisorError::Failed(format!(
                                    "{e}; the {rest} instance(s) after it were not restarted"
                                )),
                            });
                        }
                    }
                }
            }
        }
        Ok(Self::statuses(&selected))
    }

    /// Send `signal` to the process group of each selected running process.
    pub async fn signal(
        &self,
        name: Option<&str>,
        signal: Signal,
    ) -> Result<Vec<Status>, SupervisorError> {
        let (selected, results) = self.each(name, |tx| Order::Signal(signal, tx)).await?;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            return Err(SupervisorError::Failed(e));
        }
        Ok(Self::statuses(&selected))
    }

    /// Wait until every selected process is `running`. Fails at once if one
    /// is stopped, exited or fatal, and with `Timeout` after `timeout`.
    pub async fn wait_ready(
        &self,
        name: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<Status>, SupervisorError> {
        let selected = self.select(name)?;
        let wait_all = async {
            for inst in &selected {
                let mut rx = inst.status.subscribe();
                let status = rx
                    .wait_for(|s| {
                        !matches!(s.state, State::Starting | State::Backoff | State::Stopping)
                    })
                    .await
                    .map_err(|_| SupervisorError::Failed("the supervisor is shutting down".into()))?
                    .clone();
                if status.state != State::Running {
                    let why = status.message.map(|m| format!(": {m}")).unwrap_or_default();
                    return Err(SupervisorError::Failed(format!(
                        "`{}-{}` is {:?}{why}",
                        status.name, status.instance, status.state
                    )));
                }
            }
            Ok(())
        };
        tokio::time::timeout(timeout, wait_all)
            .await
            .map_err(|_| SupervisorError::Timeout(format!("not ready within {timeout:?}")))??;
        Ok(Self::statuses(&selected))
    }

    /// The last `n` lines of each selected process, merged oldest first (a
    /// stable sort, so each process's own order is kept).
    pub fn logs(&self, name: Option<&str>, n: usize) -> Result<Vec<Arc<LogLine>>, SupervisorError> {
        let mut lines: Vec<Arc<LogLine>> = self
            .select(name)?
            .iter()
            .flat_map(|i| i.log.recent(n))
            .collect();
        lines.sort_by_key(|l| l.time);
        Ok(lines)
    }

    /// The last `n` lines of each selected process, then every new line as it
    /// comes. A follower that falls behind skips ahead: it holds at most
    /// `FOLLOWER_LINES` lines (each up to 16 KiB) a tenant chose, however
    /// slowly it reads.
    pub fn follow(&self, name: Option<&str>, n: usize) -> Result<Follow, SupervisorError> {
        const FOLLOWER_LINES: usize = 64;
        let (tx, rx) = mpsc::channel(FOLLOWER_LINES);
        let mut recent = Vec::new();
        for inst in self.select(name)? {
            let (lines, mut sub) = inst.log.follow(n);
            recent.extend(lines);
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    // A quiet process's forwarder ends when its follower
                    // leaves, not at a next line that may never come.
                    let next = tokio::select! {
                        () = tx.closed() => return,
                        next = sub.recv() => next,
                    };
                    match next {
                        Ok(line) => {
                            if tx.send(line).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
        Ok(Follow { recent, lines: rx })
    }
}

/// Ask `inst` to restart; the reply comes once it has (or could not).
async fn restart_one(
    inst: &Instance,
) -> Result<oneshot::Receiver<Result<(), String>>, SupervisorError> {
    let (tx, rx) = oneshot::channel();
    inst.commands
        .send(Order::Restart(tx))
        .await
        .map_err(|_| gone(inst))?;
    Ok(rx)
}

/// A worker's answer to a restart, as the handle's error.
fn answered(
    inst: &Instance,
    reply: Result<Result<(), String>, oneshot::error::RecvError>,
) -> Result<(), SupervisorError> {
    match reply {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(SupervisorError::Failed(format!(
            "`{}`: {why}",
            inst.spec.label
        ))),
        Err(_) => Err(gone(inst)),
    }
}

/// How long past its readiness timeout a restarted instance may take to
/// come up before it counts as failed.
pub(super) const UP_GRACE: Duration = Duration::from_secs(5);

/// Wait until a just-(re)started `inst` is running (ready, with a check):
/// an error says what it is instead. A stopped instance stays stopped.
pub(super) async fn until_up(inst: &Instance) -> Result<(), SupervisorError> {
    let wait = inst.spec.ready.as_ref().map_or(Duration::ZERO, |(_, t)| *t) + UP_GRACE;
    let mut rx = inst.status.subscribe();
    let _ = tokio::time::timeout(wait, rx.wait_for(|s| s.state != State::Starting)).await;
    let status = inst.status.borrow().clone();
    if matches!(status.state, State::Running | State::Stopped) {
        return Ok(());
    }
    let why = match (&status.message, status.exit_code, status.exit_signal) {
        (Some(message), _, _) => format!(": {message}"),
        (None, Some(code), _) => format!(" (it exited with code {code})"),
        (None, None, Some(signal)) => format!(" (it was killed by signal {signal})"),
        (None, None, None) => String::new(),
    };
    Err(SupervisorError::Failed(format!(
        "`{}` is not ready after its restart: {}{why}",
        inst.spec.label,
        status.state.name()
    )))
}

/// The error of a command to a worker that has ended: bosun is shutting
/// down, or a reload replaced or removed the instance.
fn gone(inst: &Instance) -> SupervisorError {
    SupervisorError::Failed(format!(
        "`{}` was stopped by a reload or bosun's shutdown",
        inst.spec.label
    ))
}
