//! `bosun import procfile|pm2 <file>`: print the bosun config for what a
//! Procfile or a PM2 ecosystem file describes (see `crate::import`).

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::ExitCode;
use crate::import;

/// `bosun import` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// A Procfile (Heroku, Dokku, Foreman): one process per type, `PORT`
    /// from `--port` up by 100, `release:` as the deploy's release phase.
    Procfile {
        /// The Procfile.
        file: PathBuf,
        /// The project's name; default: its dir's name.
        #[arg(long)]
        project: Option<String>,
        /// The project dir; default: the Procfile's dir.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The first process type's `PORT`.
        #[arg(long, default_value_t = 5000)]
        port: u16,
    },
    /// A PM2 ecosystem file (`.json`, `.yaml`, or `.config.js`, which is
    /// read by running node on it).
    Pm2 {
        /// The ecosystem file.
        file: PathBuf,
        /// The project's name; default: its dir's name.
        #[arg(long)]
        project: Option<String>,
        /// The project dir; default: the ecosystem file's dir.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Read a `.config.js` by running it with node, as you (it may
        /// run any code it likes, and what it requires).
        #[arg(long)]
        run_node: bool,
    },
}

/// Run `command`: the config on stdout, or the problem on stderr.
pub fn import(command: &ImportCommand) -> ExitCode {
    let result = match command {
        ImportCommand::Procfile {
            file,
            project,
            dir,
            port,
        } => {
            let (project, dir) = place(file, project.as_deref(), dir.as_deref());
            std::fs::read_to_string(file)
                .map_err(|e| {
                    import::ImportError::Read(format!("cannot read {}: {e}", file.display()))
                })
                .and_then(|text| {
                    import::procfile(&text, &file.display().to_string(), &project, &dir, *port)
                })
        }
        ImportCommand::Pm2 {
            file,
            project,
            dir,
            run_node,
        } => {
            let (project, dir) = place(file, project.as_deref(), dir.as_deref());
            import::pm2(file, &project, &dir, *run_node)
        }
    };
    match result {
        Ok(config) => {
            print!("{config}");
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Usage
        }
    }
}

/// The project's name and dir: as given, else from the file's dir.
fn place(file: &Path, project: Option<&str>, dir: Option<&Path>) -> (String, String) {
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| {
        let parent = file.parent().filter(|p| !p.as_os_str().is_empty());
        crate::config::lexical(parent.unwrap_or(Path::new(".")))
    });
    let project = project.map(str::to_string).unwrap_or_else(|| {
        dir.file_name()
            .map_or_else(|| "app".to_string(), |n| n.to_string_lossy().into_owned())
    });
    (project, dir.display().to_string())
}
