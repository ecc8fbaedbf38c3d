//! `bosun serve`: supervise every project's processes and serve the HTTP
//! API until SIGTERM or SIGINT, then stop in order (see `daemon`) and exit
//! once every process is gone. SIGHUP reloads the config, as `bosun
//! reload` and `POST /v1/reload` do; SIGUSR2 upgrades in place, as `bosun
//! upgrade` and `POST /v1/upgrade` do, and the exec that completes an
//! upgrade happens here. Outcomes go to the log.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use super::ExitCode;
use crate::daemon::{Daemon, Ended, Serving};
use crate::supervisor::handoff::Handoff;

/// Serve `path` until told to stop.
pub async fn serve(path: &Path) -> ExitCode {
    let config = match super::load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for (project, problem) in &config.procfile_problems {
        tracing::warn!(
            project,
            "{problem}; its processes from the Procfile are not started"
        );
    }
    let handoff = match Handoff::take() {
        Ok(handoff) => handoff,
        Err(e) => {
            // The previous image's processes are swept, then started anew.
            tracing::error!("the upgrade's handoff is unusable ({e:#}); starting afresh");
            None
        }
    };
    let nofile = crate::confine::raise_open_files(handoff.as_ref().map(|h| h.nofile_soft));
    // Connections are not the only descriptors: logs, pipes, the database.
    if (config.server.max_connections as u64).saturating_add(256) > nofile {
        tracing::warn!(
            max_connections = config.server.max_connections,
            open_files_limit = nofile,
            "server.max_connections leaves too few file descriptors under the open-files \
             limit for processes and jobs; raise the limit (LimitNOFILE=) or lower max_connections"
        );
    }
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined2()),
    ) else {
        eprintln!("error: cannot install signal handlers");
        return ExitCode::HostError;
    };
    let upgraded = handoff.is_some();
    let Some(binary) = started_as() else {
        eprintln!("error: cannot tell which binary runs");
        return ExitCode::HostError;
    };
    let mut daemon = match Daemon::serve(&config, Serving { binary, handoff }).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::HostError;
        }
    };
    // One line on stdout, so scripts (and tests) learn the real port when
    // the config says 0. Not `println!`: after an upgrade, whoever read the
    // first image's line may be gone, and a closed pipe must not end bosun.
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "bosun: serving {} on {}",
        path.display(),
        daemon.url()
    );
    let _ = stdout.flush();
    tracing::info!(config = %path.display(), url = daemon.url(), upgraded, "bosun is serving");
    if upgraded && std::env::var_os(crate::supervisor::handoff::STOP_ENV).is_some() {
        tracing::info!("a stop was asked for during the upgrade: stopping");
        return stop(daemon).await;
    }
    let control = daemon.control();
    let reloads = folding(move || {
        let control = control.clone();
        async move {
            let _ = control.reload().await;
        }
    });
    let control = daemon.control();
    let upgrades = folding(move || {
        let control = control.clone();
        async move {
            let _ = control.upgrade().await;
        }
    });
    loop {
        tokio::select! {
            _ = term.recv() => break tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => break tracing::info!("SIGINT: stopping"),
            // Done by their own tasks, so a stop signal is not kept waiting
            // by a reload's rolling restarts; signals that come while one
            // runs fold into one more. Each logs its outcome.
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                reloads.notify_one();
            }
            _ = usr2.recv() => {
                tracing::info!("SIGUSR2: upgrading in place");
                upgrades.notify_one();
            }
            ended = daemon.ended() => return finish(ended, false),
        }
    }
    stop(daemon).await
}

/// A task that does `what` once per notification; notifications that come
/// while it runs fold into one more run.
fn folding<F, Fut>(what: F) -> Arc<Notify>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let asked = Arc::new(Notify::new());
    let notified = asked.clone();
    tokio::spawn(async move {
        loop {
            notified.notified().await;
            what().await;
        }
    });
    asked
}

/// Stop in order. A stop that comes while an upgrade hands over finishes
/// the upgrade, and the new image stops: nothing is left unsupervised.
async fn stop(daemon: Daemon) -> ExitCode {
    match daemon.stop().await {
        Ended::Stopped => {
            tracing::info!("every process stopped; exiting");
            ExitCode::Ok
        }
        upgrade @ Ended::Upgrade(_) => finish(upgrade, true),
    }
}

/// The path bosun was started as, which an upgrade executes again: not
/// the file it resolves to, so switching a link (`/usr/local/bin/bosun` →
/// a release dir) upgrades to what the link now names. A bare name is
/// looked up on PATH, as the shell did.
fn started_as() -> Option<PathBuf> {
    let argv0 = PathBuf::from(std::env::args_os().next()?);
    if argv0.components().count() > 1 {
        return std::path::absolute(&argv0).ok();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(&argv0))
        .find(|candidate| candidate.is_file())
        .or_else(|| std::env::current_exe().ok())
}

/// After the daemon ended by itself: exit, or complete an upgrade by
/// executing the new binary in this pid, which then stops at once if
/// `then_stop`. Returns only if that fails.
fn finish(ended: Ended, then_stop: bool) -> ExitCode {
    let Ended::Upgrade(upgrade) = ended else {
        return ExitCode::Ok;
    };
    crate::supervisor::handoff::ignore_reload_signals();
    let exec = |binary: &Path| {
        let mut cmd = std::process::Command::new(binary);
        // argv[0] is the path it was started as, also after the fallback
        // below, so the next upgrade looks at that path again.
        cmd.arg0(&upgrade.binary)
            .arg("serve")
            .arg("--config")
            .arg(&upgrade.config);
        match &upgrade.handoff {
            Some(handoff) => cmd.env(crate::supervisor::handoff::ENV, handoff),
            None => cmd.env_remove(crate::supervisor::handoff::ENV),
        };
        match then_stop {
            true => cmd.env(crate::supervisor::handoff::STOP_ENV, "1"),
            false => cmd.env_remove(crate::supervisor::handoff::STOP_ENV),
        };
        cmd.exec()
    };
    let error = exec(&upgrade.binary);
    tracing::error!(
        "executing {}: {error}; going on with the running binary instead",
        upgrade.binary.display()
    );
    // The image that runs now, even if its file was replaced since.
    let error = exec(Path::new("/proc/self/exe"));
    tracing::error!(
        "executing the running binary again: {error}; the processes are left unsupervised"
    );
    ExitCode::HostError
}
