"""Requests failed during a restart, and a deploy, under load: 4 client threads, each
opening a new connection per request (as a browser or a load balancer's
health check does), while the app is restarted 3 times, a second apart.

- bosun: the `restart` action on a process with `sockets` (bosun holds the
  socket and hands it over; replacements start first), 2 instances and 1;
- PM2: `pm2 reload` of a Node app in cluster mode, 2 workers (its master
  holds the port, and reload replaces one worker at a time);
- supervisord: `restart web:*` of 2 instances that each bind the port with
  SO_REUSEPORT (it has no socket of its own to hand over).

The Python app stops accepting on SIGTERM and finishes what it holds; the
Node app does the same on PM2's SIGINT: each tool gets an app that stops
gracefully its way.
"""

import http.client
import subprocess
import threading
import time

from harness import Row, free_port, log
from tools import Bosun, Program, wait_for

PY_APP = r'''
import http.server, os, signal, socket, socketserver, threading
VERSION = open("VERSION").read().strip() if os.path.exists("VERSION") else "-"
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.getpid()} {VERSION}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    pass
if os.environ.get("LISTEN_PID") == str(os.getpid()):
    sock = socket.socket(fileno=3)
else:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", int(os.environ["PORT"])))
    sock.listen(1024)
sock.setblocking(False)
server = S(sock.getsockname(), H, bind_and_activate=False)
server.socket = sock
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever(poll_interval=0.05)
server.server_close()
'''

NODE_APP = r'''
const http = require("http");
const server = http.createServer((req, res) => res.end(`${process.pid}\n`));
server.listen(+process.env.PORT || +process.argv[2]);
process.on("SIGINT", () => server.close(() => process.exit(0)));
'''


def load(port, stop, counts, seen=None):
    """Ask until `stop`; with `seen` (version → first time), note when
    each version first answered."""
    ok = failed = 0
    while not stop.is_set():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            if resp.status == 200:
                ok += 1
                if seen is not None:
                    seen.setdefault(body.decode().split()[-1], time.perf_counter())
            else:
                failed += 1
        except (OSError, http.client.HTTPException):
            failed += 1
    counts.append((ok, failed))


def under_load(port, restart, restarts=3):
    """Restart `restarts` times under load; (answered, failed, median ms)."""
    stop, counts = threading.Event(), []
    clients = [threading.Thread(target=load, args=(port, stop, counts)) for _ in range(4)]
    for c in clients:
        c.start()
    times = []
    time.sleep(1)
    for _ in range(restarts):
        t0 = time.perf_counter()
        restart()
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(1)
    stop.set()
    for c in clients:
        c.join()
    times.sort()
    return sum(c[0] for c in counts), sum(c[1] for c in counts), times[len(times) // 2]


def answers(port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def restart_under_load(ctx):
    work = ctx.dir("apps")
    (work / "app.py").write_text(PY_APP)
    (work / "app.js").write_text(NODE_APP)
    failed, answered, took = {}, {}, {}
    runs = [
        ("bosun", "bosun", 2),
        ("bosun, 1 instance", "bosun", 1),
        ("PM2 reload, cluster of 2", "PM2", 2),
        ("supervisord, 2 (SO_REUSEPORT)", "supervisord", 2),
    ]
    for label, tool, n in runs:
        port = free_port()
        if tool == "bosun":
            prog = Program(
                "web",
                ["python3", str(work / "app.py")],
                instances=n,
                sockets=[f"127.0.0.1:{port}"],
                ready_http="/",
            )
        elif tool == "PM2":
            prog = Program("web", [str(work / "app.js"), str(port)], instances=n, cluster=True)
        else:
            prog = Program("web", ["env", f"PORT={port}", "python3", str(work / "app.py")],
                           instances=n)
        kw = {"startsecs": 1} if tool == "supervisord" else {}
        with ctx.start(tool, [prog], **kw) as d:
            wait_for("the app answering", lambda: answers(port), 60, 0.1)
            wait_for("every instance running", lambda: len(d.pids("web")) == n, 60, 0.1)
            restart = {"PM2": lambda: d.reload("web")}.get(tool, lambda: d.restart("web"))
            if tool == "supervisord":
                def restart():
                    d.restart("web")
                    wait_for("web back", lambda: len(d.pids("web")) == n, 30, 0.01)
            answered[label], failed[label], took[label] = under_load(port, restart)
        log(f"  under load {label}: {failed[label]} of {answered[label] + failed[label]} failed, "
            f"restart {took[label]:.0f} ms")
    what = "Restart under load: 4 clients, a new connection per request, 3 restarts"
    return [
        Row(what, "failed requests", "", "lower", failed),
        Row(what, "answered requests", "", "info", answered),
        Row(what, "restart, median (until the tool says done)", "ms", "info", took),
    ]


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def deploy_under_load(ctx):
    """bosun only (the peers have no deploy): a commit pushed to the
    project's upstream, `deploy` under the same load, its build a
    `py_compile`; the time from the request to the new version's first
    answer, and to the job's end. Once deploying in place, once in the
    release layout (a checkout and build beside the serving release)."""
    return deploys_under_load(ctx, releases=False) + deploys_under_load(ctx, releases=True)


def deploys_under_load(ctx, releases):
    layout = "releases" if releases else "in-place"
    repo = ctx.dir(f"repo-{layout}")
    git(repo, "init", "--quiet", "--bare", "origin.git")
    git(repo, "clone", "--quiet", "origin.git", "dev")
    dev = repo / "dev"
    (dev / "app.py").write_text(PY_APP)

    def commit(version):
        (dev / "VERSION").write_text(version)
        git(dev, "add", "-A")
        git(dev, "-c", "user.name=bench", "-c", "user.email=bench@localhost",
            "commit", "--quiet", "-m", version)
        git(dev, "push", "--quiet", "origin", "HEAD:main")

    commit("v1")
    work = ctx.dir(f"bosun-{layout}")
    port = free_port()
    prog = Program("web", ["python3", "app.py"], instances=2,
                   sockets=[f"127.0.0.1:{port}"], ready_http="/")
    tables = [
        "[projects.app.git]",
        f'clone = "{repo / "origin.git"}"',
        'branch = "main"',
        "[projects.app.commands]",
        'allow = ["python3"]',
        "[projects.app.deploy]",
        'build = [["python3", "-m", "py_compile", "app.py"]]',
        'settle = "1s"',
    ]
    if releases:
        tables.append("releases = 3")
    deploys = 3
    with Bosun(work, ctx.bosun_bin, [prog], project_tables=tables) as d:
        wait_for("the app answering", lambda: answers(port), 60, 0.1)
        stop, counts, seen = threading.Event(), [], {}
        clients = [threading.Thread(target=load, args=(port, stop, counts, seen))
                   for _ in range(4)]
        for c in clients:
            c.start()
        serving, done = [], []
        for n in range(2, 2 + deploys):
            time.sleep(1)
            version = f"v{n}"
            commit(version)
            t0 = time.perf_counter()
            d.deploy()
            done.append((time.perf_counter() - t0) * 1000)
            serving.append((seen[version] - t0) * 1000)
        time.sleep(1)
        stop.set()
        for c in clients:
            c.join()
    ok, failed = sum(c[0] for c in counts), sum(c[1] for c in counts)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    log(f"  deploy under load ({layout}): {failed} of {ok + failed} failed; new version "
        f"answering after {med(serving):.0f} ms, job done after {med(done):.0f} ms "
        f"(medians of {deploys})")
    what = f"Deploy under load (bosun, {layout}): {deploys} deploys, 2 instances on one socket"
    return [
        Row(what, "failed requests", "", "lower", {"bosun": failed}),
        Row(what, "request to the new version's first answer, median", "ms", "info",
         {"bosun": med(serving)}),
        Row(what, "request to the job's end (settle 1 s included), median", "ms", "info",
         {"bosun": med(done)}),
    ]
