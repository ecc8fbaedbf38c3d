"""bosun side by side with PM2, supervisord and adnanh/webhook: the
scenarios, by name. Each runs every tool in turn and returns `harness.Row`s;
`harness` runs them and writes the table (bosun ÷ peer ratios) as markdown
and JSON. Started by `benches/compare/run`, which installs the peers; see
docs/benchmarks.md for the method.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import lifecycle  # noqa: E402
import logs  # noqa: E402
import scale  # noqa: E402
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
    "scale": scale.at_scale,
}


if __name__ == "__main__":
    harness.main(SCENARIOS, __doc__)
