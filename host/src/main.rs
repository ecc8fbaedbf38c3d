//! The `bosun` binary: parses the command line and hands off to `bosun::cli`.

use clap::Parser;
use tracing_subscriber::EnvFilter;

use clap::CommandFactory as _;

use bosun::cli::{
    Cli, Command, ExitCode, KeyCommand, check, compile_plugin, exec, import, key_new, plugin,
    remote, serve,
};

fn main() -> std::process::ExitCode {
    // Before the runtime opens anything: see `reserve_low_fds`.
    bosun::confine::reserve_low_fds();
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("bosun: starting the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("BOSUN_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let code: ExitCode = match Cli::parse().command {
        Command::Serve { config } => serve(&config).await,
        Command::Check { config, upgrade } => check(&config, upgrade).await,
        Command::Exec {
            config,
            project,
            action,
            params,
        } => exec(&config, &project, &action, params).await,
        Command::Key {
            command: KeyCommand::New { name },
        } => key_new(&name),
        Command::Import { command } => import(&command),
        Command::Plugin { command } => plugin(command).await,
        Command::CompilePlugin {
            state_dir,
            max_memory,
        } => compile_plugin(&state_dir, max_memory),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "bosun", &mut std::io::stdout());
            ExitCode::Ok
        }
        Command::Run {
            project,
            action,
            params,
            follow,
            detach,
            client,
        } => {
            remote::remote(&client, |c| {
                remote::run(c, &client, &project, &action, &params, follow, detach)
            })
            .await
        }
        Command::Ps { project, client } => {
            remote::remote(&client, |c| remote::ps(c, &client, project.as_deref())).await
        }
        Command::Logs {
            project,
            process,
            lines,
            follow,
            client,
        } => {
            remote::remote(&client, |c| {
                remote::logs(c, &project, process.as_deref(), lines, follow)
            })
            .await
        }
        Command::Jobs {
            project,
            state,
            limit,
            client,
        } => {
            remote::remote(&client, |c| {
                remote::jobs(c, &client, project.as_deref(), state.as_deref(), limit)
            })
            .await
        }
        Command::Deliveries {
            project,
            limit,
            client,
        } => remote::remote(&client, |c| remote::deliveries(c, &client, &project, limit)).await,
        Command::Job { id, log, client } => {
            remote::remote(&client, |c| remote::job(c, &client, &id, log)).await
        }
        Command::Cancel { id, client } => {
            remote::remote(&client, |c| remote::cancel(c, &client, &id)).await
        }
        Command::Reload { client } => remote::remote(&client, |c| remote::reload(c, &client)).await,
        Command::Upgrade { client } => {
            remote::remote(&client, |c| remote::upgrade(c, &client)).await
        }
    };
    std::process::ExitCode::from(code as u8)
}
