//! The log files of one project, written by one thread.
//!
//! One writer per project owns every file of the project, so lines reach the
//! merged file whole and in the order they were read, never spliced. Lines
//! arrive in batches (the lines of one pipe read); it drains whatever
//! batches wait and writes each file once, which keeps a flood of small
//! lines from costing a syscall or a thread wake-up each. Files rotate by
//! size before a line would push them past `max_bytes`, so a line is never
//! split across two files; `keep` rotated files are kept (`.1` newest).
//!
//! bosun writes these files as root, so where a log lives in a project dir
//! (which the project's programs can fill with links) it is opened,
//! created and rotated *beneath* that dir: a link out (`app.log ->
//! /etc/passwd`) is refused, never appended to. Anywhere else (the state
//! dir, `/var/log`) a final link is refused too (`O_NOFOLLOW`).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use tokio::sync::mpsc;

use super::log_line::LogLine;

/// Lines written per batch at most, so rotation and flushing stay timely.
const BATCH: usize = 4096;
/// Batches (each the lines of one pipe read, at most 64 KiB of text) the
/// channel holds before readers wait, and so the processes, on their pipes:
/// at most 2 MiB of a project's lines wait in bosun's memory.
const CHANNEL: usize = 32;

/// A log file and its rotation settings.
#[derive(Debug)]
pub(crate) struct FileSpec {
    pub path: PathBuf,
    /// The project dir and the path inside it, when the file is in one.
    pub beneath: Option<(PathBuf, PathBuf)>,
    pub max_bytes: u64,
    pub keep: u32,
}

/// One line for the writer.
pub(crate) struct WriteMsg {
    pub file: Arc<FileSpec>,
    pub label: Arc<str>,
    pub line: Arc<LogLine>,
}

/// Start the writer thread of a project; it ends when every sender is
/// gone, once it has written everything sent.
pub(crate) fn spawn_writer(
    project: &str,
    merged: Option<Arc<FileSpec>>,
) -> (mpsc::Sender<Vec<WriteMsg>>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(CHANNEL);
    let thread = std::thread::Builder::new()
        .name(format!("bosun-log-{project}"))
        .spawn(move || write_loop(rx, merged))
        .expect("spawning a log writer thread");
    (tx, thread)
}

fn write_loop(mut rx: mpsc::Receiver<Vec<WriteMsg>>, merged: Option<Arc<FileSpec>>) {
    let mut files: HashMap<PathBuf, RotatingFile> = HashMap::new();
    while let Some(mut batch) = rx.blocking_recv() {
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        for msg in batch.drain(..) {
            file_for(&mut files, &msg.file).append(msg.line.text.as_bytes());
            if let Some(m) = &merged {
                let line = format!("{} | {}", msg.label, msg.line.text);
                file_for(&mut files, m).append(line.as_bytes());
            }
        }
        for file in files.values_mut() {
            file.flush();
        }
    }
}

fn file_for<'a>(
    files: &'a mut HashMap<PathBuf, RotatingFile>,
    spec: &FileSpec,
) -> &'a mut RotatingFile {
    files
        .entry(spec.path.clone())
        .or_insert_with(|| RotatingFile::new(spec))
}

struct RotatingFile {
    path: PathBuf,
    beneath: Option<(PathBuf, PathBuf)>,
    max_bytes: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
    pending: Vec<u8>,
    failed: bool,
}

impl RotatingFile {
    fn new(spec: &FileSpec) -> Self {
        Self {
            path: spec.path.clone(),
            beneath: spec.beneath.clone(),
            max_bytes: spec.max_bytes,
            keep: spec.keep,
            file: None,
            size: 0,
            pending: Vec::new(),
            failed: false,
        }
    }

    fn append(&mut self, line: &[u8]) {
        if self.file.is_none() {
            self.open();
        }
        let used = self.size + self.pending.len() as u64;
        if used > 0 && used + line.len() as u64 + 1 > self.max_bytes {
            self.flush();
            self.rotate();
        }
        self.pending.extend_from_slice(line);
        self.pending.push(b'\n');
    }

    fn open(&mut self) {
        let opened = match &self.beneath {
            Some((root, rel)) => open_beneath(root, rel),
            // Outside a project (the state dir, /var/log): bosun's alone.
            None => self
                .path
                .parent()
                .map_or(Ok(()), |dir| {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                })
                .and_then(|()| {
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .mode(0o600)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&self.path)
                }),
        };
        match opened {
            Ok(file) => {
                self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(file);
                self.failed = false;
            }
            Err(e) => self.report(&format!("opening: {e}")),
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if let Some(file) = &mut self.file {
            match file.write_all(&self.pending) {
                Ok(()) => self.size += self.pending.len() as u64,
                Err(e) => {
                    let message = format!("writing: {e}");
                    self.report(&message);
                }
            }
        }
        self.pending.clear();
    }

    fn rotate(&mut self) {
        self.file = None;
        for i in (1..self.keep).rev() {
            let _ = self.rename(i, i + 1);
        }
        if let Err(e) = self.rename(0, 1) {
            self.report(&format!("rotating: {e}"));
        }
        self.size = 0;
        self.open();
    }

    /// Rename rotation `from` (0: the live file) to `to`, beneath the
    /// project dir when the file is in one (a rename never follows links).
    fn rename(&self, from: u32, to: u32) -> std::io::Result<()> {
        let at = |p: &Path, n| {
            if n == 0 {
                p.to_path_buf()
            } else {
                numbered(p, n)
            }
        };
        match &self.beneath {
            Some((root, rel)) => {
                let dir = Dir::open_ambient_dir(root, ambient_authority())?;
                dir.rename(at(rel, from), &dir, at(rel, to))
            }
            None => fs::rename(at(&self.path, from), at(&self.path, to)),
        }
    }

    /// Log a file error once until the file works again; lines are still in
    /// the ring buffer and with followers.
    fn report(&mut self, what: &str) {
        if !self.failed {
            tracing::error!(path = %self.path.display(), "log file {what}");
            self.failed = true;
        }
    }
}

/// Open (creating it and its dirs) `rel` for appending, beneath `root`.
/// Only a regular file: the tenant owns the dir, and a FIFO put in the
/// log's place would otherwise block the project's writer thread in
/// `open` for good (and with it every line of the project, and an upgrade
/// that waits for the writer to finish). Only a file with no other name:
/// a hard link to a host file (`ln /etc/shadow app.log`, where the kernel
/// allows it) would have bosun append to that file.
fn open_beneath(root: &Path, rel: &Path) -> std::io::Result<File> {
    use cap_std::fs::OpenOptionsExt as _;
    use std::os::unix::fs::MetadataExt as _;
    let dir = Dir::open_ambient_dir(root, ambient_authority())?;
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        dir.create_dir_all(parent)?;
    }
    let mut options = cap_std::fs::OpenOptions::new();
    options
        .create(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    let file = dir.open_with(rel, &options)?.into_std();
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.nlink() != 1 {
        return Err(std::io::Error::other("a file with other hard links"));
    }
    let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(file)
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}
