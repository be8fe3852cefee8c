"""MoMos nearest-motif assignment: brute-force chunked GEMM (the reference) and
``momos.assign.nearest_motif`` side by side, in one run.

Usage (from the repository root)::

    python bench/projection.py                  # full reference, about 3 minutes on 2 cores
    python bench/projection.py --fraction 0.0625 # reference on the first 1/16 of the blocks,
                                                 # its time extrapolated linearly (20 s)
    python bench/projection.py --json out.json

The model is the paper's MLP 3072-256-256-256-256-10 (986,634 parameters, ``nn.Linear``
default init after ``torch.manual_seed(0)``). Its trainable parameters are pooled with
``momos.blocks`` and the motif bank is sampled as the reference projection does
(docs/method.md): motif 0 is the zero block, the others are the pool blocks at the first
``k - 1`` positions of ``torch.randperm(m, generator=torch.Generator().manual_seed(0))``,
``k = max(1, min(m, floor(c * m)))``.

Reference: what a straightforward implementation does, on CPU with ``--threads`` torch
threads: for chunks of blocks, ``|b|^2 - 2 b z^T + |z|^2`` by one float64 GEMM, then
``argmin`` over the motifs. Ours: ``nearest_motif(blocks, motifs, method="auto")``, one
untimed warm-up call, then the median of ``--repeat`` calls; ``method="kdtree"`` (scipy's
cKDTree) is timed the same way for comparison. All get the float32 pool and bank. The
assignments are compared index for index (on the blocks the reference computed). The
same GEMM in float32 (faster, but not exact) runs on the first ``--float32-blocks``
blocks: its time is extrapolated, and the blocks it assigns differently are counted.
Exit status 1 if any assignment differs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from momos import models as momos_models

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

# _util sits beside this script, whether it runs as a script or as bench.projection.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (  # noqa: E402
    command_line,
    fmt_s,
    machine_info,
    machine_line,
    markdown_table,
    now_utc,
    source_revision,
    time_call,
)

from momos.assign import nearest_motif  # noqa: E402
from momos.blocks import layout_of, pool_parameters, to_blocks  # noqa: E402

#: (s, c, target seconds) from docs/targets.md
CASES = [(2, 0.05, 0.5), (4, 0.01, 0.3)]
#: Reference times in docs/targets.md ("brute-force chunked GEMM on CPU").
DESIGN_REFERENCE_S = {(2, 0.05): 92.0, (4, 0.01): 11.0}


def mlp() -> nn.Module:
    """The paper's MLP (3072-256-256-256-256-10, 986,634 parameters), seeded."""
    torch.manual_seed(0)
    return momos_models.mlp()


def pool_and_bank(model: nn.Module, s: int, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    tensors = pool_parameters(model)
    layout = layout_of(tensors, s)
    pool = to_blocks(tensors, layout)
    m = pool.shape[0]
    k = max(1, min(m, math.floor(c * m)))
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(0))
    bank = torch.cat([torch.zeros(1, s, dtype=pool.dtype), pool[perm[: k - 1]]])
    return pool, bank


def gemm_argmin(blocks: torch.Tensor, motifs: torch.Tensor, dtype: torch.dtype,
                budget: int = 1 << 28) -> torch.Tensor:
    """The straightforward brute force: chunked GEMM distances, argmin per block."""
    b = blocks.to(dtype)
    z = motifs.to(dtype)
    zn = (z * z).sum(1)
    zt = z.T.contiguous()
    chunk = max(1, budget // (z.shape[0] * b.element_size()))
    out = torch.empty(b.shape[0], dtype=torch.int64)
    for i in range(0, b.shape[0], chunk):
        bc = b[i : i + chunk]
        d = (bc * bc).sum(1, keepdim=True) - 2.0 * (bc @ zt) + zn
        out[i : i + chunk] = d.argmin(1)
    return out


def run_case(model: nn.Module, s: int, c: float, target: float, fraction: float,
             repeat: int, n_f32: int) -> dict:
    pool, bank = pool_and_bank(model, s, c)
    m, k = pool.shape[0], bank.shape[0]
    n_ref = m if fraction >= 1 else max(1, int(round(m * fraction)))

    t0 = time.perf_counter()
    ref = gemm_argmin(pool[:n_ref], bank, torch.float64)
    ref_s = time.perf_counter() - t0

    n32 = min(m, n_f32)
    t0 = time.perf_counter()
    f32 = gemm_argmin(pool[:n32], bank, torch.float32)
    f32_s = time.perf_counter() - t0

    timing = time_call(lambda: nearest_motif(pool, bank, method="auto"),
                       repeat=repeat, warmup=1)
    ours = timing.result
    scipy_timing = time_call(lambda: nearest_motif(pool, bank, method="kdtree"),
                             repeat=repeat, warmup=1)
    return {
        "s": s, "c": c, "m": m, "k": k, "target_s": target,
        "reference_blocks": n_ref, "reference_measured_s": ref_s,
        "reference_s": ref_s * m / n_ref, "reference_extrapolated": n_ref < m,
        "float32_gemm_blocks": n32, "float32_gemm_measured_s": f32_s,
        "float32_gemm_s": f32_s * m / n32,
        "float32_gemm_differ": int((f32 != ours[:n32]).sum()),
        "ours": timing.as_dict(), "speedup": ref_s * m / n_ref / timing.median,
        "kdtree_scipy": scipy_timing.as_dict(),
        "identical": bool(torch.equal(ours[:n_ref], ref)),
        "identical_scipy": bool(torch.equal(scipy_timing.result, ours)),
        "met": bool(torch.equal(ours[:n_ref], ref)) and timing.median <= target,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fraction", type=float, default=1.0,
                    help="share of the blocks the reference runs on (time extrapolated)")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls of ours (median)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (reference)")
    ap.add_argument("--float32-blocks", type=int, default=20_000,
                    help="blocks the (inexact) float32 GEMM runs on (time extrapolated)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if not 0 < args.fraction <= 1:
        ap.error("--fraction must be in (0, 1]")

    torch.set_num_threads(args.threads)
    info = machine_info(extra=["torch", "scipy"])
    print("# MoMos projection: nearest-motif assignment\n")
    print(f"- command: `{command_line()}`")
    print(f"- date: {now_utc()}")
    print(f"- machine: {machine_line(info)}")
    print(f"- load average at start: {os.getloadavg()[0]:.2f}")
    print(f"- kcomplex/momos: {source_revision('momos')}")
    print(f"- torch threads: {torch.get_num_threads()}\n")

    model = mlp()
    n_params = sum(p.numel() for p in model.parameters())
    results = []
    for s, c, target in CASES:
        print(f"running s={s}, c={c} ...", file=sys.stderr, flush=True)
        results.append(run_case(model, s, c, target, args.fraction, args.repeat,
                                args.float32_blocks))

    rows = []
    for r in results:
        ref = fmt_s(r["reference_s"])
        if r["reference_extrapolated"]:
            ref += (f" (extrapolated from {r['reference_blocks']:,} blocks:"
                    f" {fmt_s(r['reference_measured_s'])})")
        rows.append([
            f"s={r['s']}, c={r['c']}", f"{r['m']:,}", f"{r['k']:,}",
            fmt_s(DESIGN_REFERENCE_S[(r["s"], r["c"])]), ref, fmt_s(r["float32_gemm_s"]),
            fmt_s(r["ours"]["median_s"]), fmt_s(r["ours"]["min_s"]),
            f"{r['speedup']:,.0f}x", "yes" if r["identical"] else "**no**",
            f"<= {r['target_s']} s", "yes" if r["met"] else "**no**",
        ])
    print(f"MLP 3072-256-256-256-256-10, {n_params:,} parameters. Times in seconds; "
          f"ours = `nearest_motif(method=\"auto\")`, median of {args.repeat} after a "
          "warm-up; speed-up and identity against the float64 GEMM of this run.\n")
    print(markdown_table(
        ["case", "blocks m", "motifs k", "targets.md reference", "float64 GEMM (this run)",
         "float32 GEMM (extrapolated)", "ours median", "ours min", "speed-up",
         "identical assignment", "target", "met"], rows))
    print()
    for r in results:
        print(f"- s={r['s']}, c={r['c']}: the float32 GEMM ran on the first "
              f"{r['float32_gemm_blocks']:,} blocks ({fmt_s(r['float32_gemm_measured_s'])} s) "
              f"and assigned {r['float32_gemm_differ']:,} of them differently from the "
              f"exact assignment; `method=\"kdtree\"` (scipy cKDTree): median "
              f"{fmt_s(r['kdtree_scipy']['median_s'])} s, min "
              f"{fmt_s(r['kdtree_scipy']['min_s'])} s, same assignment as ours: "
              f"{'yes' if r['identical_scipy'] else '**no**'}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "results": results}, fh, indent=2)
    return 0 if all(r["identical"] and r["identical_scipy"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
