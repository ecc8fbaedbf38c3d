//! `bosun serve`: run the supervisor for every project until SIGTERM or
//! SIGINT, then stop every process by its own rules and exit once they are
//! gone. (The HTTP API joins it here.)

use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};

use super::ExitCode;
use crate::supervisor::Supervisor;

/// Serve `path` until told to stop.
pub async fn serve(path: &Path) -> ExitCode {
    let config = match super::load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("error: cannot install signal handlers");
        return ExitCode::HostError;
    };
    let supervisor = match Supervisor::start(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::HostError;
        }
    };
    if supervisor.leftovers_stopped() > 0 {
        tracing::warn!(
            groups = supervisor.leftovers_stopped(),
            "stopped processes left by a previous bosun"
        );
    }
    tracing::info!(config = %path.display(), "bosun is serving");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping every process"),
        _ = int.recv() => tracing::info!("SIGINT: stopping every process"),
    }
    supervisor.shutdown().await;
    tracing::info!("every process stopped; exiting");
    ExitCode::Ok
}
