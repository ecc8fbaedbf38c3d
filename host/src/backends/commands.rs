//! The `commands` import's real backend: programs from the project's
//! allow-list, never through a shell.
//!
//! - **Names only.** The program must be one of `commands.allow`, looked up
//!   on the PATH the program itself gets (the confined default, or a `PATH`
//!   in `commands.env`), not bosun's own: a tool in root's home is not the
//!   project's to run. A path or any other name is `denied`, naming it.
//!   Arguments are a list, so nothing is ever re-parsed by a shell.
//! - **Confined.** The program runs as the project, through its jail (see
//!   `confine`): its own user, its own files, its own cgroup leaf, and no
//!   network when `commands.network = false`. `cwd` is relative to the
//!   project dir and may not leave it.
//! - **Environment:** the confined base, the project's `.env`, then
//!   `commands.env`, then the plugin's own variables, of which loader and
//!   interpreter variables (`LD_PRELOAD`, `PYTHONPATH`, …) are refused.
//! - **Bounded.** Each run has a timeout; the program runs in its own
//!   process group and cgroup leaf, and both are killed when it times out,
//!   when the job is cancelled (the host call is dropped) or when it exits,
//!   so no build step, nor anything it left running, outlives its job.
//!   The run ends when the program exits, not when its output closes: a
//!   build step that leaves a daemon holding stdout is done when it is, and
//!   output still in flight is read for at most [`DRAIN`] after that.
//! - **Streamed.** Output goes into the job log line by line as it happens;
//!   the result keeps only the last lines of each stream.

use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use crate::config::{CURRENT, CommandsConfig, ProjectConfig, RELEASES};
use crate::confine::{self, GroupKill, Jail, SpawnError};
use crate::lines::{LineAssembler, Stream, join, to_text};
use crate::plugins::LogSink;
use crate::plugins::bindings::{CallError, Command, Output};
use crate::plugins::grants::CommandRunner;
use crate::project::{self, DirError};

/// Lines of each stream kept for the result.
const TAIL_LINES: usize = 20;
/// How long output is still read once the program has exited and what it
/// left running is killed: only a leftover that escaped both its group
/// and its cgroup (a host without cgroups) holds a pipe open that long.
const DRAIN: Duration = Duration::from_secs(1);

/// The allow-listed programs of one project.
pub struct Commands {
    jail: Arc<Jail>,
    config: CommandsConfig,
    /// Where the app is in the project dir (`current` in the release
    /// layout): the default working dir, and where `.env` is read.
    app_dir: Option<PathBuf>,
    /// The project's `path` dirs, relative to where the app is.
    path: Vec<PathBuf>,
}

impl Commands {
    /// The runner for `project`, whose programs run through `jail`.
    pub fn new(jail: Arc<Jail>, project: &ProjectConfig) -> Self {
        Self {
            jail,
            config: project.commands.clone(),
            app_dir: project.deploy.releases.map(|_| CURRENT.into()),
            path: project.path.clone(),
        }
    }

    /// Where the app is for a program run in `cwd`, relative to the
    /// project dir (none: the project dir itself): in the release layout,
    /// the release it runs in (a build runs in the release it builds,
    /// before that is current), else `current`. Its `.env`, the `path`
    /// dirs and a program given as a path are found there.
    fn app_root(&self, cwd: Option<&Path>) -> Option<PathBuf> {
        self.app_dir.as_ref()?;
        let mut parts = cwd
            .into_iter()
            .flat_map(Path::components)
            .filter(|c| *c != Component::CurDir);
        match (parts.next(), parts.next()) {
            (Some(Component::Normal(dir)), Some(Component::Normal(release))) if dir == RELEASES => {
                Some(Path::new(dir).join(release))
            }
            _ => self.app_dir.clone(),
        }
    }

    /// `program` if the allow-list has it: a name as it is (the confined
    /// child looks it up on its `PATH`), a path under `root`.
    fn allowed(&self, program: &str, root: &Path) -> Result<PathBuf, CallError> {
        if !self.config.allow.iter().any(|p| p == program) {
            let allowed = if self.config.allow.is_empty() {
                "the list is empty".to_string()
            } else {
                format!("allowed: {}", self.config.allow.join(", "))
            };
            return Err(CallError::Denied(format!(
                "`{program}` is not in this project's commands allow-list ({allowed})"
            )));
        }
        Ok(match program.contains('/') {
            true => root.join(program),
            false => PathBuf::from(program),
        })
    }
}

#[async_trait]
impl CommandRunner for Commands {
    async fn run(&self, cmd: Command, log: LogSink) -> Result<Output, CallError> {
        let cwd = cmd.cwd.as_deref().map(PathBuf::from);
        let app = self.app_root(cwd.as_deref());
        let root = self
            .jail
            .dir()
            .join(app.as_deref().unwrap_or(Path::new("")));
        let program = self.allowed(&cmd.program, &root)?;
        confine::check_plugin_env(&cmd.env).map_err(CallError::Denied)?;
        let dotenv = project::dotenv(self.jail.dir(), app.as_deref()).map_err(CallError::Failed)?;
        let local: Vec<PathBuf> = self.path.iter().map(|dir| root.join(dir)).collect();
        let timeout = cmd
            .timeout_ms
            .map_or(self.config.timeout, Duration::from_millis);
        let mut process = self.jail.command(&program);
        process
            .args(&cmd.args)
            .envs(dotenv)
            .envs(&self.config.env)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .prepend_path(&local)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .network(self.config.network)
            .own_leaf("cmd");
        // Relative to the project dir; none: where the app is.
        if let Some(cwd) = cwd.or(self.app_dir.clone()) {
            process.cwd(cwd);
        }
        let jailed = process.spawn().map_err(|e| match e {
            SpawnError::Dir(DirError::Outside(_)) => CallError::Denied(e.to_string()),
            e => CallError::Failed(e.to_string()),
        })?;
        // Dropped last, on every way out (timeout, cancellation): the
        // group, then the leaf with anything that left it, and the readers.
        let leaf = jailed.leaf;
        let mut child = jailed.child;
        let group = GroupKill::of(&child);
        let stop_reading = CancellationToken::new();
        let _stop_reading = stop_reading.clone().drop_guard();
        log(
            Stream::Host,
            &format!("[bosun] $ {} {}", cmd.program, cmd.args.join(" ")),
        );
        let stdout = child
            .stdout
            .take()
            .map(|s| pump(s, Stream::Stdout, log.clone(), stop_reading.clone()));
        let stderr = child
            .stderr
            .take()
            .map(|s| pump(s, Stream::Stderr, log.clone(), stop_reading.clone()));
        let status = tokio::time::timeout(timeout, child.wait())
            .await
            .map_err(|_| {
                CallError::Timeout(format!("`{}` ran longer than {timeout:?}", cmd.program))
            })?
            .map_err(|e| CallError::Failed(format!("waiting for `{}`: {e}", cmd.program)))?;
        // It has exited: what it left running goes now, and with it their
        // ends of its pipes.
        drop(group);
        if let Some(leaf) = &leaf {
            leaf.kill();
        }
        let tails = async {
            let tail = |pump: Option<tokio::task::JoinHandle<VecDeque<String>>>| async move {
                match pump {
                    Some(p) => p.await.unwrap_or_default(),
                    None => VecDeque::new(),
                }
            };
            tokio::join!(tail(stdout), tail(stderr))
        };
        tokio::pin!(tails);
        let (out, err) = tokio::select! {
            tails = &mut tails => tails,
            () = tokio::time::sleep(DRAIN) => {
                stop_reading.cancel();
                tails.await
            }
        };
        use std::os::unix::process::ExitStatusExt as _;
        Ok(Output {
            status: status.code(),
            signal: status.signal(),
            stdout_tail: join(out),
            stderr_tail: join(err),
        })
    }
}

/// Read a pipe to its end (or until `stop`), logging each whole line;
/// return the last lines.
fn pump(
    mut pipe: impl AsyncRead + Unpin + Send + 'static,
    stream: Stream,
    log: LogSink,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<VecDeque<String>> {
    tokio::spawn(async move {
        let mut tail = VecDeque::new();
        let mut lines = LineAssembler::default();
        let mut buf = vec![0u8; 8192];
        let emit = |line: &[u8], split: bool, tail: &mut VecDeque<String>| {
            let text = to_text(line, split);
            log(stream, &text);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text);
        };
        loop {
            let read = tokio::select! {
                biased;
                read = pipe.read(&mut buf) => read,
                () = stop.cancelled() => break,
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => lines.push(&buf[..n], |l, s| emit(l, s, &mut tail)),
            }
        }
        lines.finish(|l, s| emit(l, s, &mut tail));
        tail
    })
}
