//! `[projects.<p>.procfile]`: a project whose processes come from the
//! Procfile in its repository, so a team changes its process list by a
//! commit. bosun reads the file at load, at every reload, and when a
//! deploy restarts the project (see `daemon`), always where the app is
//! (`current` in the release layout).
//!
//! ```toml
//! [projects.shop.procfile]
//! file = "Procfile"   # default
//! port = 5000         # PORT of the first type; 100 more for each next
//! max_types = 8       # the most types it may have (up to 64)
//! ```
//!
//! The ports a Procfile may use (`port` + 100·i for i below `max_types`)
//! are checked at load against every other project's, every `sockets`
//! address and bosun's own `server.listen`, so a tenant cannot have its
//! `web` answer a readiness probe with someone else's listener.
//!
//! Each type becomes a process running its command through `sh -c`,
//! confined as the project, with `PORT` as Foreman gives it; `web` is
//! ready once its port accepts. The project's other settings (limits,
//! confinement, `path`, `.env`) apply to them as to any process. A type
//! may not share a name with a process of the config. The file is the
//! tenant's: a problem in it is reported, and the processes it gave
//! before are kept; it never stops bosun or a reload.

use std::path::PathBuf;

use serde::Deserialize;

use super::{CURRENT, ProcessConfig, ProjectConfig, bosun_name};
use crate::project::{MAX_TYPES, Procfile};

/// `[projects.<p>.procfile]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcfileConfig {
    /// The Procfile, relative to where the app is. Default `Procfile`.
    pub file: PathBuf,
    /// The `PORT` of the first process type. Default 5000.
    pub port: u16,
    /// The most process types bosun takes from it (1 to 64). Default 8:
    /// the tenant writes the file, the operator says how much it may run.
    pub max_types: u16,
}

impl ProcfileConfig {
    /// The ports its types may get: `port`, then 100 more for each next.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        (0..usize::from(self.max_types)).filter_map(|i| Procfile::port(self.port, i))
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        super::places::check_inside(&self.file).map_err(|m| ("procfile.file".into(), m))?;
        if self.max_types == 0 || usize::from(self.max_types) > MAX_TYPES {
            return Err((
                "procfile.max_types".into(),
                format!("must be 1 to {MAX_TYPES}, not {}", self.max_types),
            ));
        }
        if self.ports().count() < usize::from(self.max_types) {
            return Err((
                "procfile.port".into(),
                format!(
                    "{} leaves no port for {} types, 100 apart",
                    self.port, self.max_types
                ),
            ));
        }
        Ok(())
    }
}

impl Default for ProcfileConfig {
    fn default() -> Self {
        Self {
            file: PathBuf::from("Procfile"),
            port: 5000,
            max_types: 8,
        }
    }
}

/// Replace `project`'s processes from its Procfile with what the file
/// says now (none while it has no Procfile: a first clone still to come).
/// On a problem, nothing changes and the problem is returned.
pub fn apply(project: &mut ProjectConfig) -> Result<(), String> {
    let Some(cfg) = &project.procfile else {
        return Ok(());
    };
    let app = project.deploy.releases.map(|_| PathBuf::from(CURRENT));
    let parsed = crate::project::procfile(&project.dir, app.as_deref(), &cfg.file)?;
    let made = match parsed {
        Some(parsed) => processes(project, cfg, &parsed, app)?,
        None => Vec::new(),
    };
    project.processes.retain(|p| !p.from_procfile);
    project.processes.extend(made);
    Ok(())
}

fn processes(
    project: &ProjectConfig,
    cfg: &ProcfileConfig,
    parsed: &Procfile,
    app: Option<PathBuf>,
) -> Result<Vec<ProcessConfig>, String> {
    let shown = cfg.file.display();
    if parsed.processes.len() > usize::from(cfg.max_types) {
        return Err(format!(
            "`{shown}` has {} process types; `procfile.max_types` allows {}",
            parsed.processes.len(),
            cfg.max_types
        ));
    }
    let mut made = Vec::new();
    for (i, (raw, command)) in parsed.processes.iter().enumerate() {
        let name = bosun_name(raw);
        if made.iter().any(|p: &ProcessConfig| p.name == name) {
            return Err(format!(
                "`{shown}`: `{raw}` is another type's name once made a bosun name (`{name}`)"
            ));
        }
        if project
            .processes
            .iter()
            .any(|p| !p.from_procfile && p.name == name)
        {
            return Err(format!(
                "`{shown}`: `{raw}` is also a process in bosun's config"
            ));
        }
        let port = Procfile::port(cfg.port, i)
            .ok_or_else(|| format!("`{shown}`: no port for `{raw}` above {}", cfg.port))?;
        let mut table = toml::Table::new();
        table.insert("name".into(), name.clone().into());
        table.insert("command".into(), "sh".into());
        table.insert("args".into(), vec!["-c", command.as_str()].into());
        let mut env = toml::Table::new();
        env.insert("PORT".into(), port.to_string().into());
        table.insert("env".into(), env.into());
        if raw.eq_ignore_ascii_case("web") {
            let mut ready = toml::Table::new();
            ready.insert("port".into(), i64::from(port).into());
            table.insert("ready".into(), ready.into());
        }
        let mut process: ProcessConfig = table
            .try_into()
            .map_err(|e| format!("`{shown}`: `{raw}`: {e}"))?;
        process
            .validate()
            .map_err(|(key, m)| format!("`{shown}`: `{raw}`: {key}: {m}"))?;
        process.from_procfile = true;
        process.app_dir.clone_from(&app);
        process.project_path.clone_from(&project.path);
        made.push(process);
    }
    Ok(made)
}
