"""At scale: many projects of many processes, every tool in turn.

Two sizes: 100 projects × 5 instances (500 processes), and 100 projects
× 10 (1,000). Project `app` has one `web` process and the rest `worker`
instances; every other project one program of 5 or 10 instances. The
peers get the same processes as flat programs (supervisord: a program of
`numprocs` each; PM2: an app each).

Measured from the moment the daemon is started: when its remote interface
first answers, and when every process runs (counted in /proc, by the
run's unique `sleep` argument, the same way for every tool); then its RSS,
the median restart of the one `web` process until its new pid runs, and
how long a SIGTERM takes to leave no daemon and no process behind.
"""

import os
import statistics
import time
import urllib.request

from harness import Row, free_port, log
from scenarios import restart_until_new_pid
from tools import KEY, Bosun, Pm2, Program, Supervisord, alive, rss_kib, terminate, wait_for


def running_sleepers(ctx):
    """Live processes whose command line is this run's `sleep`."""
    wanted = b"sleep\x00" + f"9{ctx.run_id}".encode() + b"\x00"
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                if f.read() == wanted and alive(entry.name):
                    count += 1
        except OSError:
            pass
    return count


def healthz(url):
    try:
        req = urllib.request.Request(url + "/healthz", headers={"Authorization": f"Bearer {KEY}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def layout(ctx, per_project):
    """bosun's projects, and the same processes as the peers' flat list."""
    argv = ["sleep", f"9{ctx.run_id}"]
    app = [Program("web", argv), Program("worker", argv, instances=per_project - 1)]
    others = [(f"p{i}", [Program("w", argv, instances=per_project)]) for i in range(1, 100)]
    flat = app + [Program(name, ps[0].argv, ps[0].instances) for name, ps in others]
    return app, others, flat


def measure(ctx, tool, per_project):
    total = 100 * per_project
    app, others, flat = layout(ctx, per_project)
    t0 = time.monotonic()
    if tool == "bosun":
        d = Bosun(ctx.dir(tool), ctx.bosun_bin, app, others=others)
        t0 = d.started
        wait_for("/healthz", lambda: healthz(d.url), 60, 0.001)
    elif tool == "supervisord":
        # Answers its RPC once it has read the config: started inside.
        d = Supervisord(ctx.dir(tool), ctx.peers, flat, free_port(), startsecs=0)
    else:
        # `pm2 start` returns once the daemon has started every app.
        d = Pm2(ctx.dir(tool), ctx.peers, flat)
    serve = (time.monotonic() - t0) * 1000
    got = {"time to serve": serve}
    with d:
        wait_for(f"{total} running", lambda: running_sleepers(ctx) == total, 120, 0.01)
        got["until all run"] = (time.monotonic() - t0) * 1000
        time.sleep(2)
        got["RSS"] = rss_kib(d.pid) / 1024
        n = 3 if ctx.quick else 10
        got["restart one process"] = statistics.median(
            restart_until_new_pid(d, "web") for _ in range(n)
        )
        t1 = time.monotonic()
        terminate(d.pid, 120)
        wait_for("no process left", lambda: running_sleepers(ctx) == 0, 120, 0.01)
        got["shutdown"] = (time.monotonic() - t1) * 1000
    log(f"  {tool} {total} processes: " + ", ".join(f"{k} {v:.0f}" for k, v in got.items()))
    return got


def at_scale(ctx):
    rows = []
    for per_project in (5, 10):
        what = f"100 projects × {per_project} instances ({100 * per_project} processes)"
        results = {}
        for tool in ("bosun", "supervisord", "PM2"):
            if tool == "PM2" and (ctx.quick or per_project > 5):
                continue
            try:
                results[tool] = measure(ctx, tool, per_project)
            except TimeoutError as e:
                # A peer that cannot run this many is a result too; bosun
                # failing is not, and stops the run.
                if tool == "bosun":
                    raise
                log(f"  {tool}: {e}")
                results[tool] = None
        units = {"RSS": "MiB"}
        for measure_name in results["bosun"]:
            values = {
                tool: got[measure_name] if got else "did not finish"
                for tool, got in results.items()
            }
            rows.append(Row(what, measure_name, units.get(measure_name, "ms"), "lower", values))
    return rows
