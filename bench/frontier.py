"""Benchmark: the whole ``momos frontier`` on the embedded digits, against its time budget.

Runs ``momos frontier`` (every run of ``momos.frontier.FRONTIER_RUNS``, 30 epochs, the
given seeds) in a fresh process into a temporary directory and reports its wall time, CPU
time and peak memory beside the budget of docs/targets.md (<= 20 min on the 2-core
development machine), and the load average before and after (the machine may be shared).
There is no reference implementation to race: the budget is the reference.

Run: python bench/frontier.py [--seeds 0 1 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import fmt_mb, fmt_s, machine_info, machine_line, markdown_table, now_utc  # noqa: E402

#: docs/targets.md: the whole frontier on digits on the 2-core machine.
BUDGET_S = 20 * 60


def _run(seeds: list[int], out: Path) -> dict:
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "momos", "frontier", "--seeds", *map(str, seeds),
         "--out", str(out), "--no-progress", "--no-plots"],
        capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"momos frontier failed:\n{proc.stderr[-4000:]}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"seeds": seeds, "wall_s": wall, "cpu_s": children.ru_utime + children.ru_stime,
            "peak_rss_bytes": children.ru_maxrss * 1024, "load_before": load_before,
            "load_after": os.getloadavg(), "table": proc.stdout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", help="also write the measurements as JSON here")
    args = parser.parse_args()
    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        result = _run(args.seeds, Path(tmp) / "frontier")
    print(f"# momos frontier on digits, {now_utc()}")
    print(machine_line(info))
    rows = [[", ".join(map(str, result["seeds"])), fmt_s(result["wall_s"]),
             fmt_s(result["cpu_s"]), fmt_mb(result["peak_rss_bytes"]),
             " / ".join(f"{x:.2f}" for x in result["load_before"][:1] + result["load_after"][:1]),
             fmt_s(BUDGET_S), "yes" if result["wall_s"] <= BUDGET_S else "NO"]]
    print(markdown_table(["seeds", "wall (s)", "CPU (s)", "peak RSS", "load before / after",
                          "budget (s)", "within"], rows))
    print(result["table"])
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in result.items() if k != "table"}
                                              | {"machine": info}, indent=1))


if __name__ == "__main__":
    main()
