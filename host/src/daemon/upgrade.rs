//! Upgrade in place, as the image being replaced does it.
//!
//! 1. The binary now at bosun's path must run `check` on the config file:
//!    a binary that is missing, not executable, or rejects the config
//!    changes nothing, and the caller gets its output.
//! 2. The caller is answered; new connections stop being accepted, but the
//!    socket stays open, so they wait in its backlog; open requests finish
//!    (within `shutdown_grace`).
//! 3. Running jobs get `shutdown_grace`; one still running then goes back
//!    to the queue, to run from the start in the next image.
//! 4. Every process is left running; its pipes, with what it had half
//!    written, the socket and the restart counts go into the handoff file.
//! 5. `bosun serve` executes the new binary in the same pid (see
//!    `cli::serve`), which adopts all of it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{Ended, Running, Upgrade};
use crate::config::Config;
use crate::control::{UpgradeError, UpgradeReport};
use crate::supervisor::handoff::{Handoff, keep_across_exec};

/// How long the new binary's `check` may take (it compiles plugins the
/// cache lacks).
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);
/// The most of the check's output an answer carries.
const CHECK_OUTPUT: usize = 4096;

impl Running {
    /// Check the binary at bosun's path against the config file.
    pub(super) async fn check_upgrade(&self) -> Result<(UpgradeReport, PathBuf), UpgradeError> {
        let binary = self.binary.clone().ok_or(UpgradeError::Unsupported)?;
        // The new image adopts each process as it runs, by name: with
        // process changes in the file not yet applied, it would run old
        // processes under a config that says otherwise.
        let mut file =
            Config::load(&self.config.source).map_err(|e| UpgradeError::Check(e.to_string()))?;
        // Procfile processes follow deploys, not the file: as a reload
        // would keep them, so does this comparison (a tenant's edit to its
        // Procfile must not block the operator's upgrade).
        super::reload::keep_procfile_processes(&self.config, &mut file);
        let (file, fixed) = super::reload::keep_fixed(&self.config, file);
        if file != self.config {
            return Err(UpgradeError::Check(
                "the config file has changes that are not applied yet: `bosun reload` first, \
                 then upgrade"
                    .into(),
            ));
        }
        // The state dir, the job store and the projects' users and cgroups
        // are where the running processes live: only a full restart moves
        // them.
        let moved: Vec<&str> = fixed
            .iter()
            .map(String::as_str)
            .filter(|k| ["state_dir", "jobs", "confinement"].contains(k))
            .collect();
        if !moved.is_empty() {
            return Err(UpgradeError::Check(format!(
                "{} changed in the config file: an upgrade cannot move running processes; \
                 restart bosun, or put them back",
                moved.join(", ")
            )));
        }
        // A clone's git would outlive the exec unwaited, and the new image
        // would clone into the same dir again.
        if let Some((project, _)) = self.checkouts.iter().find(|(_, c)| !c.is_done()) {
            return Err(UpgradeError::Check(format!(
                "the first checkout (git clone) of project `{project}` is still running; \
                 upgrade once it is done"
            )));
        }
        let version = run(&binary, &["--version".into()]).await?;
        let config = self.config.source.display().to_string();
        // `--upgrade`: a plugin file in a project's own dir that does not
        // load is the tenant's doing, and must not veto the upgrade.
        let args = [
            "check".into(),
            "--upgrade".into(),
            "--config".into(),
            config,
        ];
        run(&binary, &args).await?;
        let report = UpgradeReport {
            binary: binary.display().to_string(),
            version: version.trim().to_string(),
        };
        tracing::info!(binary = %report.binary, version = %report.version, "upgrading in place");
        Ok((report, binary))
    }

    /// Hand everything over for the new image (steps 2-4).
    pub(super) async fn hand_over(
        self,
        binary: PathBuf,
        http: JoinHandle<Option<std::net::TcpListener>>,
    ) -> Ended {
        let listener = http.await.ok().flatten().map(OwnedFd::from);
        self.jobs.hand_over(self.config.server.shutdown_grace).await;
        let (instances, sockets, mut fds) = self.supervisor.hand_over().await;
        let handoff = Handoff {
            version: crate::supervisor::handoff::VERSION,
            listener: listener.as_ref().map(AsRawFd::as_raw_fd),
            nofile_soft: crate::confine::started_open_files().unwrap_or(1024),
            instances,
            sockets,
        };
        fds.extend(listener);
        // Only a handoff on disk makes the descriptors worth keeping: without
        // one the new image starts afresh (binding the port, sweeping what
        // runs), and must find none of them open.
        let path = handoff
            .write(&self.config.state_dir)
            .and_then(|path| Ok(keep_across_exec(fds).map(|()| path)?))
            .inspect_err(|e| {
                tracing::error!("handing over ({e:#}); the new image will start afresh")
            })
            .ok();
        tracing::info!(
            processes = handoff.instances.len(),
            "handed over; executing {}",
            binary.display()
        );
        Ended::Upgrade(Upgrade {
            binary,
            config: self.config.source.clone(),
            handoff: path,
        })
    }
}

/// Run `binary` with `args`; its stdout, or its output as the error.
async fn run(binary: &PathBuf, args: &[String]) -> Result<String, UpgradeError> {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let output = match tokio::time::timeout(CHECK_TIMEOUT, cmd.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(UpgradeError::Check(format!(
                "cannot run {}: {e}",
                binary.display()
            )));
        }
        Err(_) => {
            return Err(UpgradeError::Check(format!(
                "`{} {}` did not finish within {CHECK_TIMEOUT:?}",
                binary.display(),
                args.join(" ")
            )));
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let mut text = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    if text.len() > CHECK_OUTPUT {
        let cut = text.floor_char_boundary(text.len() - CHECK_OUTPUT);
        text.replace_range(..cut, "…");
    }
    Err(UpgradeError::Check(format!(
        "`{} {}` failed ({}):\n{}",
        binary.display(),
        args.join(" "),
        output.status,
        text.trim_end()
    )))
}
