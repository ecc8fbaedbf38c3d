//! `[[projects.<p>.processes]]`: what the supervisor keeps running.
//!
//! Defaults follow what PM2 and supervisord users expect, with two fixes:
//! the stop signal is SIGTERM with a 5 s grace (PM2 sends SIGINT and kills
//! after 1.6 s), and the restart schedule backs off instead of giving up
//! after a burst (PM2 stops after 16 starts in 0.24 s, supervisord after 4).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Deserializer};

/// The default restart schedule: the delay before each restart after an
/// unexpected exit; the last step repeats.
pub const DEFAULT_RESTART_AT: [Duration; 8] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(900),
];

/// One supervised program (and its `instances` copies).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// The name operations use; several entries may share one.
    pub name: String,
    /// The program: a name looked up on PATH, or a path (relative paths are
    /// relative to the project dir, or to the current release).
    pub command: String,
    /// Its arguments, passed as they are (no shell).
    #[serde(default)]
    pub args: Vec<String>,
    /// The working directory, relative to the project dir (the current
    /// release, in the release layout); it must stay inside it.
    pub cwd: Option<PathBuf>,
    /// Where the app lives in the project dir: `current` in the release
    /// layout, set at load from `[projects.<p>.deploy]`; none otherwise.
    /// `cwd`, a relative `command` and `.env` are found under it.
    #[serde(skip)]
    pub app_dir: Option<PathBuf>,
    /// The project's `path`, set at load: dirs put in front of `PATH`.
    #[serde(skip)]
    pub project_path: Vec<PathBuf>,
    /// Whether it comes from the project's Procfile (see `procfile`).
    #[serde(skip)]
    pub from_procfile: bool,
    /// Environment, applied over the project's `.env`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// How many copies to run; each gets its index in `BOSUN_INSTANCE`
    /// (entries that share a name number their instances on from one to
    /// the next).
    #[serde(default = "one")]
    pub instances: u32,
    /// Start it when bosun starts (unless it was stopped on purpose before).
    #[serde(default = "yes")]
    pub autostart: bool,
    /// Delays before restarts after unexpected exits; `[]` or `["0"]` means never restart.
    #[serde(default = "default_restart_at", deserialize_with = "durations")]
    pub restart_at: Vec<Duration>,
    /// Uptime after which the restart schedule starts over.
    #[serde(default = "default_restart_ok", with = "humantime_serde")]
    pub restart_ok: Duration,
    /// The signal a stop sends to the process group first.
    #[serde(default = "default_stop_signal", deserialize_with = "signal")]
    pub stop_signal: nix::sys::signal::Signal,
    /// How long a stop waits after `stop_signal` before SIGKILL.
    #[serde(default = "default_kill_timeout", with = "humantime_serde")]
    pub kill_timeout: Duration,
    /// Remove ANSI escape codes (colours) from log lines.
    #[serde(default)]
    pub strip_ansi: bool,
    /// Prefix each log line with an RFC 3339 timestamp.
    #[serde(default)]
    pub timestamps: bool,
    /// The log file; default `<state_dir>/logs/<project>/<name>-<instance>.log`.
    /// With several instances, `-<instance>` is inserted before the extension.
    pub log_file: Option<PathBuf>,
    /// Rotate the log file when a line would take it past this size.
    #[serde(default = "default_log_max_size")]
    pub log_max_size: ByteSize,
    /// Rotated files to keep (`name.log.1` is the newest).
    #[serde(default = "default_log_keep")]
    pub log_keep: u32,
    /// How to tell that the process is ready.
    pub ready: Option<ReadyConfig>,
    /// TCP sockets bosun binds and keeps, and passes to every instance by
    /// the systemd socket-activation protocol (fds from 3, `LISTEN_FDS`,
    /// `LISTEN_PID`, `LISTEN_FDNAMES`). All instances share one accept
    /// queue, which outlives any of them: a restart starts the new process
    /// before it stops the old one, and drops no connection.
    #[serde(default)]
    pub sockets: Vec<SocketAddr>,
    /// How a restart of several instances goes: `rolling` (the default)
    /// restarts one at a time, each once the one before is ready again;
    /// `all-at-once` restarts them together.
    #[serde(default)]
    pub restart_order: RestartOrder,
    /// Restart the process when its RSS (whole process group) stays above this.
    pub max_memory: Option<ByteSize>,
    /// Whether it may use the network. Default true; false runs it with no
    /// network at all (a worker that only reads a queue on disk, say).
    #[serde(default = "yes")]
    pub network: bool,
}

/// How several instances of a process restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartOrder {
    /// One at a time, each once the one before is ready.
    #[default]
    Rolling,
    /// All together.
    AllAtOnce,
}

/// A readiness check: a TCP port accepting connections, an HTTP answer,
/// or a log line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyConfig {
    /// Ready once 127.0.0.1:`port` accepts a connection; with `http`, the
    /// port asked.
    pub port: Option<u16>,
    /// Ready once `GET <http>` answers 2xx or 3xx: on `port`, or on the
    /// process's first socket.
    pub http: Option<String>,
    /// Ready once a log line matches this regex.
    pub log: Option<String>,
    /// Not ready within this is a failed start, restarted on the schedule.
    #[serde(default = "default_ready_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_restart_at() -> Vec<Duration> {
    DEFAULT_RESTART_AT.to_vec()
}
fn default_restart_ok() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_stop_signal() -> nix::sys::signal::Signal {
    nix::sys::signal::Signal::SIGTERM
}
fn default_kill_timeout() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_log_max_size() -> ByteSize {
    ByteSize::mib(10)
}
pub(super) fn default_log_keep() -> u32 {
    5
}

/// The rules for a rotated log's `<prefix>_max_size` and `<prefix>_keep`;
/// an error names the key and says what is wrong with it.
pub(super) fn check_rotation(
    max_size: ByteSize,
    keep: u32,
    prefix: &str,
) -> Result<(), (String, String)> {
    if keep == 0 {
        return Err((format!("{prefix}_keep"), "must be at least 1".into()));
    }
    if max_size.as_u64() < 1024 {
        return Err((format!("{prefix}_max_size"), "must be at least 1KiB".into()));
    }
    Ok(())
}
fn default_ready_timeout() -> Duration {
    Duration::from_secs(30)
}

fn durations<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<Duration>, D::Error> {
    let raw = Vec::<String>::deserialize(de)?;
    raw.iter()
        .map(|s| {
            humantime::parse_duration(s).map_err(|e| {
                serde::de::Error::custom(format!("`{s}`: {e} (e.g. \"500ms\", \"10s\")"))
            })
        })
        .collect()
}

fn signal<'de, D: Deserializer<'de>>(de: D) -> Result<nix::sys::signal::Signal, D::Error> {
    let raw = String::deserialize(de)?;
    let name = raw.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{raw}` is not a signal name (e.g. \"SIGTERM\", \"INT\")"
        ))
    })
}

impl ProcessConfig {
    /// Whether the schedule says never to restart.
    pub fn never_restarts(&self) -> bool {
        self.restart_at.is_empty() || self.restart_at == [Duration::ZERO]
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        super::check_name(&self.name).map_err(|m| ("name".into(), m))?;
        if self.command.trim().is_empty() {
            return Err(("command".into(), "is empty".into()));
        }
        if self.instances == 0 || self.instances > 256 {
            return Err((
                "instances".into(),
                format!("must be 1 to 256, not {}", self.instances),
            ));
        }
        if let Some(cwd) = &self.cwd
            && (cwd.is_absolute()
                || cwd
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir)))
        {
            return Err((
                "cwd".into(),
                format!(
                    "{} must be a relative path inside the project dir",
                    cwd.display()
                ),
            ));
        }
        if matches!(
            self.stop_signal,
            nix::sys::signal::Signal::SIGKILL | nix::sys::signal::Signal::SIGSTOP
        ) {
            return Err((
                "stop_signal".into(),
                "cannot be SIGKILL or SIGSTOP: the process must get a chance to stop cleanly"
                    .into(),
            ));
        }
        check_rotation(self.log_max_size, self.log_keep, "log")?;
        if let Some(ready) = &self.ready {
            self.validate_ready(ready)?;
        }
        if self.sockets.len() > 16 {
            return Err(("sockets".into(), "at most 16 may be given".into()));
        }
        for (i, addr) in self.sockets.iter().enumerate() {
            if addr.port() == 0 {
                return Err((
                    format!("sockets[{i}]"),
                    format!("{addr} needs a port: the program's clients must know it"),
                ));
            }
            if self.sockets[..i].contains(addr) {
                return Err((format!("sockets[{i}]"), format!("{addr} is listed twice")));
            }
        }
        Ok(())
    }

    fn validate_ready(&self, ready: &ReadyConfig) -> Result<(), (String, String)> {
        match (&ready.port, &ready.http, &ready.log) {
            (Some(_), None, None) if !self.sockets.is_empty() => Err((
                "ready.port".into(),
                "passes at once for a process with `sockets` (bosun holds them open): \
                 use `http` or `log`"
                    .into(),
            )),
            (Some(_), None, None) => Ok(()),
            (_, Some(path), None)
                if !path.starts_with('/') || path.contains(char::is_whitespace) =>
            {
                Err((
                    "ready.http".into(),
                    format!("`{path}` must be a path starting with `/`, without spaces"),
                ))
            }
            (None, Some(_), None) if self.sockets.is_empty() => Err((
                "ready.http".into(),
                "needs `port`, or `sockets` to ask on".into(),
            )),
            (_, Some(_), None) => Ok(()),
            (None, None, Some(pattern)) => regex::Regex::new(pattern)
                .map(|_| ())
                .map_err(|e| ("ready.log".into(), format!("is not a valid regex: {e}"))),
            _ => Err((
                "ready".into(),
                "needs one of `port`, `http` (with `port` or `sockets`) or `log`".into(),
            )),
        }
    }
}
