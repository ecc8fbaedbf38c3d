//! `bosun check`: the config parses, validates, every plugin loads, and
//! each project's confinement is what this host can give (printed, with
//! the layers it cannot).

use std::path::Path;

use super::ExitCode;

/// Check `path`; print each problem to stderr and a summary to stdout.
pub async fn check(path: &Path, upgrade: bool) -> ExitCode {
    let config = match super::load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (_engine, registry) = match super::load_actions(&config).await {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    // A Procfile is the tenant's file, as a plugin in its dir is.
    let procfile_errors = if upgrade {
        0
    } else {
        config.procfile_problems.len()
    };
    for (project, problem) in &config.procfile_problems {
        let level = if upgrade { "warning" } else { "error" };
        eprintln!(
            "{level}: {}: `projects.{project}.procfile`: {problem}",
            path.display()
        );
    }
    let mut errors = 0;
    for (tenant_file, problem) in registry.problems_by_file(&config) {
        if upgrade && tenant_file {
            eprintln!("warning: {problem}");
        } else {
            eprintln!("error: {problem}");
            errors += 1;
        }
    }
    let actions: usize = config.projects.values().map(|p| p.actions.0.len()).sum();
    if errors > 0 {
        eprintln!("{errors} of {actions} actions failed to load");
        return ExitCode::InvalidPlugin;
    }
    if procfile_errors > 0 {
        return ExitCode::Usage;
    }
    let mut unusable = false;
    for (project, report) in crate::confine::Confinement::inspect(&config) {
        match report {
            Ok(report) => {
                println!("{project}: {}", report.summary());
                for missing in &report.missing {
                    println!("{project}: missing: {missing}");
                }
            }
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                unusable = true;
            }
        }
    }
    if unusable {
        return ExitCode::Usage;
    }
    println!(
        "{}: ok ({} projects, {actions} actions)",
        path.display(),
        config.projects.len()
    );
    ExitCode::Ok
}
