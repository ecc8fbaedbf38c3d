//! The app the zero-downtime and release tests serve, as project `shop`.

use std::path::Path;

use super::server::{ADMIN, Api};
use super::{git, until};

/// The app: serves on the socket bosun hands it (and only if the
/// activation variables are right for it), boots for `BOOT` seconds,
/// holds each request 5 ms, and on SIGTERM stops accepting and finishes
/// what it holds. A file `crash` in its dir (or `CRASH` in its
/// environment) makes it exit at once; a file
/// `hang` makes it wait, never serving, while the file is there.
pub const APP: &str = r#"
import http.server, os, signal, socket, socketserver, sys, threading, time

if os.path.exists("crash") or os.environ.get("CRASH"):
    print("crashing at once", flush=True)
    sys.exit(3)
while os.path.exists("hang"):
    time.sleep(0.1)
if os.environ.get("LISTEN_PID") != str(os.getpid()):
    sys.exit(f"LISTEN_PID is {os.environ.get('LISTEN_PID')}, not {os.getpid()}")
if os.environ.get("LISTEN_FDS") != "1" or os.environ.get("LISTEN_FDNAMES") != "web":
    sys.exit("LISTEN_FDS/LISTEN_FDNAMES are wrong")
time.sleep(float(os.environ.get("BOOT", "0.3")))

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.005)
        version = open("VERSION").read().strip() if os.path.exists("VERSION") else "-"
        body = f"{os.getpid()} {version}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    pass

sock = socket.socket(fileno=3)
sock.setblocking(False)
server = Server(sock.getsockname(), Handler, bind_and_activate=False)
server.socket = sock
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print("serving", flush=True)
server.serve_forever(poll_interval=0.05)
server.server_close()
print("stopped cleanly", flush=True)
"#;

/// The build step of the deploy tests: checks that the app compiles, and
/// first waits while a file `slow` is where it runs.
pub const BUILD: &str = "import os, py_compile, time\n\
     while os.path.exists('slow'):\n    time.sleep(0.1)\n\
     py_compile.compile('app.py', doraise=True)\n";

/// In `root`: a bare `origin.git`, and a developer's clone of it, `dev`.
pub fn origin_and_dev(root: &Path) {
    git(root, &["init", "--quiet", "--bare", "origin.git"]);
    git(root, &["clone", "--quiet", "origin.git", "dev"]);
}

/// In the clone `dev`: replace its files with version `version` of the
/// app, [`BUILD`] and `extra` files (e.g. `crash`), commit, and push to
/// `main`. Returns the revision.
pub fn commit_app(dev: &Path, version: &str, extra: &[(&str, &str)]) -> String {
    for entry in std::fs::read_dir(dev).expect("dev") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n != ".git") && path.is_file() {
            std::fs::remove_file(path).expect("clean");
        }
    }
    std::fs::write(dev.join("VERSION"), version).expect("version");
    std::fs::write(dev.join("app.py"), APP).expect("app");
    std::fs::write(dev.join("build.py"), BUILD).expect("build");
    for (name, text) in extra {
        std::fs::write(dev.join(name), text).expect("extra");
    }
    git(dev, &["add", "-A"]);
    git(dev, &["commit", "--quiet", "-m", version]);
    git(dev, &["push", "--quiet", "origin", "HEAD:main"]);
    git(dev, &["rev-parse", "HEAD"])
}

/// What the app on `port` answers: `<pid> <version>`.
pub async fn serving(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .expect("the app answers")
        .text()
        .await
        .expect("text")
        .trim()
        .to_string()
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Wait until every instance of the project runs, and return their pids.
pub async fn pids(api: &Api, n: usize) -> Vec<u64> {
    until("every instance running", async || {
        let body = api.get_json("/v1/projects/shop", ADMIN).await;
        let procs = body["processes"].as_array()?;
        let running: Vec<u64> = procs
            .iter()
            .filter(|p| p["state"] == "running")
            .filter_map(|p| p["pid"].as_u64())
            .collect();
        (procs.len() == n && running.len() == n).then_some(running)
    })
    .await
}
