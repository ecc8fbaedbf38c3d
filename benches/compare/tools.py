"""The four tools under test. The three process managers share one
declared interface, `Supervisor` (pids, restart, stop); the webhook server
is a `Daemon` with `call`.

Each tool is started on a fresh work dir with a list of programs, reached
only over loopback, and stopped by its own pid at the end (PM2's daemon by
the pid in its PM2_HOME), also when a scenario fails: see `Daemon.close`.
"""

import hashlib
import json
import os
import shlex
import signal
import subprocess
import time
import urllib.request
import xmlrpc.client
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

KEY = "bsk_bench_local_only"


@dataclass
class Program:
    """One supervised program: `argv`, `instances` copies."""

    name: str
    argv: list
    instances: int = 1
    # None: the tool's own default.
    kill_timeout_s: float | None = None
    log: Path | None = None
    # False: run once, never restarted (each tool's way of saying so).
    restart: bool = True
    # bosun: listening sockets it holds and hands over (`sockets`), and an
    # HTTP readiness path asked on the first of them.
    sockets: list | None = None
    ready_http: str | None = None
    # PM2: one app in cluster mode (its master holds the port), `instances`
    # workers, the script run by node.
    cluster: bool = False


def wait_for(what, cond, timeout=30.0, every=0.01):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rss_kib(pid, field="VmRSS"):
    """`VmRSS` (everything resident) or `RssAnon` (private memory only,
    without the pages of the program's own files) of `pid`, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def terminate(pid, grace=20.0):
    """SIGTERM `pid`, SIGKILL it after `grace`; only this pid, never a pattern."""
    if not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        wait_for(f"pid {pid} to exit", lambda: not alive(pid), grace)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Daemon:
    """A started tool. Subclasses fill in `pid` and the operations."""

    name = "?"

    def __init__(self, work: Path):
        self.work = work
        self.proc = None
        self.pid = None

    def close(self):
        if self.proc is not None:
            terminate(self.proc.pid)
            self.proc.wait(timeout=30)
        elif self.pid is not None:
            terminate(self.pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Supervisor(Daemon, ABC):
    """A compared process manager: what every scenario may ask of one."""

    @abstractmethod
    def pids(self, name):
        """The pids of program `name`'s instances, as the tool reports them."""

    @abstractmethod
    def restart(self, name):
        """Restart program `name` through the tool's own remote interface;
        returns when the tool says it is done."""

    @abstractmethod
    def stop(self, name):
        """Stop program `name` through the tool's own remote interface."""


class Bosun(Supervisor):
    name = "bosun"

    def __init__(
        self,
        work,
        binary,
        programs,
        noop_plugin=None,
        noop_projects=0,
        confined=False,
        project_tables=(),
        others=(),
    ):
        super().__init__(work)
        digest = hashlib.sha256(KEY.encode()).hexdigest()
        lines = [
            'state_dir = "state"',
            "[server]",
            'listen = "127.0.0.1:0"',
            "max_concurrent_requests = 4096",
            "auth_fail_limit = 1000000",
            "[jobs]",
            "queue_depth = 1024",
            "[plugins]",
            "max_concurrent_runs = 16",
            "[[keys]]",
            'name = "bench"',
            f'hash = "sha256:{digest}"',
            'projects = "*"',
            'role = "admin"',
            "[projects.app]",
            'dir = "app"',
            'actions = ["status", "start", "stop", "restart"]'
            if not project_tables
            else 'actions = ["status", "start", "stop", "restart", "deploy"]',
        ]
        # The peers run every program as root, seeing every file; so does
        # bosun here (its programs write the harness's files outside their
        # project), except where a scenario asks for bosun's default.
        if not confined:
            lines.append("unconfined = true")
        # Programs sharing one log file: bosun's merged log (it keeps each
        # process's own file as well). A program with a file of its own: its
        # `log_file`.
        logs = [p.log for p in programs if p.log]
        shared = len(logs) > 1 and len(set(logs)) == 1
        if shared:
            lines.append(f'merged_log = "{logs[0]}"')
        # More projects (`others`: (name, programs) pairs), as many as asked.
        for project, _ in others:
            lines += [f"[projects.{project}]", f'dir = "{project}"']
            if not confined:
                lines.append("unconfined = true")
            (work / project).mkdir(parents=True, exist_ok=True)
        for project, p in [("app", p) for p in programs] + [
            (project, p) for project, ps in others for p in ps
        ]:
            lines += [
                f"[[projects.{project}.processes]]",
                f'name = "{p.name}"',
                f"command = {json.dumps(p.argv[0])}",
                f"args = {json.dumps(p.argv[1:])}",
                f"instances = {p.instances}",
            ]
            if p.kill_timeout_s is not None:
                lines.append(f'kill_timeout = "{int(p.kill_timeout_s * 1000)}ms"')
            if not p.restart:
                lines.append("restart_at = []")
            if p.log and not shared:
                lines.append(f'log_file = "{p.log}"')
            if p.sockets:
                lines.append(f"sockets = {json.dumps(p.sockets)}")
            if p.ready_http:
                lines.append(f'ready = {{ http = "{p.ready_http}", timeout = "20s" }}')
        # Tables of project app's own (`[projects.app.git]`, …), as lines.
        lines += list(project_tables)
        for i in range(noop_projects):
            lines += [
                f"[projects.p{i}]",
                f'dir = "p{i}"',
                f"[projects.p{i}.actions.noop]",
                f"path = {json.dumps(str(noop_plugin))}",
            ]
            (work / f"p{i}").mkdir(parents=True, exist_ok=True)
        (work / "app").mkdir(parents=True, exist_ok=True)
        config = work / "bosun.toml"
        config.write_text("\n".join(lines) + "\n")
        # As on a server that has run before: the compiled-plugin cache warm.
        subprocess.run(
            [binary, "check", "--config", str(config)], check=True, capture_output=True
        )
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        first = self.proc.stdout.readline()
        if " on http" not in first:
            self.close()
            raise RuntimeError(f"bosun did not start: {first!r}")
        self.url = first.strip().rsplit(" ", 1)[1]
        self.port = int(self.url.rsplit(":", 1)[1])

    def _call(self, method, path, body=None):
        req = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {KEY}"},
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.load(resp)

    def pids(self, name):
        procs = self._call("GET", "/v1/projects/app")["processes"]
        return [p["pid"] for p in procs if p["name"] == name and p["state"] == "running"]

    def restart(self, name):
        job = self._call(
            "POST", "/v1/projects/app/actions/restart?wait=60s", {"params": {"name": name}}
        )
        assert job["state"] == "succeeded", job

    def deploy(self):
        job = self._call("POST", "/v1/projects/app/actions/deploy?wait=120s", {"params": {}})
        assert job["state"] == "succeeded", job
        return job

    def stop(self, name):
        job = self._call(
            "POST", "/v1/projects/app/actions/stop?wait=60s", {"params": {"name": name}}
        )
        assert job["state"] == "succeeded", job


class Pm2(Supervisor):
    name = "PM2"

    def __init__(self, work, peers, programs):
        super().__init__(work)
        self.bin = str(peers / "pm2/node_modules/.bin/pm2")
        self.module = str(peers / "pm2/node_modules/pm2")
        self.env = dict(os.environ, PM2_HOME=str(work / "pm2home"), PM2_NO_INTERACTION="true")
        apps = []
        for p in programs:
            if p.cluster:
                apps.append(
                    {
                        "name": p.name,
                        "script": p.argv[0],
                        "args": p.argv[1:],
                        "exec_mode": "cluster",
                        "instances": p.instances,
                    }
                )
                continue
            for i in range(p.instances):
                app = {
                    "name": p.name if p.instances == 1 else f"{p.name}-{i}",
                    "script": p.argv[0],
                    "args": p.argv[1:],
                    "interpreter": "none",
                    "autorestart": p.restart,
                }
                if p.kill_timeout_s is not None:
                    app["kill_timeout"] = int(p.kill_timeout_s * 1000)
                if p.log:
                    app["out_file"] = str(p.log)
                    app["error_file"] = str(p.log)
                apps.append(app)
        eco = work / "ecosystem.json"
        eco.write_text(json.dumps({"apps": apps}))
        self.cli("start", str(eco))
        self.pid = int((work / "pm2home/pm2.pid").read_text())

    def cli(self, *args):
        return subprocess.run(
            [self.bin, *args], env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def pids(self, name):
        return [
            a["pid"]
            for a in json.loads(self.cli("jlist"))
            if (a["name"] == name or a["name"].startswith(name + "-"))
            and a["pm2_env"]["status"] == "online"
            and a["pid"]
        ]

    def restart(self, name):
        self.cli("restart", name)

    def reload(self, name):
        """`pm2 reload`: cluster workers replaced one at a time."""
        self.cli("reload", name)

    def stop(self, name):
        self.cli("stop", name)

    def rpc_restarts(self, name, count):
        """Times of `count` restarts through PM2's own RPC (its node API),
        each until the new pid is online, measured inside node."""
        script = """
// With -e, the arguments start at argv[1].
const pm2 = require(process.argv[1]);
const name = process.argv[2], count = +process.argv[3];
const pidOf = () => new Promise((ok, err) => pm2.describe(name, (e, d) => e ? err(e) :
  ok(d[0] && d[0].pm2_env.status === 'online' ? d[0].pid : 0)));
pm2.connect(async (e) => {
  if (e) { console.error(e); process.exit(1); }
  const times = [];
  for (let i = 0; i < count; i++) {
    const before = await pidOf();
    const t0 = process.hrtime.bigint();
    await new Promise((ok, err) => pm2.restart(name, (e) => e ? err(e) : ok()));
    let pid;
    while (!(pid = await pidOf()) || pid === before) { await new Promise(r => setTimeout(r, 1)); }
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  console.log(JSON.stringify(times));
  pm2.disconnect();
});
"""
        out = subprocess.run(
            ["node", "-e", script, self.module, name, str(count)],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])

    def close(self):
        try:
            subprocess.run([self.bin, "kill"], env=self.env, capture_output=True, timeout=60)
        finally:
            super().close()


class Supervisord(Supervisor):
    name = "supervisord"

    def __init__(self, work, peers, programs, port, startsecs=None):
        super().__init__(work)
        lines = [
            "[supervisord]",
            "nodaemon=true",
            f"logfile={work}/supervisord.log",
            f"pidfile={work}/supervisord.pid",
            f"childlogdir={work}",
            "[inet_http_server]",
            f"port=127.0.0.1:{port}",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        ]
        for p in programs:
            lines += [
                f"[program:{p.name}]",
                # supervisord expands %(name)s in commands: escape a plain %.
                "command=" + shlex.join(p.argv).replace("%", "%%"),
                f"numprocs={p.instances}",
                "process_name=%(program_name)s-%(process_num)d",
                f"autorestart={'true' if p.restart else 'false'}",
            ]
            if startsecs is not None:
                lines.append(f"startsecs={startsecs}")
            elif not p.restart:
                lines.append("startsecs=0")
            if p.kill_timeout_s is not None:
                lines.append(f"stopwaitsecs={max(1, round(p.kill_timeout_s))}")
            if p.log:
                lines += [f"stdout_logfile={p.log}", "stdout_logfile_maxbytes=0"]
        conf = work / "supervisord.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [str(peers / "supervisor/bin/supervisord"), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")
        self.port = port
        wait_for("supervisord's RPC", self._up, 30, 0.05)

    def _up(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"supervisord exited; see {self.work}/supervisord.conf")
        try:
            return self.rpc.supervisor.getState()["statename"] == "RUNNING"
        except OSError:
            return False

    def pids(self, name):
        return [
            i["pid"]
            for i in self.rpc.supervisor.getAllProcessInfo()
            if i["group"] == name and i["statename"] == "RUNNING"
        ]

    def restart(self, name):
        # Waiting for the start would add supervisord's 1 s main-loop tick;
        # the caller polls for the new pid instead.
        self.rpc.supervisor.stopProcessGroup(name, True)
        self.rpc.supervisor.startProcessGroup(name, False)

    def stop(self, name):
        self.rpc.supervisor.stopProcessGroup(name, True)


class Webhook(Daemon):
    name = "webhook"

    def __init__(self, work, peers, port, hooks):
        super().__init__(work)
        spec = [
            {"id": hid, "execute-command": cmd, "include-command-output-in-response": True}
            for hid, cmd in hooks.items()
        ]
        (work / "hooks.json").write_text(json.dumps(spec))
        self.proc = subprocess.Popen(
            [
                str(peers / "deb/usr/bin/webhook"),
                "-hooks",
                str(work / "hooks.json"),
                "-ip",
                "127.0.0.1",
                "-port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.url = f"http://127.0.0.1:{port}"
        wait_for("webhook to listen", self._up, 30, 0.05)

    def _up(self):
        try:
            urllib.request.urlopen(self.url + "/", timeout=1)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    def call(self, hook):
        with urllib.request.urlopen(f"{self.url}/hooks/{hook}", timeout=60) as resp:
            return resp.read()
