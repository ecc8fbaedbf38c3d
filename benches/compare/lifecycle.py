"""Crash loops and stops: what each tool does with a program that dies at
once, and with programs that are slow to stop, refuse to, or leave a child.
Each tool runs with its own defaults, as a user who has not tuned it gets.
"""

import os
import signal
import time

from harness import Row, log
from scenarios import TOOLS
from tools import Program, alive, cpu_seconds, wait_for


def crash_loop(ctx):
    seconds = 10 if ctx.quick else 30
    starts, cpu, first = {}, {}, {}
    for tool in TOOLS:
        d0 = ctx.dir(f"{tool}-crash")
        stamps = d0 / "starts"
        crasher = Program("crasher", ["sh", "-c", f"date +%s.%N >> {stamps}; exit 1"])
        t0 = time.time()
        with ctx.start(tool, [crasher]) as d:
            cpu0 = cpu_seconds(d.pid)
            time.sleep(seconds)
            cpu[tool] = (cpu_seconds(d.pid) - cpu0) * 1000
        times = [float(t) for t in stamps.read_text().split()] if stamps.exists() else []
        # From the first start: when each tool started the program again.
        times = [t - times[0] for t in times if t - t0 <= seconds] if times else []
        starts[tool] = len(times)
        first[tool] = ", ".join(f"{t:.2f}" for t in times[:6])
        log(f"  crash loop {tool}: {starts[tool]} starts at {first[tool]} s; CPU {cpu[tool]:.0f} ms")
    what = f"Crash loop: the program exits 1 at once, first {seconds} s"
    return [
        Row(what, "starts", "", "info", starts),
        Row(what, "starts, from the first", "s", "info", first),
        Row(what, "daemon CPU", "ms", "lower", cpu),
    ]


def stop(ctx):
    """Three programs, stopped one at a time by each tool's remote stop. The
    first two trap SIGINT as well as SIGTERM: PM2 stops with SIGINT."""
    rows = {"graceful": {}, "stubborn": {}, "orphans": {}, "graceful_ok": {}}
    for tool in TOOLS:
        d0 = ctx.dir(f"{tool}-stop")
        done, grandchild = d0 / "graceful-done", d0 / "grandchild"
        programs = [
            Program(
                "graceful",
                ["sh", "-c", f"trap 'sleep 2; echo ok > {done}; exit 0' INT TERM; "
                 "while :; do sleep 0.05; done"],
            ),
            Program("stubborn", ["sh", "-c", "trap '' INT TERM; while :; do sleep 0.05; done"]),
            Program(
                "family",
                ["sh", "-c", f"sleep 9{ctx.run_id} & echo $! > {grandchild}; wait"],
            ),
        ]
        with ctx.start(tool, programs) as d:
            for p in programs:
                wait_for(f"{p.name} running", lambda n=p.name: d.pids(n), 60, 0.05)
            wait_for("the grandchild's pid", grandchild.exists, 30)
            time.sleep(0.5)
            for name in ("graceful", "stubborn"):
                pid = d.pids(name)[0]
                t0 = time.perf_counter()
                d.stop(name)
                wait_for(f"{name} gone", lambda: not alive(pid), 60, 0.005)
                rows[name][tool] = time.perf_counter() - t0
            rows["graceful_ok"][tool] = "yes" if done.exists() else "no (killed)"
            d.stop("family")
            time.sleep(1)
            orphan = int(grandchild.read_text())
            rows["orphans"][tool] = int(alive(orphan))
            if alive(orphan):
                os.kill(orphan, signal.SIGKILL)
        log(
            f"  stop {tool}: graceful {rows['graceful'][tool]:.2f} s "
            f"({rows['graceful_ok'][tool]}), stubborn {rows['stubborn'][tool]:.2f} s, "
            f"orphans {rows['orphans'][tool]}"
        )
    what = "Stop, each tool's defaults"
    return [
        Row(what, "app that needs 2 s after SIGTERM: stopped after", "s", "info", rows["graceful"]),
        Row(what, "... and it finished its shutdown", "", "info", rows["graceful_ok"]),
        Row(what, "app that ignores SIGTERM: killed after", "s", "info", rows["stubborn"]),
        Row(what, "script's background child left running", "orphans", "lower", rows["orphans"]),
    ]
