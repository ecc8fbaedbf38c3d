//! Where things may live relative to each other. A project's dir is
//! writable by that project's programs, so nothing another tenant or bosun
//! itself depends on may lie inside it, and no two projects may share files:
//! - project dirs neither nest nor coincide;
//! - the state dir, the config file and the TLS files are in no project dir;
//! - a project's log files and plugins are in no other project's dir;
//! - a project's extra `read_only` paths hold no other project, no state
//!   dir and no config file.
//!
//! These are lexical checks on the configured paths, made before anything
//! exists; the confinement repeats them on the resolved paths at start.

use std::path::{Component, Path, PathBuf};

use super::Config;

/// `path` with its longest existing ancestor resolved (links included) and
/// the rest appended: where a file that may not exist yet will really be.
pub fn resolved(path: &Path) -> PathBuf {
    let path = lexical(path);
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path,
        }
    }
}

/// Links followed at most by [`resolved_short_of`], as the kernel's
/// `MAXSYMLINKS`.
const MAX_LINKS: u32 = 40;

/// `path` resolved as an open would walk it, but never through a link
/// inside `dir` (a resolved project dir, whose programs can make links
/// there): once the walk is in `dir`, the rest is taken as written and
/// returned apart, relative to `dir`, for an open beneath it that refuses
/// links out. Links before it (the operator's: `/var/log -> /data/log`)
/// are followed. `(path, None)` when the walk never enters `dir`.
pub fn resolved_short_of(path: &Path, dir: &Path) -> (PathBuf, Option<PathBuf>) {
    use std::ffi::OsString;
    let parts = |p: &Path| -> Vec<OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(part) => Some(part.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect()
    };
    // Still to walk, next on top.
    let mut rest: Vec<OsString> = parts(&lexical(path));
    rest.reverse();
    let mut at = PathBuf::from("/");
    let mut links = 0;
    while !at.starts_with(dir) {
        let Some(part) = rest.pop() else { break };
        if part == ".." {
            at.pop();
            continue;
        }
        let next = at.join(&part);
        let link = std::fs::symlink_metadata(&next)
            .is_ok_and(|m| m.file_type().is_symlink())
            .then(|| std::fs::read_link(&next).ok())
            .flatten()
            .filter(|_| links < MAX_LINKS);
        match link {
            Some(target) => {
                links += 1;
                if target.is_absolute() {
                    at = PathBuf::from("/");
                }
                rest.extend(parts(&target).into_iter().rev());
            }
            None => at = next,
        }
    }
    match at.strip_prefix(dir) {
        Ok(inside) => {
            let mut rel = inside.to_path_buf();
            rel.extend(rest.iter().rev());
            (dir.join(&rel), Some(rel))
        }
        Err(_) => {
            at.extend(rest.iter().rev());
            (at, None)
        }
    }
}

/// `path` made absolute against the working directory, with `.` and `..`
/// resolved lexically (no file system access).
pub fn lexical(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut out = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

impl Config {
    pub(super) fn validate_places(&self) -> Result<(), (String, String)> {
        // Paths in messages as the config file sees them (relative to it).
        let base = lexical(self.source.parent().unwrap_or(Path::new(".")));
        let shown = |p: &Path| -> String {
            p.strip_prefix(&base)
                .map_or_else(|_| p.display().to_string(), |r| r.display().to_string())
        };
        let dirs: Vec<(&String, PathBuf)> = self
            .projects
            .iter()
            .map(|(name, p)| (name, lexical(&p.dir)))
            .collect();
        let mut bosuns_own = vec![
            ("state_dir".to_string(), lexical(&self.state_dir)),
            ("the config file".to_string(), lexical(&self.source)),
        ];
        if let Some(tls) = &self.server.tls {
            bosuns_own.push(("server.tls.cert".into(), lexical(&tls.cert)));
            bosuns_own.push(("server.tls.key".into(), lexical(&tls.key)));
        }
        // A tenant who could replace a webhook's secret file could sign
        // for that project, or make bosun open a device in its place.
        for (name, project) in &self.projects {
            if let Some(file) = project
                .webhook
                .as_ref()
                .and_then(|h| h.secret_file.as_ref())
            {
                bosuns_own.push((
                    format!("projects.{name}.webhook.secret_file"),
                    lexical(file),
                ));
            }
        }
        for (i, (name, dir)) in dirs.iter().enumerate() {
            let key = format!("projects.{name}.dir");
            for (other, other_dir) in &dirs[..i] {
                if dir.starts_with(other_dir) || other_dir.starts_with(dir) {
                    return Err((
                        key,
                        format!(
                            "{} overlaps project `{other}`'s dir {}: each project needs a dir of its own",
                            shown(dir),
                            shown(other_dir)
                        ),
                    ));
                }
            }
            if let Some((what, path)) = bosuns_own.iter().find(|(_, p)| p.starts_with(dir)) {
                return Err((
                    key,
                    format!(
                        "holds {what} ({}): the project's programs could rewrite it",
                        shown(path)
                    ),
                ));
            }
        }
        for (name, project) in &self.projects {
            let mut files: Vec<PathBuf> = Vec::new();
            for (i, process) in project.processes.iter().enumerate() {
                let Some(file) = &process.log_file else {
                    continue;
                };
                let file = lexical(file);
                if files.contains(&file) {
                    return Err((
                        format!("projects.{name}.processes[{i}].log_file"),
                        format!(
                            "{} is also another process's log file: give each its own",
                            shown(&file)
                        ),
                    ));
                }
                files.push(file);
            }
            let logs = project
                .merged_log
                .iter()
                .map(|p| ("merged_log".to_string(), p))
                .chain(project.processes.iter().enumerate().filter_map(|(i, p)| {
                    Some((format!("processes[{i}].log_file"), p.log_file.as_ref()?))
                }))
                .chain(project.actions.0.iter().filter_map(|(a, cfg)| {
                    Some((format!("actions.{a}.path"), cfg.path.as_ref()?))
                }));
            for (key, log) in logs {
                let log = lexical(log);
                if let Some((other, _)) = dirs
                    .iter()
                    .find(|(other, dir)| *other != name && log.starts_with(dir))
                {
                    return Err((
                        format!("projects.{name}.{key}"),
                        format!(
                            "{} is in project `{other}`'s dir: that project could replace it",
                            shown(&log)
                        ),
                    ));
                }
            }
            // bosun's own git reads its upstream as root: a local path
            // must not be one a project can write.
            if let Some(upstream) = project.git.upstream().filter(|u| u.starts_with('/')) {
                let upstream = lexical(Path::new(upstream));
                if let Some((other, _)) = dirs.iter().find(|(_, dir)| upstream.starts_with(dir)) {
                    let key = if project.git.remote.is_some() {
                        "git.remote"
                    } else {
                        "git.clone"
                    };
                    return Err((
                        format!("projects.{name}.{key}"),
                        format!(
                            "{} is in project `{other}`'s dir: bosun fetches from it with its own rights",
                            shown(&upstream)
                        ),
                    ));
                }
            }
            for (i, path) in project.confinement.read_only.iter().enumerate() {
                let path = lexical(path);
                let key = format!("projects.{name}.confinement.read_only[{i}]");
                let clash = dirs
                    .iter()
                    .filter(|(other, _)| *other != name)
                    .map(|(other, dir)| (format!("project `{other}`'s dir"), dir))
                    .chain(bosuns_own.iter().map(|(what, p)| (what.to_string(), p)))
                    .find(|(_, p)| p.starts_with(&path) || path.starts_with(p));
                if let Some((what, p)) = clash {
                    return Err((
                        key,
                        format!(
                            "{} overlaps {what} ({}), which this project must not read",
                            shown(&path),
                            shown(p)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A path a project names inside itself (a `path` entry, a program in
/// `commands.allow`): relative, no `..`, nothing git or a shell would take
/// for an option or a separator.
pub fn check_inside(path: &Path) -> Result<(), String> {
    let text = path.to_string_lossy();
    if path.as_os_str().is_empty()
        || path.is_absolute()
        || text.starts_with('-')
        || text.contains(':')
        || path.components().any(|c| matches!(c, Component::ParentDir))
    {
        return Err(format!(
            "`{text}` must be a relative path inside the project, without `..` or `:`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::lexical;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    #[test]
    fn a_walk_never_follows_a_link_inside_the_project_dir() {
        let root = tempfile::TempDir::new().expect("temp");
        let root = root.path().canonicalize().expect("canonical");
        let (project, outside) = (root.join("p"), root.join("outside"));
        std::fs::create_dir_all(&project).expect("project");
        std::fs::create_dir_all(&outside).expect("outside");
        // The tenant's links: the log itself, and a dir on its way.
        symlink(outside.join("secret"), project.join("app.log")).expect("symlink");
        symlink(&outside, project.join("logs")).expect("symlink");
        let short = |p: &Path| super::resolved_short_of(p, &project);
        assert_eq!(
            short(&project.join("app.log")),
            (project.join("app.log"), Some("app.log".into()))
        );
        assert_eq!(
            short(&project.join("logs/x.log")),
            (project.join("logs/x.log"), Some("logs/x.log".into()))
        );
        // The operator's link into the project is followed; the tenant's
        // link it then reaches is not.
        symlink(project.join("logs"), root.join("varlog")).expect("symlink");
        assert_eq!(
            short(&root.join("varlog/app.log")),
            (project.join("logs/app.log"), Some("logs/app.log".into()))
        );
        symlink("outside/../p/./app.log", root.join("relative")).expect("symlink");
        assert_eq!(
            short(&root.join("relative")),
            (project.join("app.log"), Some("app.log".into()))
        );
        // Elsewhere, links are followed as an open would.
        symlink(&outside, root.join("logdir")).expect("symlink");
        assert_eq!(
            short(&root.join("logdir/app.log")),
            (outside.join("app.log"), None)
        );
        // A loop ends.
        symlink(root.join("b"), root.join("a")).expect("symlink");
        symlink(root.join("a"), root.join("b")).expect("symlink");
        assert_eq!(short(&root.join("a/x")).1, None);
    }

    #[test]
    fn resolves_links_up_to_what_exists() {
        let root = tempfile::TempDir::new().expect("temp");
        let real = root.path().canonicalize().expect("canonical").join("real");
        std::fs::create_dir_all(&real).expect("mkdir");
        symlink(&real, root.path().join("link")).expect("symlink");
        assert_eq!(
            super::resolved(&root.path().join("link/logs/app.log")),
            real.join("logs/app.log")
        );
    }

    #[test]
    fn resolves_dots_without_touching_the_disk() {
        assert_eq!(lexical(Path::new("/srv/a/../b/./c")), Path::new("/srv/b/c"));
        assert_eq!(lexical(Path::new("/../x")), Path::new("/x"));
    }
}
