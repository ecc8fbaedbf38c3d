//! Files bosun itself reads in a project dir, on the project's behalf.
//!
//! A project's programs (and its plugins) can write anything in its dir,
//! links included, and bosun runs as root. So every path bosun resolves in
//! a project dir is resolved *beneath* it (cap-std: `openat2` with
//! `RESOLVE_BENEATH` where the kernel has it): a link that stays inside is
//! followed, one that leads out (`.env -> ../b/.env`) is refused.
//!
//! - its `.env` is read fresh each time something starts, so editing it
//!   and restarting is enough. Only a regular file of at most
//!   [`MAX_DOTENV`] is read, without blocking (a FIFO would hang a spawn);
//!   it is parsed without looking at bosun's own environment (see
//!   `dotenv`), and an error names the line, never its text: the file is
//!   the tenant's, but the error goes places the tenant can read.
//! - its `Procfile`, when the config takes its processes from it, read
//!   the same way.
//! - a working directory given relative to it must stay inside it.
//! - in the release layout, the app is in `current` (a link to
//!   `releases/<name>`), and its `.env` often a link on to `shared/.env`:
//!   both are followed beneath the project dir, as any link is.

mod checkout;
mod dotenv;
mod procfile;

pub use checkout::{Checkout, CheckoutDone, pending as pending_checkout};
pub use procfile::{MAX_PROCFILE, MAX_TYPES, Procfile};

use std::io::Read as _;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};

/// The largest `.env` bosun reads.
pub const MAX_DOTENV: u64 = 1 << 20;

/// Why a dir in a project cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirError {
    /// The directory does not exist or cannot be opened.
    #[error("{0}")]
    Unusable(String),
    /// It leads outside the project dir.
    #[error("working directory `{0}` leads outside the project dir")]
    Outside(String),
}

/// The project dir, opened.
pub fn open(project_dir: &Path) -> Result<Dir, DirError> {
    Dir::open_ambient_dir(project_dir, ambient_authority()).map_err(|e| {
        DirError::Unusable(format!(
            "project dir {} is not usable: {e}",
            project_dir.display()
        ))
    })
}

/// `rel` inside the open `project` dir (the dir itself when `None`),
/// resolved beneath it.
pub fn subdir(project: &Dir, rel: Option<&Path>) -> Result<Dir, DirError> {
    let Some(rel) = rel else {
        return project
            .try_clone()
            .map_err(|e| DirError::Unusable(format!("project dir: {e}")));
    };
    project.open_dir(rel).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied || rel.is_absolute() {
            DirError::Outside(rel.display().to_string())
        } else {
            DirError::Unusable(format!(
                "working directory `{}` is not usable: {e}",
                rel.display()
            ))
        }
    })
}

/// Where `app_dir` of the project dir leads at this moment: a link there
/// to a plain relative path (`current` → `releases/<name>`) is read once,
/// so a process takes its working dir, `.env` and program from one
/// release even if `current` is switched while it starts. Anything else
/// is left as it is (and still resolved beneath the project dir where used).
pub fn pin(project_dir: &Path, app_dir: &Path) -> PathBuf {
    open(project_dir)
        .ok()
        .and_then(|dir| dir.read_link_contents(app_dir).ok())
        .filter(|target| {
            target
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        })
        .unwrap_or_else(|| app_dir.to_path_buf())
}

/// The variables of the project's `.env` (in `app_dir` of the project
/// dir, when given: the current release), if it has one.
pub fn dotenv(project_dir: &Path, app_dir: Option<&Path>) -> Result<Vec<(String, String)>, String> {
    let path = app_dir.unwrap_or(Path::new("")).join(".env");
    match read_small(project_dir, &path, MAX_DOTENV)? {
        Some(text) => parse(&text),
        None => Ok(Vec::new()),
    }
}

/// The project's Procfile `file` (in `app_dir`, as for `.env`), parsed,
/// if it has one.
pub fn procfile(
    project_dir: &Path,
    app_dir: Option<&Path>,
    file: &Path,
) -> Result<Option<Procfile>, String> {
    let path = app_dir.unwrap_or(Path::new("")).join(file);
    let Some(text) = read_small(project_dir, &path, MAX_PROCFILE)? else {
        return Ok(None);
    };
    let shown = file.display();
    let text = std::str::from_utf8(&text).map_err(|_| format!("`{shown}` is not UTF-8"))?;
    Procfile::parse(text)
        .map(Some)
        .map_err(|e| format!("`{shown}`: {e}"))
}

/// The file `rel` of the project dir, resolved beneath it, if it exists:
/// only a regular file, opened without blocking (a FIFO would hang
/// bosun), of at most `max` bytes. Errors name the file, never its text.
fn read_small(project_dir: &Path, rel: &Path, max: u64) -> Result<Option<Vec<u8>>, String> {
    let shown = rel.display();
    let dir = open(project_dir).map_err(|e| e.to_string())?;
    let mut options = OpenOptions::new();
    options
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let file = match dir.open_with(rel, &options) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(format!(
                "cannot read `{shown}`: it leads outside the project dir"
            ));
        }
        Err(e) => return Err(format!("cannot read `{shown}`: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!("cannot read `{shown}`: it is not a regular file"));
    }
    if meta.len() > max {
        return Err(format!(
            "cannot read `{shown}`: it is larger than {max} bytes"
        ));
    }
    let mut text = Vec::new();
    file.into_std()
        .take(max + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?;
    Ok(Some(text))
}

/// Parse `.env` text; an error gives the line number only.
fn parse(text: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(text).map_err(|e| {
        let line = text[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        format!("cannot parse `.env`: line {line}: not UTF-8")
    })?;
    dotenv::parse(text).map_err(|e| format!("cannot parse `.env`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_names_the_line_and_never_its_text() {
        let e = parse(b"GOOD=1\n# fine\nSECRET='hunter2\n").expect_err("bad line");
        assert!(e.contains("line 3"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_link_out_of_the_project_is_refused() {
        let root = tempfile::TempDir::new().expect("temp");
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir_all(&a).expect("mkdir");
        std::fs::create_dir_all(&b).expect("mkdir");
        std::fs::write(b.join(".env"), "SECRET=b-only\n").expect("write");
        std::os::unix::fs::symlink("../b/.env", a.join(".env")).expect("symlink");
        let e = dotenv(&a, None).expect_err("refused");
        assert!(!e.contains("b-only"), "{e}");
        std::fs::remove_file(a.join(".env")).expect("rm");
        std::fs::write(a.join("real"), "OK=1\n").expect("write");
        std::os::unix::fs::symlink("real", a.join(".env")).expect("symlink");
        assert_eq!(dotenv(&a, None), Ok(vec![("OK".into(), "1".into())]));
    }
}
