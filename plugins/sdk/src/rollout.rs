//! What the stock `deploy` and `rollback` share: the project's deploy
//! settings, and "restart, wait until ready, check it stays up".

use std::time::Duration;

use serde_json::Value;

use crate::{Error, ProcessInfo, ProcessState, error_text, failed, processes, releases};

/// `[projects.<p>.deploy]`, as the host passes it in `BOSUN_DEPLOY` (JSON),
/// which callers cannot change.
pub struct Settings {
    /// Build steps, each a program and its arguments.
    pub build: Vec<Vec<String>>,
    /// Release-phase steps (a migration), after the build, before the restart.
    pub release: Vec<Vec<String>>,
    /// How long the restarted processes get to become ready.
    pub ready_timeout_ms: u64,
    /// How long they must then stay up without a restart.
    pub settle_ms: u64,
    /// The release layout's number of kept releases; none without it.
    pub releases: Option<u64>,
    /// The project's Procfile, when its processes come from it.
    pub procfile: Option<String>,
}

impl Settings {
    /// Read `BOSUN_DEPLOY`. bosun always sets every field, its config's
    /// defaults included, so each default lives in one place (the host's
    /// `[projects.<p>.deploy]`); a missing one means the action is not
    /// running under bosun, and fails saying so.
    pub fn from_env() -> Result<Self, Error> {
        let text = std::env::var("BOSUN_DEPLOY")
            .map_err(|_| failed("BOSUN_DEPLOY is not set: the deploy settings come from bosun"))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| failed(format_args!("BOSUN_DEPLOY is not JSON: {e}")))?;
        let ms = |key: &str| {
            v[key]
                .as_u64()
                .ok_or_else(|| failed(format_args!("BOSUN_DEPLOY has no `{key}`")))
        };
        Ok(Self {
            build: steps(&v["build"]),
            release: steps(&v["release"]),
            ready_timeout_ms: ms("ready_timeout_ms")?,
            settle_ms: ms("settle_ms")?,
            releases: v["releases"].as_u64(),
            procfile: v["procfile"].as_str().map(str::to_string),
        })
    }
}

impl Settings {
    /// The steps of a deploy of the tree in `dir` (relative to the project
    /// dir; `""` for the project dir itself), each with its phase: the
    /// build, the release phase, then the `release:` of the Procfile there
    /// (through `sh -c`), read as that tree has it.
    pub fn steps(&self, dir: &str) -> Result<Vec<(&'static str, Vec<String>)>, String> {
        let mut steps: Vec<(&'static str, Vec<String>)> = self
            .build
            .iter()
            .map(|s| ("build", s.clone()))
            .chain(self.release.iter().map(|s| ("release", s.clone())))
            .collect();
        if let Some(file) = &self.procfile {
            let path = std::path::Path::new("/").join(dir).join(file);
            if let Some(command) = procfile_release(&path)? {
                steps.push(("release", vec!["sh".into(), "-c".into(), command]));
            }
        }
        Ok(steps)
    }
}

/// The largest Procfile read, as the host reads it.
const MAX_PROCFILE: u64 = 64 << 10;

/// The `release:` command of the Procfile at `path`, if it has one. The
/// file is checked as the host checks it (a regular file, at most 64 KiB,
/// every line `type: command`, one `release`), so a release phase never
/// runs from a Procfile the host would then refuse.
fn procfile_release(path: &std::path::Path) -> Result<Option<String>, String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading the Procfile {shown}: {e}")),
    };
    if !meta.is_file() || meta.len() > MAX_PROCFILE {
        return Err(format!(
            "the Procfile {shown} is not a regular file of at most {MAX_PROCFILE} bytes"
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading the Procfile {shown}: {e}"))?;
    let mut release = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let typed = line.split_once(':').filter(|(name, command)| {
            let name = name.trim();
            !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && !command.trim().is_empty()
        });
        let Some((name, command)) = typed else {
            return Err(format!(
                "the Procfile {shown}: line {}: not `name: command`",
                i + 1
            ));
        };
        if name.trim() == "release" && release.replace(command.trim().to_string()).is_some() {
            return Err(format!(
                "the Procfile {shown}: line {}: a second `release`",
                i + 1
            ));
        }
    }
    Ok(release)
}

/// A list of steps, each a list of strings.
fn steps(list: &Value) -> Vec<Vec<String>> {
    let strings = |step: &Value| -> Vec<String> {
        step.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    list.as_array()
        .map(|steps| steps.iter().map(strings).collect())
        .unwrap_or_default()
}

/// Restart every process (rolling, or new-first with held sockets), wait
/// until all are ready, then check each stays up for `settle_ms` without
/// a restart. `Err` says which step failed.
pub fn restart_and_settle(settings: &Settings) -> Result<Vec<ProcessInfo>, String> {
    processes::restart(None).map_err(|e| format!("restart failed: {}", error_text(&e)))?;
    let ready = processes::wait_ready(None, settings.ready_timeout_ms)
        .map_err(|e| format!("not ready after the restart: {}", error_text(&e)))?;
    println!(
        "{} process(es) ready; checking they stay up for {} ms",
        ready.len(),
        settings.settle_ms
    );
    std::thread::sleep(Duration::from_millis(settings.settle_ms));
    let now = processes::list();
    for before in &ready {
        let after = now
            .iter()
            .find(|p| p.name == before.name && p.instance == before.instance);
        let stayed = after.is_some_and(|p| {
            p.state == ProcessState::Running && p.pid == before.pid && p.restarts == before.restarts
        });
        if !stayed {
            return Err(format!(
                "`{}-{}` did not stay up after the restart",
                before.name, before.instance
            ));
        }
    }
    Ok(now)
}

/// Make release `name` current again and restart into it, waiting until
/// ready: how `deploy` and `rollback` go back to where they were.
pub fn switch_back(settings: &Settings, name: &str) -> Result<(), String> {
    println!("switching back to release {name}");
    releases::activate(name).map_err(|e| format!("switch failed: {}", error_text(&e)))?;
    processes::restart(None).map_err(|e| format!("restart failed: {}", error_text(&e)))?;
    processes::wait_ready(None, settings.ready_timeout_ms)
        .map_err(|e| format!("not ready after switching back: {}", error_text(&e)))?;
    println!("release {name} is serving again");
    Ok(())
}
