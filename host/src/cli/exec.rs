//! `bosun exec`: run one action in-process and print its log as it happens.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::ExitCode;
use crate::plugins::{Given, LogSink, RunRequest, Stream, check_params};

/// Run `project`/`action` with `params`. Log lines go to stderr, the result to
/// stdout; Ctrl-C cancels the run.
pub async fn exec(
    path: &Path,
    project: &str,
    action: &str,
    params: Vec<(String, String)>,
) -> ExitCode {
    let config = match super::load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(pcfg) = config.projects.get(project) else {
        eprintln!("error: no project `{project}` in {}", path.display());
        return ExitCode::Usage;
    };
    let engine = match super::start_engine(&config) {
        Ok(engine) => engine,
        Err(code) => return code,
    };
    let registry =
        crate::plugins::ActionRegistry::load_one(&engine, &config, project, action).await;
    let loaded = match registry.get(project, action) {
        None => {
            eprintln!("error: project `{project}` has no action `{action}`");
            return ExitCode::Usage;
        }
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::InvalidPlugin;
        }
        Some(Ok(loaded)) => loaded.clone(),
    };
    let given = params
        .into_iter()
        .map(|(n, v)| (n, Given::Text(v)))
        .collect();
    let params = match check_params(action, loaded.plugin.meta(), given) {
        Ok(params) => params,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Usage;
        }
    };
    let confinement =
        match crate::confine::Confinement::start(&config, crate::confine::Role::Guest).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::HostError;
            }
        };
    let Some(jail) = confinement.jail(project) else {
        eprintln!("error: no project `{project}` in {}", path.display());
        return ExitCode::Usage;
    };
    let log: LogSink = Arc::new(|stream, line| match stream {
        Stream::Stdout => eprintln!("{line}"),
        Stream::Stderr => eprintln!("stderr: {line}"),
        Stream::Host => eprintln!("{line}"),
    });
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let request = RunRequest {
        scope: crate::backends::project_scope(project, pcfg, jail, &config.state_dir),
        action: action.to_string(),
        job_id: "local".to_string(),
        params,
        limits: loaded.limits,
        log,
        cancel,
    };
    let code = match engine.run(&loaded.plugin, request).await {
        Ok(result) => {
            println!("{result}");
            ExitCode::Ok
        }
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.kind.into()
        }
    };
    confinement.close();
    code
}
