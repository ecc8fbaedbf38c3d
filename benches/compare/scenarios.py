"""The scenarios: each runs every tool in turn on a fresh work dir and
returns `harness.Row`s.

Rules every scenario keeps: loopback only, every loop bounded in count and
time, every daemon stopped by its own pid in a `with` block (so also when a
scenario fails), and the only processes killed outside a daemon are pids
this harness recorded itself.
"""

import os
import re
import signal
import statistics
import subprocess
import time

from harness import Row, free_port, log
from tools import Bosun, Program, Supervisord, Webhook, alive, rss_kib, wait_for

TOOLS = ("bosun", "PM2", "supervisord")


def sleeper(ctx, name, instances=1):
    # A unique argument, so these processes are told from any other `sleep`.
    return Program(name, ["sleep", f"9{ctx.run_id}"], instances=instances)


def idle_rss(ctx):
    values, private = {}, {}
    for tool in TOOLS:
        with ctx.start(tool, [sleeper(ctx, "sleeper", 10)]) as d:
            wait_for("10 running sleepers", lambda: len(d.pids("sleeper")) == 10, 60, 0.2)
            time.sleep(2)
            samples, anon = [], []
            for _ in range(5):
                samples.append(rss_kib(d.pid) / 1024)
                anon.append(rss_kib(d.pid, "RssAnon") / 1024)
                time.sleep(0.5)
            values[tool] = statistics.median(samples)
            private[tool] = statistics.median(anon)
            log(f"  idle RSS {tool}: {values[tool]:.1f} MiB ({private[tool]:.1f} MiB private)")
    what = "Idle daemon, 10 `sleep` processes"
    return [
        Row(what, "RSS", "MiB", "lower", values),
        Row(what, "of which private (RssAnon)", "MiB", "lower", private),
    ]


def timed(count, fn):
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def restart_until_new_pid(d, name):
    before = d.pids(name)
    t0 = time.perf_counter()
    d.restart(name)
    # Most tools answer once the new process runs; poll only if one did not.
    wait_for("a new pid", lambda: (p := d.pids(name)) and p != before, 30, 0.001)
    return (time.perf_counter() - t0) * 1000


def restart(ctx):
    n = 5 if ctx.quick else 20
    medians = {}
    # The floor: kill, reap and spawn from this script, no daemon at all.
    child = subprocess.Popen(["sleep", f"9{ctx.run_id}"])

    def bare():
        nonlocal child
        child.terminate()
        child.wait()
        child = subprocess.Popen(["sleep", f"9{ctx.run_id}"])

    medians["bare kill + spawn"] = statistics.median(timed(n, bare))
    child.terminate()
    child.wait()
    # bosun as it runs by default (root: every program confined), and the
    # same without confinement, for what confinement costs a restart.
    runs = [(tool, {}) for tool in TOOLS] + [("bosun", {"confined": False})]
    for tool, kw in runs:
        if tool == "supervisord":
            kw = {"startsecs": 0}
        elif tool == "bosun":
            kw = {"confined": kw.get("confined", True)}
        with ctx.start(tool, [sleeper(ctx, "web")], **kw) as d:
            wait_for("web running", lambda: d.pids("web"), 60, 0.05)
            label = {"PM2": "PM2 CLI", "supervisord": "supervisord XML-RPC"}.get(tool, tool)
            if tool == "bosun" and not kw["confined"]:
                label = "bosun, unconfined"
            count = min(n, 10) if tool == "PM2" else n
            medians[label] = statistics.median(
                [restart_until_new_pid(d, "web") for _ in range(count)]
            )
            if tool == "PM2":
                medians["PM2 RPC"] = statistics.median(d.rpc_restarts("web", count))
            if label == "bosun":
                # What this harness's own HTTP client costs: the same two
                # round trips (the action call, the pid check) with nothing
                # to do, so bosun's part of a restart is the difference.
                medians["bosun's two API calls alone"] = statistics.median(
                    timed(n, lambda: (d.pids("web"), d.pids("web")))
                )
    work = ctx.dir("webhook")
    pidfile = work / "pid"
    script = work / "restart.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'kill "$(cat {pidfile})" 2>/dev/null\n'
        f"sleep 9{ctx.run_id} >/dev/null 2>&1 &\n"
        f"echo $! > {pidfile}\n"
    )
    script.chmod(0o755)
    recorded = []
    with Webhook(work, ctx.peers, free_port(), {"restart": str(script)}) as w:
        w.call("restart")

        def hook():
            w.call("restart")
            recorded.append(int(pidfile.read_text()))

        medians["webhook hook"] = statistics.median(timed(n, hook))
    for pid in recorded:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    for k, v in medians.items():
        log(f"  restart {k}: {v:.2f} ms")
    return [
        Row("Restart through the remote interface, until the new pid runs", "median", "ms", "lower",
         medians)
    ]


WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk(ctx, url, script_text, seconds, connections=16):
    script = ctx.work / f"wrk-{time.monotonic_ns()}.lua"
    script.write_text(script_text)
    out = subprocess.run(
        [
            str(ctx.peers / "deb/usr/bin/wrk"),
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        env=dict(os.environ, LD_LIBRARY_PATH=str(ctx.peers / "deb/usr/lib/x86_64-linux-gnu")),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    lat = {p: float(v) * scale[u] for p, v, u in WRK_LATENCY.findall(out)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "p50": lat.get("50"),
        "p99": lat.get("99"),
        "rps": rps,
        "non2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def noop_requests(ctx):
    seconds = 5 if ctx.quick else 10
    results = {}
    with Bosun(ctx.dir("bosun"), ctx.bosun_bin, [], ctx.noop, 16) as b:
        lua = (
            "local i = 0\n"
            "request = function()\n"
            "  i = (i + 1) % 16\n"
            '  return wrk.format("POST", "/v1/projects/p" .. i .. "/actions/noop?wait=10s",\n'
            '    {["Authorization"] = "Bearer bsk_bench_local_only",'
            ' ["Content-Type"] = "application/json"},\n'
            '    \'{"params":{"mode":"noop"}}\')\n'
            "end\n"
        )
        results["bosun"] = wrk(ctx, b.url, lua, seconds)
    work = ctx.dir("supervisord")
    with Supervisord(work, ctx.peers, [], free_port()) as s:
        body = (
            '<?xml version="1.0"?><methodCall><methodName>supervisor.getState</methodName>'
            "<params></params></methodCall>"
        )
        lua = (
            'wrk.method = "POST"\n'
            f"wrk.body = '{body}'\n"
            'wrk.headers["Content-Type"] = "text/xml"\n'
            'wrk.path = "/RPC2"\n'
        )
        results["supervisord"] = wrk(ctx, f"http://127.0.0.1:{s.port}/RPC2", lua, seconds)
    work = ctx.dir("webhook")
    with Webhook(work, ctx.peers, free_port(), {"noop": "/bin/true"}) as w:
        results["webhook"] = wrk(ctx, w.url + "/hooks/noop", "", seconds)
    for k, v in results.items():
        log(f"  no-op {k}: {v}")
    what = "No-op request over the remote interface (wrk, 16 connections)"
    rows = [
        Row(what, "p50", "ms", "lower", {k: v["p50"] for k, v in results.items()}),
        Row(what, "p99", "ms", "lower", {k: v["p99"] for k, v in results.items()}),
        Row(what, "requests/s", "req/s", "higher", {k: v["rps"] for k, v in results.items()}),
        Row(what, "non-2xx answers", "", "lower", {k: v["non2xx"] for k, v in results.items()}),
    ]
    return rows, results
