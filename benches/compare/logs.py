"""Log capture: whole lines or not, and what capture costs the writer.

- Two writers at once, each writing coloured lines of varying length in
  8 KiB chunks that ignore line boundaries, both into one log file (bosun's
  `merged_log`, PM2's and supervisord's shared log file). Every line a
  writer wrote is recognisable, so a line that is not exactly one of them
  is a broken one, and a line never seen is a lost one.
- One writer flushing after every line, 1M lines: its own run time under
  each tool, against the same writer with stdout to a file and to a pipe
  read by `cat`.
"""

import re
import shlex
import subprocess
import sys
import time

from harness import Row, log
from scenarios import TOOLS
from tools import Program, wait_for

WRITER = r"""
import os, sys, time
me, count, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
if chunk:
    buf = bytearray()
    for seq in range(count):
        pad = "x" * (seq * 7 % 250 + 10)
        buf += f"\x1b[3{me}m{me}:{seq:08d}:{pad}\x1b[0m\n".encode()
        if len(buf) >= chunk:
            os.write(1, bytes(buf[:chunk]))
            del buf[:chunk]
    os.write(1, bytes(buf))
else:
    out = sys.stdout
    for seq in range(count):
        out.write(f"{me}:{seq:08d}:line\n")
        out.flush()
elapsed = time.perf_counter() - t0
with open(sys.argv[4] + ".tmp", "w") as f:
    f.write(str(elapsed))
os.rename(sys.argv[4] + ".tmp", sys.argv[4])
"""

def writer_argv(d0, me, count, chunk, done):
    """The writer, saved in `d0`: `me` writes `count` lines, in `chunk`-byte
    writes (0: a flush per line), and reports its run time in `done`."""
    script = d0 / "writer.py"
    script.write_text(WRITER)
    return [sys.executable, str(script), str(me), str(count), str(chunk), str(done)]


LINE = re.compile(r"\x1b\[3(\d)m(\d):(\d{8}):(x+)\x1b\[0m$")


def count_lines(path, writers, count):
    """(broken lines, lost lines) in the log at `path` and its rotated
    files (`path.1`, …: bosun rotates its merged log at 10 MiB)."""
    seen, broken = set(), 0
    files = sorted(path.parent.glob(path.name + "*"))
    for name in files:
        broken += count_file(name, seen)
    return broken, writers * count - len(seen)


def count_file(path, seen):
    broken = 0
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if "\x1b[3" not in line:
                continue  # a tool's own note, not a writer's line
            m = LINE.search(line)
            ok = (
                m is not None
                and line.count("\x1b[3") == 1
                and m.group(1) == m.group(2)
                and len(m.group(4)) == int(m.group(3)) * 7 % 250 + 10
            )
            if ok:
                seen.add((m.group(2), int(m.group(3))))
            else:
                broken += 1
    return broken


def settle(path):
    """Wait until the file stops growing (the tool has written everything)."""
    last = -1
    for _ in range(300):
        size = path.stat().st_size if path.exists() else 0
        if size == last and size > 0:
            return
        last = size
        time.sleep(1)


def merged_capture(ctx):
    # 2 x 150,000 lines of ~160 bytes: 48 MB, within what bosun keeps of a
    # merged log (10 MiB files, 5 rotated), so every line can be counted.
    count = 50_000 if ctx.quick else 150_000
    broken, lost = {}, {}
    for tool in TOOLS:
        d0 = ctx.dir(f"{tool}-logs")
        merged = d0 / "merged.log"
        programs = [
            Program(
                f"w{i}",
                writer_argv(d0, i, count, 8192, d0 / f"done{i}"),
                log=merged,
                restart=False,
            )
            for i in (1, 2)
        ]
        with ctx.start(tool, programs):
            for i in (1, 2):
                wait_for(f"writer {i}", (d0 / f"done{i}").exists, 300, 0.1)
            settle(merged)
        broken[tool], lost[tool] = count_lines(merged, 2, count)
        log(f"  merged log {tool}: {broken[tool]} broken, {lost[tool]} lost")
    what = f"Two writers, ANSI, 8 KiB chunks, {count:,} lines each, one merged log"
    return [
        Row(what, "broken lines", "", "lower", broken),
        Row(what, "lost lines", "", "lower", lost),
    ]


def writer_slowdown(ctx):
    count = 200_000 if ctx.quick else 1_000_000
    d0 = ctx.dir("direct-writer")
    argv = writer_argv(d0, 1, count, 0, d0 / "done")
    with open(d0 / "out.log", "w") as out:
        subprocess.run(
            argv,
            stdout=out,
            check=True,
        )
    base = float((d0 / "done").read_text())
    # The cheapest reader a pipe can have: what any supervisor starts from.
    (d0 / "done").unlink()
    subprocess.run(
        f"{shlex.join(argv)} | cat > {d0 / 'cat.log'}",
        shell=True,
        check=True,
    )
    times = {"stdout to a file": base, "a pipe to cat": float((d0 / "done").read_text())}
    for tool in TOOLS:
        d0 = ctx.dir(f"{tool}-writer")
        program = Program(
            "writer",
            writer_argv(d0, 1, count, 0, d0 / "done"),
            log=d0 / "writer.log",
            restart=False,
        )
        with ctx.start(tool, [program]):
            wait_for("the writer", (d0 / "done").exists, 600, 0.1)
        times[tool] = float((d0 / "done").read_text())
        log(f"  writer {tool}: {times[tool]:.2f} s (direct {base:.2f} s)")
    what = f"A writer flushing every line, {count:,} lines: its run time"
    slow = {k: v / base for k, v in times.items() if k != "stdout to a file"}
    return [
        Row(what, "seconds", "s", "lower", times),
        Row(what, "slowdown vs stdout to a file", "x", "lower", slow),
    ]
