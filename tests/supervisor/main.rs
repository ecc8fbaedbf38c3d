//! The supervisor with real processes: small scripts written to temp dirs,
//! run in their own process groups, checked through the handle API, the log
//! files and /proc. One test binary; its modules by concern.
//!
//! Run with: cargo test --test supervisor

#[path = "../common/mod.rs"]
mod common;
mod lifecycle;
mod logs;
mod projects;
mod stopping;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use bosun::config::Config;
use bosun::confine::{Confinement, Role};
use bosun::supervisor::{ProjectHandle, State, Status, Supervisor};
use common::eventually;
use common::procfs::{self, alive};
use tempfile::TempDir;

/// A project dir with `bosun.toml` around `processes` (TOML for the project's
/// `[[projects.app.processes]]` and other keys).
struct Setup {
    root: TempDir,
    config: Config,
}

impl Setup {
    fn new(project_toml: &str) -> Self {
        let root = TempDir::new().expect("temp");
        for dir in ["app", "other"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("mkdir");
        }
        // Port 0: tests run side by side, and `bosun serve` also serves the API.
        let text = format!(
            "state_dir = \"state\"\n[server]\nlisten = \"127.0.0.1:0\"\n[projects.app]\ndir = \"app\"\n{project_toml}"
        );
        let path = root.path().join("bosun.toml");
        std::fs::write(&path, &text).expect("write config");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        Self { root, config }
    }

    fn app(&self) -> PathBuf {
        self.root.path().join("app")
    }

    fn script(&self, name: &str, body: &str) {
        let path = self.app().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    }

    fn log_file(&self, label: &str) -> PathBuf {
        self.root
            .path()
            .join("state/logs/app")
            .join(format!("{label}.log"))
    }

    async fn start(&self) -> (Supervisor, ProjectHandle) {
        let confinement = Confinement::start(&self.config, Role::Server)
            .await
            .expect("confinement");
        let sup = Supervisor::start(&self.config, Arc::new(confinement))
            .await
            .expect("supervisor starts");
        let app = sup.project("app").expect("project app");
        (sup, app)
    }
}

/// SIGKILLs the processes a test started outside any supervisor (a `bosun
/// serve`, or what a killed one left), unless the test cleared it: a failing
/// test must not leave them running.
#[derive(Default)]
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn status(app: &ProjectHandle, i: usize) -> Status {
    app.list()[i].clone()
}

fn notes(app: &ProjectHandle) -> Vec<String> {
    app.logs(None, 1000)
        .expect("logs")
        .iter()
        .filter_map(|l| l.text.strip_prefix("[bosun] ").map(str::to_string))
        .collect()
}
