//! `bosun serve`: supervise every project's processes and serve the HTTP
//! API until SIGTERM or SIGINT, then stop in order (see `daemon`) and exit
//! once every process is gone. SIGHUP reloads the config, as `bosun
//! reload` and `POST /v1/reload` do; its outcome goes to the log.

use std::io::Write as _;
use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};

use super::ExitCode;
use crate::daemon::Daemon;

/// Serve `path` until told to stop.
pub async fn serve(path: &Path) -> ExitCode {
    let config = match super::load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let nofile = crate::confine::raise_open_files();
    // Connections are not the only descriptors: logs, pipes, the database.
    if (config.server.max_connections as u64).saturating_add(256) > nofile {
        tracing::warn!(
            max_connections = config.server.max_connections,
            open_files_limit = nofile,
            "server.max_connections leaves too few file descriptors under the open-files \
             limit for processes and jobs; raise the limit (LimitNOFILE=) or lower max_connections"
        );
    }
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("error: cannot install signal handlers");
        return ExitCode::HostError;
    };
    let daemon = match Daemon::start(&config).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::HostError;
        }
    };
    // One line on stdout, so scripts (and tests) learn the real port when
    // the config says 0.
    println!("bosun: serving {} on {}", path.display(), daemon.url());
    let _ = std::io::stdout().flush();
    tracing::info!(config = %path.display(), url = daemon.url(), "bosun is serving");
    loop {
        tokio::select! {
            _ = term.recv() => break tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => break tracing::info!("SIGINT: stopping"),
            // The reload logs what it changed, or every problem.
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                // In its own task: a stop signal is not kept waiting by a
                // reload's rolling restarts.
                let reloader = daemon.reloader();
                tokio::spawn(async move { reloader.reload().await });
            }
        }
    }
    daemon.stop().await;
    tracing::info!("every process stopped; exiting");
    ExitCode::Ok
}
