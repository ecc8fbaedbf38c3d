//! `bosun plugin`: a team's actions on a running server (push a component,
//! list its versions, roll back, remove), and the hidden `compile-plugin`
//! the server runs to compile one within its budget.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::ExitCode;
use super::client::{Client, ClientArgs, ClientError};
use super::format::{bytes, table};
use super::remote::remote;

/// `bosun plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Upload a component as the newest version of an action and put it
    /// in service (the project's config must set `allow_uploads`).
    Push {
        /// The project.
        project: String,
        /// The action's name.
        name: String,
        /// The component (`.wasm`).
        file: PathBuf,
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List an uploaded action's kept versions, newest first.
    Versions {
        /// The project.
        project: String,
        /// The action's name.
        name: String,
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put a kept version back in service (default: the one before).
    Rollback {
        /// The project.
        project: String,
        /// The action's name.
        name: String,
        /// The version.
        version: Option<u32>,
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove an uploaded action and all its versions.
    Rm {
        /// The project.
        project: String,
        /// The action's name.
        name: String,
        /// Server, key and output flags.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Run a `bosun plugin` subcommand.
pub async fn plugin(command: PluginCommand) -> ExitCode {
    match command {
        PluginCommand::Push {
            project,
            name,
            file,
            client,
        } => remote(&client, |c| push(c, &client, &project, &name, &file)).await,
        PluginCommand::Versions {
            project,
            name,
            client,
        } => remote(&client, |c| versions(c, &client, &project, &name)).await,
        PluginCommand::Rollback {
            project,
            name,
            version,
            client,
        } => remote(&client, |c| rollback(c, &client, &project, &name, version)).await,
        PluginCommand::Rm {
            project,
            name,
            client,
        } => remote(&client, |c| rm(c, &project, &name)).await,
    }
}

fn path(project: &str, name: &str) -> String {
    format!("/v1/projects/{project}/actions/{name}")
}

async fn push(
    client: Client,
    args: &ClientArgs,
    project: &str,
    name: &str,
    file: &Path,
) -> Result<ExitCode, ClientError> {
    let wasm = std::fs::read(file)
        .map_err(|e| ClientError::Usage(format!("reading {}: {e}", file.display())))?;
    let req = client
        .request(Method::PUT, &path(project, name), Some(project))
        .header("content-type", "application/wasm")
        .body(wasm);
    let done = client.json(req).await?;
    print_in_service(args, &done, "in service");
    Ok(ExitCode::Ok)
}

async fn versions(
    client: Client,
    args: &ClientArgs,
    project: &str,
    name: &str,
) -> Result<ExitCode, ClientError> {
    let req = client.request(
        Method::GET,
        &format!("{}/versions", path(project, name)),
        Some(project),
    );
    let list = client.json(req).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(ExitCode::Ok);
    }
    let rows: Vec<Vec<String>> = list["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let text = |k: &str| v[k].as_str().unwrap_or("-").to_string();
            vec![
                format!(
                    "{}{}",
                    v["version"],
                    if v["current"] == true { " *" } else { "" }
                ),
                text("uploaded_at"),
                text("uploaded_by"),
                bytes(v["size"].as_u64().unwrap_or(0)),
                text("sha256").chars().take(12).collect(),
                text("summary"),
            ]
        })
        .collect();
    let header = ["VERSION", "UPLOADED", "BY", "SIZE", "SHA256", "SUMMARY"];
    print!("{}", table(&header, &rows));
    Ok(ExitCode::Ok)
}

async fn rollback(
    client: Client,
    args: &ClientArgs,
    project: &str,
    name: &str,
    version: Option<u32>,
) -> Result<ExitCode, ClientError> {
    let req = client
        .request(
            Method::POST,
            &format!("{}/rollback", path(project, name)),
            Some(project),
        )
        .json(&json!({ "version": version }));
    let done = client.json(req).await?;
    print_in_service(args, &done, "back in service");
    Ok(ExitCode::Ok)
}

async fn rm(client: Client, project: &str, name: &str) -> Result<ExitCode, ClientError> {
    let req = client.request(Method::DELETE, &path(project, name), Some(project));
    client.send(req).await?;
    println!("{project}/{name}: uploaded versions removed");
    Ok(ExitCode::Ok)
}

fn print_in_service(args: &ClientArgs, done: &Value, what: &str) {
    if args.json {
        println!("{}", serde_json::to_string_pretty(done).unwrap_or_default());
        return;
    }
    println!(
        "{}/{}: version {} {what} ({}, sha256 {})",
        done["project"].as_str().unwrap_or("-"),
        done["action"].as_str().unwrap_or("-"),
        done["version"],
        bytes(done["size"].as_u64().unwrap_or(0)),
        done["sha256"]
            .as_str()
            .unwrap_or("-")
            .chars()
            .take(12)
            .collect::<String>(),
    );
}

/// The hidden `compile-plugin`: compile the component on stdin into the
/// cache of `state_dir` for an engine of `max_memory` (see
/// `plugins::compile`).
pub fn compile_plugin(state_dir: &Path, max_memory: u64) -> ExitCode {
    match compile_stdin(state_dir, max_memory) {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::InvalidPlugin
        }
    }
}

fn compile_stdin(state_dir: &Path, max_memory: u64) -> Result<(), String> {
    use std::io::Read as _;
    let mut wasm = Vec::new();
    std::io::stdin()
        .read_to_end(&mut wasm)
        .map_err(|e| format!("reading the component: {e}"))?;
    let config = crate::plugins::EngineConfig {
        state_dir: state_dir.to_path_buf(),
        max_concurrent_runs: 1,
        max_memory,
        // No pool to reserve: the address space is the budget's. Pooling
        // does not change the code, so the server's engine finds it.
        pooling: false,
        compiler: None,
    };
    let engine = crate::plugins::Engine::new(&config).map_err(|e| e.to_string())?;
    engine.precompile(&wasm)
}
