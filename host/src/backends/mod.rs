//! The real backends behind the `git` and `commands` imports, and the
//! one place that assembles a project's grant to its plugins.
//!
//! The engine only knows the import traits (`plugins::git`,
//! `plugins::commands`); the backends here are what a server plugs in. The
//! supervisor provides the third, `processes`, through its project handle.

mod checkout;
mod commands;
mod git;

use std::sync::Arc;

pub use checkout::clone_missing;
pub use commands::Commands;
pub use git::{Git, redact};

use crate::config::ProjectConfig;
use crate::plugins::ProjectScope;

/// The grant of project `name` to its plugins: its dir, git work tree,
/// allow-listed programs, and its deploy settings as `BOSUN_DEPLOY` (JSON).
/// Processes are added by whoever supervises them.
pub fn project_scope(name: &str, project: &ProjectConfig) -> ProjectScope {
    ProjectScope::new(name, &project.dir)
        .with_env("BOSUN_DEPLOY", project.deploy.to_env())
        .with_git(Arc::new(Git::new(&project.dir, project.git.timeout)))
        .with_commands(Arc::new(Commands::new(
            &project.dir,
            project.commands.clone(),
        )))
}
