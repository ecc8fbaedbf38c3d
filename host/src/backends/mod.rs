//! The real backends behind the `git`, `commands`, `releases` and
//! `processes` imports, and the one place that assembles a project's grant
//! to its plugins.
//!
//! The engine only knows the import traits (`plugins::grants`); the
//! backends here are what a server plugs in. `processes` adapts the
//! supervisor's project handle, which knows nothing of the WIT.

mod commands;
mod git;
mod processes;

use std::path::Path;
use std::sync::Arc;

pub use commands::Commands;
pub use git::{Git, Releases, clone_missing, redact, releases};

use crate::config::ProjectConfig;
use crate::confine::Jail;
use crate::plugins::ProjectScope;

/// The grant of project `name` to its plugins: its dir, git work tree,
/// allow-listed programs, releases (in the release layout), and its deploy
/// settings as `BOSUN_DEPLOY` (JSON).
/// Everything the backends run, they run through `jail`. Processes are
/// added by whoever supervises them.
pub fn project_scope(
    name: &str,
    project: &ProjectConfig,
    jail: Arc<Jail>,
    state_dir: &Path,
) -> ProjectScope {
    let mut scope = ProjectScope::new(name, &project.dir)
        .with_env(
            "BOSUN_DEPLOY",
            project
                .deploy
                .to_env(project.procfile.as_ref().map(|p| p.file.as_path())),
        )
        .with_git(Arc::new(Git::new(jail.clone(), project, state_dir)));
    if let Some(releases) = releases(&jail, project, state_dir) {
        scope = scope.with_releases(Arc::new(releases));
    }
    scope.with_commands(Arc::new(Commands::new(jail, project)))
}
