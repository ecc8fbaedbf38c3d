//! Compiling a team's component within a budget.
//!
//! A component that a team uploads or commits is compiled by bosun, and
//! Cranelift can neither be interrupted nor capped in memory from inside the
//! process that runs it: a component built to take minutes or gigabytes to
//! compile would stall or kill the server of every tenant. So such a
//! component is compiled by a child, `bosun compile-plugin` (the same
//! image), under `RLIMIT_AS` and a wall-clock kill, at a lower priority
//! (nice 10), one child at a time server-wide. The child writes the
//! compiled code into the authenticated cache (see `cache`), where the
//! engine's load then finds it; what is loaded is still checked, linked and
//! described by the server as any plugin is.
//!
//! The operator's own plugins (stock, and config `path`s outside every
//! project's dir) are compiled in-process as before: they are trusted, and
//! a restart should not pay a process per plugin.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Semaphore, SemaphorePermit};

/// The running image, whatever file is at its path now.
pub const THIS_IMAGE: &str = "/proc/self/exe";

/// How a compiler that did not start is reported.
pub(crate) const NOT_STARTED: &str = "cannot start the compiler";

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "compile-plugin";

/// Bytes of the child's stderr kept for the error.
const MAX_STDERR: u64 = 4 << 10;

/// Where and within what a team's component is compiled.
#[derive(Debug, Clone)]
pub struct Compiler {
    /// The bosun binary to run as the child.
    pub binary: PathBuf,
    /// Wall-clock budget.
    pub timeout: Duration,
    /// Address-space budget of the child.
    pub memory: u64,
    /// One compile at a time, server-wide: every tenant's uploads and
    /// commits together get one child's worth of CPU and memory.
    pub turns: Arc<Semaphore>,
}

impl Compiler {
    /// A compiler running `binary` within `timeout` and `memory`.
    pub fn new(binary: PathBuf, timeout: Duration, memory: u64) -> Self {
        Self {
            binary,
            timeout,
            memory,
            turns: Arc::new(Semaphore::new(1)),
        }
    }

    /// Wait for the turn to compile.
    pub(crate) async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        self.turns.acquire().await.ok()
    }

    /// Compile `wasm` for the engine of `state_dir` and `max_memory` in a
    /// child within the budget; the result lands in the cache. The error
    /// says which budget ran out, or what the compiler said.
    pub(crate) async fn compile(
        &self,
        state_dir: &Path,
        max_memory: u64,
        wasm: &[u8],
    ) -> Result<(), String> {
        let memory = self.memory;
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.arg(SUBCOMMAND)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--max-memory")
            .arg(max_memory.to_string())
            // Nothing of bosun's environment. wasmtime compiles on a thread
            // per core, each of which would reserve a 64 MiB malloc arena
            // of the address space the budget counts.
            .env_clear()
            .env("MALLOC_ARENA_MAX", "2")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: between fork and exec the closure only calls setrlimit
        // and setpriority, which are async-signal-safe, and allocates
        // nothing.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                // Below the tenants' own programs, which run at 0: its
                // threads take the cores the others leave idle (about a
                // tenth of one under contention), not the others' share.
                libc::setpriority(libc::PRIO_PROCESS, 0, 10);
                let limit = libc::rlimit {
                    rlim_cur: memory,
                    rlim_max: memory,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{NOT_STARTED} ({}): {e}", self.binary.display()))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let feed = async move {
            // A child that dies early closes the pipe: its status says why.
            let _ = stdin.write_all(wasm).await;
            drop(stdin);
        };
        let said = async {
            let mut text = String::new();
            let _ = (&mut stderr)
                .take(MAX_STDERR)
                .read_to_string(&mut text)
                .await;
            text
        };
        let run = async {
            let ((), text, status) = tokio::join!(feed, said, child.wait());
            (text, status)
        };
        let Ok((text, status)) = tokio::time::timeout(self.timeout, run).await else {
            return Err(format!(
                "compiling took longer than the budget of {}",
                humantime::format_duration(self.timeout)
            ));
        };
        let status = status.map_err(|e| format!("waiting for the compiler: {e}"))?;
        if status.success() {
            return Ok(());
        }
        let said = text.trim();
        let out_of_memory = said.contains("memory allocation")
            || said.contains("Cannot allocate memory")
            || said.contains("out of memory");
        if out_of_memory || status.signal().is_some() {
            return Err(format!(
                "compiling needed more than the budget of {} of memory{}",
                bytesize::ByteSize::b(self.memory),
                if said.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", last_line(said))
                }
            ));
        }
        Err(if said.is_empty() {
            format!("the compiler failed ({status})")
        } else {
            last_line(said).to_string()
        })
    }
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or(text).trim()
}
