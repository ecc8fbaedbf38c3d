//! The `bosun` binary: parses the command line and hands off to `bosun::cli`.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use bosun::cli::{Cli, Command, ExitCode, check, exec, serve};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("BOSUN_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code: ExitCode = match Cli::parse().command {
        Command::Serve { config } => serve(&config).await,
        Command::Check { config } => check(&config).await,
        Command::Exec {
            config,
            project,
            action,
            params,
        } => exec(&config, &project, &action, params).await,
    };
    std::process::ExitCode::from(code as u8)
}
