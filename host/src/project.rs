//! Two rules about a project directory that the supervisor and the
//! `commands` import share, so they cannot drift apart:
//! - its `.env` is read fresh each time something starts, so editing it and
//!   restarting is enough;
//! - a working directory given relative to it must stay inside it once
//!   symlinks are resolved.

use std::path::{Path, PathBuf};

/// The variables of the project's `.env`, if it has one.
pub fn dotenv(project_dir: &Path) -> Result<Vec<(String, String)>, String> {
    let path = project_dir.join(".env");
    match dotenvy::from_path_iter(&path) {
        Ok(iter) => iter
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot parse {}: {e}", path.display())),
        Err(e) if e.not_found() => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Why a working directory cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirError {
    /// The directory does not exist or cannot be resolved.
    #[error("{0}")]
    Unusable(String),
    /// It resolves to a place outside the project dir.
    #[error("working directory `{0}` leads outside the project dir")]
    Outside(String),
}

/// `rel` (or the project dir itself when `None`), resolved and checked to
/// stay inside `project_dir`.
pub fn inside(project_dir: &Path, rel: Option<&Path>) -> Result<PathBuf, DirError> {
    let project = project_dir.canonicalize().map_err(|e| {
        DirError::Unusable(format!(
            "project dir {} is not usable: {e}",
            project_dir.display()
        ))
    })?;
    let Some(rel) = rel else {
        return Ok(project);
    };
    let dir = project.join(rel).canonicalize().map_err(|e| {
        DirError::Unusable(format!(
            "working directory `{}` is not usable: {e}",
            rel.display()
        ))
    })?;
    if !dir.starts_with(&project) {
        return Err(DirError::Outside(rel.display().to_string()));
    }
    Ok(dir)
}
