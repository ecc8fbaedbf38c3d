//! `bosun check`: the config parses, validates, and every plugin loads.

use std::path::Path;

use super::ExitCode;
use crate::config::Config;
use crate::plugins::{ActionRegistry, Engine, EngineConfig};

/// Check `path`; print each problem to stderr and a summary to stdout.
pub async fn check(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Usage;
        }
    };
    let engine = match Engine::new(&EngineConfig::from_config(&config)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::HostError;
        }
    };
    let registry = ActionRegistry::load(&engine, &config).await;
    let mut errors = 0;
    for e in registry.errors() {
        eprintln!("error: {}: {e}", path.display());
        errors += 1;
    }
    let actions: usize = config.projects.values().map(|p| p.actions.0.len()).sum();
    if errors > 0 {
        eprintln!("{errors} of {actions} actions failed to load");
        return ExitCode::InvalidPlugin;
    }
    println!(
        "{}: ok ({} projects, {actions} actions)",
        path.display(),
        config.projects.len()
    );
    ExitCode::Ok
}
