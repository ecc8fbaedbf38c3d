//! The README's quick start, run as written: every `sh` block marked
//! `<!-- readme-test -->` runs in one bash, in order, against the real
//! `bosun serve` on the bundled demo config, and must succeed.
//!
//! The repository is mirrored the way a user has it: `config/` and the
//! built example plugin copied into a temp dir that is a git repository of
//! its own, so the demo's first-start clone and the blocks' commits happen
//! there, never in this checkout. `cargo run [-q] -- …` in a block runs the
//! bosun under test, and curl fails on any HTTP error status.
//!
//! The demo's ports are the README's (8750, 8751): this test fails, saying
//! so, while a `bosun serve` of the quick start is running.
//!
//! Run with: cargo test --test readme

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const MARK: &str = "<!-- readme-test -->";

/// Definitions run before the blocks; see the module docs.
const PRELUDE: &str = r#"set -euo pipefail
cargo() {
    [ "$1" = run ] || { echo "only \`cargo run\` is supported here" >&2; return 2; }
    shift
    [ "${1:-}" = -q ] && shift
    [ "${1:-}" = -- ] && shift
    "$BOSUN_BIN" "$@"
}
curl() { command curl --fail-with-body --silent --show-error --max-time 180 "$@"; echo; }
"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the repository")
        .to_path_buf()
}

/// The marked `sh` blocks of the README, in order.
fn marked_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != MARK {
            continue;
        }
        assert_eq!(
            lines.next().map(str::trim),
            Some("```sh"),
            "{MARK} must be followed by a ```sh block"
        );
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        blocks.push(block.join("\n"));
    }
    blocks
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().expect("type").is_dir() {
            if entry.file_name() != "state" {
                copy_dir(&src, &dst);
            }
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// A temp "checkout": `config/` and the example plugin where the demo
/// config looks for it, committed on `main`.
fn checkout() -> TempDir {
    let dir = TempDir::new().expect("temp");
    let root = dir.path();
    copy_dir(&repo_root().join("config"), &root.join("config"));
    let release = root.join("target/wasm-guests/wasm32-wasip2/release");
    std::fs::create_dir_all(&release).expect("mkdir");
    std::fs::copy(
        common::guest_dir().join("disk_usage.wasm"),
        release.join("disk_usage.wasm"),
    )
    .expect("copy the example plugin");
    std::fs::write(root.join(".gitignore"), "/target\n/config/state\n").expect("write");
    common::git(root, &["init", "--quiet", "--initial-branch=main"]);
    common::git(root, &["add", "-A"]);
    common::git(root, &["commit", "--quiet", "-m", "bosun"]);
    dir
}

/// `bosun serve` with the demo config, SIGTERMed and awaited on drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Git's identity for the blocks' commits, without touching any config.
const GIT_IDENTITY: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "readme"),
    ("GIT_AUTHOR_EMAIL", "readme@example.invalid"),
    ("GIT_COMMITTER_NAME", "readme"),
    ("GIT_COMMITTER_EMAIL", "readme@example.invalid"),
];

#[test]
fn the_quick_start_runs_as_written_against_the_demo() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let blocks = marked_blocks(&readme);
    assert!(blocks.len() >= 3, "the quick start's blocks are marked");
    for port in [8750, 8751] {
        assert!(
            port_free(port),
            "port {port} is in use: stop the quick start's `bosun serve` before this test"
        );
    }
    let home = checkout();
    let root = home.path();

    let mut child = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .arg("serve")
        .current_dir(root)
        .envs(GIT_IDENTITY)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn bosun serve");
    let stdout = child.stdout.take().expect("stdout");
    let server = Serve(child);
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("bosun's first line");
    assert!(
        first.starts_with("bosun: serving config/bosun.toml on http://127.0.0.1:8750"),
        "{first:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", 8751)).is_err() {
        assert!(Instant::now() < deadline, "the demo app never listened");
        std::thread::sleep(Duration::from_millis(100));
    }

    let script = format!("{PRELUDE}\n{}\n", blocks.join("\n"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root)
        .envs(GIT_IDENTITY)
        .env("BOSUN_BIN", env!("CARGO_BIN_EXE_bosun"))
        .env("BOSUN_CLIENT_CONFIG", root.join("no-client.toml"))
        .env_remove("BOSUN_URL")
        .env_remove("BOSUN_KEY")
        .env_remove("BOSUN_PROJECT_KEY")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README's blocks failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );

    // What the comments in the blocks promise, in the order they promise it.
    let promised = [
        "hello from the bosun demo",
        r#""action":"status""#,
        r#""action":"restart""#,
        r#""state":"succeeded""#,
        r#""changed":true"#,
        "howdy from the bosun demo",
        r#""rolled_back":true"#,
        "howdy from the bosun demo",
        r#""state":"succeeded""#,
        "ahoy from the bosun demo",
        "accepted",
        "web",
    ];
    let mut rest: &str = &stdout;
    for want in promised {
        let at = rest.find(want).unwrap_or_else(|| {
            panic!("`{want}` missing (or out of order) in the blocks' output:\n{stdout}")
        });
        rest = &rest[at + want.len()..];
    }
    drop(server);
    let server_py = std::fs::read_to_string(root.join("config/demo/server.py")).expect("read");
    assert!(
        !server_py.contains("howdy"),
        "the last block takes the demo commits back out"
    );
}
