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

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{Ended, Running, Upgrade};
use crate::control::{UpgradeError, UpgradeReport};
use crate::handoff::{Handoff, keep_across_exec};

/// How long the new binary's `check` may take (it compiles plugins the
/// cache lacks).
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);
/// The most of the check's output an answer carries.
const CHECK_OUTPUT: usize = 4096;

impl Running {
    /// Check the binary at bosun's path against the config file.
    pub(super) async fn check_upgrade(&self) -> Result<(UpgradeReport, PathBuf), UpgradeError> {
        let binary = self.binary.clone().ok_or(UpgradeError::Unsupported)?;
        let version = run(&binary, &["--version".into()]).await?;
        let config = self.config.source.display().to_string();
        run(&binary, &["check".into(), "--config".into(), config]).await?;
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
        grace: Duration,
    ) -> Ended {
        let listener = http.await.ok().flatten();
        self.jobs.hand_over(grace).await;
        let instances = self.supervisor.hand_over().await;
        let listener = listener.and_then(|l| match keep_across_exec(&l) {
            Ok(()) => Some(std::os::fd::IntoRawFd::into_raw_fd(l)),
            Err(e) => {
                tracing::error!("keeping the listening socket: {e}");
                None
            }
        });
        let handoff = Handoff {
            listener,
            nofile_soft: crate::confine::started_open_files().unwrap_or(1024),
            instances,
        };
        let path = handoff
            .write(&self.config.state_dir)
            .inspect_err(|e| {
                tracing::error!("writing the handoff ({e:#}); the new image will start afresh")
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
