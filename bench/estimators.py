"""Benchmark: every registry estimator's throughput on one weight vector, beside zstd.

Measures ``kcomplex.ESTIMATORS[name].tensor(w)`` (the estimator's whole-vector protocol in
one part) on ``--n`` Gaussian float32 weights (default 10^7), each the best of
``--repeat`` runs, in one process and one thread; zstd, the default compressor, is the
reference every other row is compared with. Also the distance functions
(``kcomplex.conditional``, ``kcomplex.ncd``) on two halves of the vector, and the
complexity map of a 3000x3000 matrix.

Run: python bench/estimators.py [--n 10000000] [--repeat 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import machine_info, machine_line, markdown_table, now_utc  # noqa: E402

import kcomplex  # noqa: E402


def _best(fn, repeat: int) -> tuple[float, float]:
    """(best seconds, value) over `repeat` calls."""
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the measurements as JSON here")
    args = parser.parse_args()
    info = machine_info()
    load_before = os.getloadavg()[0]
    w = np.random.default_rng(0).normal(size=args.n).astype(np.float32)
    rows, results = [], {}
    for name, est in kcomplex.ESTIMATORS.items():
        est.tensor(w[:100_000])  # compile the kernels, load the tables
        seconds, bits = _best(lambda e=est: e.tensor(w), args.repeat)
        results[name] = {"seconds": seconds, "bits": bits}
    zstd = results["zstd"]["seconds"]
    for name, r in results.items():
        rows.append([name, f"{r['seconds']:.3f}", f"{args.n / r['seconds'] / 1e6:.1f}",
                     f"{r['seconds'] / zstd:.1f}x", f"{r['bits'] / args.n:.4f}",
                     "yes" if kcomplex.ESTIMATORS[name].mergeable else "no"])
    half = args.n // 2
    a, b = w[:half], w[half:]
    for label, fn in (("conditional zstd (b given a)", lambda: kcomplex.conditional(b, a)),
                      ("ncd zstd (a, b)", lambda: kcomplex.ncd(a, b))):
        seconds, value = _best(fn, args.repeat)
        results[label] = {"seconds": seconds, "value": value}
        rows.append([label, f"{seconds:.3f}", f"{args.n / seconds / 1e6:.1f}",
                     f"{seconds / zstd:.1f}x", f"{value:.4f}", "-"])
    side = 3000
    matrix = np.random.default_rng(1).normal(size=(side, side)).astype(np.float32)
    kcomplex.complexity_map(matrix[:64, :64])
    seconds, cmap = _best(lambda: kcomplex.complexity_map(matrix), args.repeat)
    results["complexity_map 3000x3000"] = {"seconds": seconds, "total": float(cmap.sum())}
    rows.append(["complexity_map 3000x3000", f"{seconds:.3f}",
                 f"{side * side / seconds / 1e6:.1f}", "-", f"{cmap.sum() / side**2:.4f}", "-"])
    print(f"# kcomplex estimators on {args.n:,} Gaussian float32 weights, {now_utc()}")
    print(machine_line(info))
    print(f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}; "
          f"best of {args.repeat}; one thread (each estimator alone)")
    print(markdown_table(["estimator", "seconds", "M weights/s", "time / zstd's",
                          "bits per weight (ncd: value)", "mergeable"], rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results | {"machine": info}, indent=1,
                                              default=float))


if __name__ == "__main__":
    main()
