"""bosun side by side with PM2, supervisord and adnanh/webhook: runs every
scenario for each tool in turn, prints one table with bosun ÷ peer ratios,
and writes it as markdown and JSON. Started by `benches/compare/run`, which
installs the peers; see docs/benchmarks.md for the method.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lifecycle  # noqa: E402
import logs  # noqa: E402
import scenarios  # noqa: E402
import zero_downtime  # noqa: E402

SCENARIOS = {
    "rss": scenarios.idle_rss,
    "restart": scenarios.restart,
    "under-load": zero_downtime.restart_under_load,
    "deploy": zero_downtime.deploy_under_load,
    "noop": lambda ctx: scenarios.noop_requests(ctx)[0],
    "crash": lifecycle.crash_loop,
    "logs": logs.merged_capture,
    "writer": logs.writer_slowdown,
    "stop": lifecycle.stop,
}


def fmt(v):
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def cells(row):
    _, _, _, better, values = row
    bosun = values.get("bosun")
    peers = []
    for tool, v in values.items():
        if tool == "bosun":
            continue
        text = f"{tool} {fmt(v)}"
        numeric = isinstance(v, (int, float)) and isinstance(bosun, (int, float))
        if better != "info" and numeric and v:
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
        what, measure, unit, _, _ = row
        b, p = cells(row)
        label = f"{measure} ({unit})" if unit else measure
        out.append(f"| {what if what != last else ''} | {label} | {b} | {p} |")
        last = what
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--peers", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="fewer iterations, shorter runs")
    ap.add_argument("--only", action="append", choices=sorted(SCENARIOS))
    args = ap.parse_args()
    args.root, args.peers = args.root.resolve(), args.peers.resolve()
    out = args.root / "target/bench-compare"
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ctx = scenarios.Ctx(args.root, args.peers, work, args.quick)
    rows = []
    for name, run in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        scenarios.log(f"== {name}")
        rows += run(ctx)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}",
        "mode": "quick" if args.quick else "full",
    }
    table = markdown(rows, meta)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "rows": [
                    {"scenario": w, "measure": m, "unit": u, "better": b, "values": v}
                    for w, m, u, b, v in rows
                ],
            },
            indent=2,
        )
    )
    print(table)
    scenarios.log(f"written: {out / 'results.md'}, {out / 'results.json'}")


if __name__ == "__main__":
    main()
