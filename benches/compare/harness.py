"""The framework of the side-by-side, apart from the scenarios: the result
row, the run's context, and the report (a markdown table with bosun ÷ peer
ratios, and the same rows as JSON).

A scenario is a function of a `Ctx` that runs every tool in turn and
returns `Row`s. `main` runs the ones asked for and writes
target/bench-compare/results.{md,json}; see docs/benchmarks.md.
"""

import argparse
import json
import os
import platform
import shutil
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools import Bosun, Pm2, Supervisord

BETTER = ("lower", "higher", "info")


@dataclass(frozen=True)
class Row:
    """One measure of one scenario, for every tool that ran it."""

    scenario: str
    measure: str
    unit: str
    # "lower" or "higher" is better; "info" is compared by nobody.
    better: str
    # Tool name -> its figure (a number, or a word such as "yes").
    values: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.better not in BETTER:
            raise ValueError(f"row {self.measure!r}: better must be one of {BETTER}")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ctx:
    """What every scenario gets: the checkout, the peers, a fresh work dir
    per tool run, and whether this is a quick run."""

    def __init__(self, root, peers, work, quick):
        self.root, self.peers, self.quick = root, peers, quick
        self.work = work
        self.bosun_bin = str(root / "target/release/bosun")
        self.noop = root / "target/wasm-guests/wasm32-wasip2/release/fixture_hostile.wasm"
        self.run_id = str(os.getpid())
        self.n = 0

    def dir(self, name):
        self.n += 1
        d = self.work / f"{self.n:02d}-{name}"
        d.mkdir(parents=True)
        return d

    def start(self, tool, programs, **kw):
        """One of the compared supervisors, on a fresh dir, with `programs`."""
        d = self.dir(tool)
        if tool == "bosun":
            return Bosun(d, self.bosun_bin, programs, **kw)
        if tool == "PM2":
            return Pm2(d, self.peers, programs)
        return Supervisord(d, self.peers, programs, free_port(), **kw)


def fmt(v):
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def cells(row: Row):
    bosun = row.values.get("bosun")
    peers = []
    for tool, v in row.values.items():
        if tool == "bosun":
            continue
        text = f"{tool} {fmt(v)}"
        numeric = isinstance(v, (int, float)) and isinstance(bosun, (int, float))
        if row.better != "info" and numeric and v:
            text += f" ({bosun / v:.2f}x)"
        peers.append(text)
    return fmt(bosun) if bosun is not None else "", " · ".join(peers)


def markdown(rows, meta):
    out = [
        f"Run {meta['date']} on {meta['machine']}; {meta['mode']} mode.",
        "",
        "| scenario | measure | bosun | peers (bosun ÷ peer) |",
        "|---|---|---|---|",
    ]
    last = None
    for row in rows:
        b, p = cells(row)
        label = f"{row.measure} ({row.unit})" if row.unit else row.measure
        out.append(f"| {row.scenario if row.scenario != last else ''} | {label} | {b} | {p} |")
        last = row.scenario
    return "\n".join(out) + "\n"


def main(scenarios, description):
    """Run `scenarios` (name -> function of a `Ctx` returning `Row`s) as
    the command line asks, and write the report."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--peers", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="fewer iterations, shorter runs")
    ap.add_argument("--only", action="append", choices=sorted(scenarios))
    args = ap.parse_args()
    args.root, args.peers = args.root.resolve(), args.peers.resolve()
    out = args.root / "target/bench-compare"
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ctx = Ctx(args.root, args.peers, work, args.quick)
    rows = []
    for name, run in scenarios.items():
        if args.only and name not in args.only:
            continue
        log(f"== {name}")
        got = run(ctx)
        if not all(isinstance(r, Row) for r in got):
            raise TypeError(f"scenario {name} must return Rows")
        rows += got
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}",
        "mode": "quick" if args.quick else "full",
    }
    table = markdown(rows, meta)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(
        json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2)
    )
    print(table)
    log(f"written: {out / 'results.md'}, {out / 'results.json'}")
