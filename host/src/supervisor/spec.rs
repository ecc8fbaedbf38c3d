//! A process instance's config, resolved against its project: absolute
//! paths, a compiled readiness pattern, its log file.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::sockets::{InstanceSockets, Sockets};
use crate::config::ProcessConfig;
use crate::confine::Jail;

/// How to tell an instance is ready.
#[derive(Debug, Clone)]
pub(crate) enum Ready {
    /// 127.0.0.1:port accepts a connection.
    Port(u16),
    /// `GET path` on `addr` answers 2xx or 3xx.
    Http(SocketAddr, String),
    /// A log line matches.
    Log(Regex),
}

/// Everything a worker needs to run one instance.
#[derive(Debug)]
pub(crate) struct InstanceSpec {
    pub project: String,
    pub project_dir: PathBuf,
    /// What the instance's programs run in.
    pub jail: Arc<Jail>,
    pub config: ProcessConfig,
    pub instance: u32,
    /// `<name>-<instance>`: the label in the merged log and in persisted state.
    pub label: String,
    pub log_file: PathBuf,
    pub ready: Option<(Ready, Duration)>,
    /// Its `sockets` (shared with the other instances).
    pub sockets: InstanceSockets,
}

impl InstanceSpec {
    pub(crate) fn new(
        jail: Arc<Jail>,
        config: &ProcessConfig,
        instance: u32,
        state_dir: &Path,
        sockets: &Arc<Sockets>,
    ) -> Self {
        let project = jail.project().to_string();
        let owner = format!("{project}/{}", config.name);
        let project_dir = jail.dir().to_path_buf();
        let label = format!("{}-{instance}", config.name);
        let log_file = match &config.log_file {
            Some(path) if config.instances > 1 => with_instance(path, instance),
            Some(path) => path.clone(),
            None => state_dir
                .join("logs")
                .join(&project)
                .join(format!("{label}.log")),
        };
        let ready = config.ready.as_ref().map(|r| {
            let check = match (&r.port, &r.http, &r.log) {
                (port, Some(path), _) => Ready::Http(
                    http_target(*port, &config.sockets).expect("validated at config load"),
                    path.clone(),
                ),
                (Some(port), None, _) => Ready::Port(*port),
                (None, None, Some(pattern)) => {
                    Ready::Log(Regex::new(pattern).expect("validated at config load"))
                }
                (None, None, None) => unreachable!("validated at config load"),
            };
            (check, r.timeout)
        });
        Self {
            project,
            project_dir,
            jail,
            config: config.clone(),
            instance,
            label,
            log_file,
            ready,
            sockets: InstanceSockets::new(sockets, owner, &config.sockets),
        }
    }
}

/// Where an HTTP readiness check asks: 127.0.0.1:`port`, or the first
/// socket (on loopback when it listens on every address).
fn http_target(port: Option<u16>, sockets: &[SocketAddr]) -> Option<SocketAddr> {
    match (port, sockets.first()) {
        (Some(port), _) => Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        (None, Some(addr)) if addr.ip().is_unspecified() => {
            let ip = match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            };
            Some(SocketAddr::new(ip, addr.port()))
        }
        (None, Some(addr)) => Some(*addr),
        (None, None) => None,
    }
}

/// `app.log` → `app-2.log`; `app` → `app-2`.
fn with_instance(path: &Path, instance: u32) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{instance}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{instance}"),
    };
    path.with_file_name(name)
}
