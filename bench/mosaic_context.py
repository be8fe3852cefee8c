"""Does a context model make the MoMos mosaic shorter than the codec's order-0 code?

Usage (from the repository root)::

    python bench/mosaic_context.py [--epochs 30] [--out mosaic_context.csv]

Trains five MoMos MLP runs on the embedded digits dataset (seed 0, one torch thread) and
measures the final mosaic (one motif index per block) under several codes, in bits:

- ``order0``: the codec's coded mosaic, as ``momos.encoder`` writes it: the Elias-delta
  counts (+1) and payload size (+1) and the ANS payload of ``kcomplex.mdl.ans_encode``;
  checked equal to ``description_length(...).mosaic_bits_coded``.
- ``table``: the part of ``order0`` that is the Elias-delta counts and payload size.
- ``H0``: m times the empirical order-0 entropy (no table, no coder overhead): what
  ``order0`` would cost with a free table.
- ``fixed``: ``m * ceil(log2 k)``.
- ``t_order0``: the same two-part code, one per tensor (a table of k counts each).
- ``kt`` / ``laplace``: adaptive order-0 codes over the whole mosaic, no table. (Laplace
  equals the two-part code with an enumerative count table, ``log2 C(m + k - 1, k - 1)``.)
- ``t_kt`` / ``t_laplace``: adaptive order-0 codes, restarted at every tensor.
- ``o1_kt``: adaptive KT per context, the context being the previous index in the same
  tensor (a tensor's first block has a context of its own).
- ``o1_H``: ``sum`` over contexts of ``n_c H(X | c)`` for the same contexts, i.e. m times
  the empirical conditional entropy: no model cost, a lower bound for any order-1 code.
- ``up_kt`` / ``up_H``: as the two above with the block directly above (same column of
  blocks, previous row) as context, for weight matrices whose rows are whole blocks;
  other tensors use ``t_kt`` (and their order-0 entropy for ``up_H``).

The adaptive lengths are ideal arithmetic-code lengths: a real coder adds a few tens of
bits per stream. The verdict compares each code with ``order0`` (a code is "shorter" when
it saves more than 1 %).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

# _util sits beside this script, whether it runs as a script or as bench.mosaic_context.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (  # noqa: E402
    command_line,
    machine_info,
    machine_line,
    markdown_table,
    now_utc,
    source_revision,
)

import momos  # noqa: E402
from kcomplex.bitstream import elias_delta_length  # noqa: E402
from kcomplex.mdl import ans_encode, coded_bits, entropy_bits, kt_bits, laplace_bits  # noqa: E402
from momos.blocks import Span  # noqa: E402
from momos.codec import description_length  # noqa: E402
from momos.data import Splits  # noqa: E402
from momos.runstate import RunState  # noqa: E402

#: (label, TrainConfig keywords) of the measured runs.
RUNS: tuple[tuple[str, dict], ...] = (
    ("s=2 c=0.05", {"s": 2, "capacity": 0.05}),
    ("s=4 c=0.01", {"s": 4, "capacity": 0.01}),
    ("s=2 k=64", {"s": 2, "k": 64}),
    ("s=4 k=16", {"s": 4, "k": 16}),
    ("s=8 k=256", {"s": 8, "k": 256}),
)

#: Codes in table order; ``order0`` is the reference.
CODES = ("order0", "table", "H0", "fixed", "t_order0", "kt", "laplace", "t_kt", "t_laplace",
         "o1_kt", "o1_H", "up_kt", "up_H")

#: Columns that are parts or lower bounds, not codes of the whole mosaic.
NOT_CODES = ("order0", "table", "H0", "o1_H", "up_H")

#: A code saves "measurably" when it is shorter than ``order0`` by more than this fraction.
THRESHOLD = 0.01


def two_part_coded_bits(indices: np.ndarray, k: int) -> int:
    """Bits of the codec's coded mosaic field for `indices`: Elias-delta counts + 1 and
    payload words + 1, then the ANS payload (as ``momos.encoder.encode_stream``).

    >>> two_part_coded_bits(np.array([0, 0, 0]), 2)  # counts 3+1, 0+1, 0 words+1: 5+1+1
    7
    """
    payload = ans_encode(indices, k)
    counts = np.bincount(indices, minlength=k)
    fields = np.append(counts + 1, len(payload) // 4 + 1)
    return int(np.sum(elias_delta_length(fields))) + 8 * len(payload)


def context_bits(indices: np.ndarray, contexts: np.ndarray, k: int,
                 code: Callable[[np.ndarray, int], float]) -> float:
    """Sum over the distinct `contexts` of ``code`` on the indices that follow each one.

    An adaptive code per context, summed, is the ideal length of one adaptive
    context-model code of the whole sequence (each context keeps its own counts).

    >>> x = np.array([0, 1, 0, 1])  # 4 bits of order-0 entropy, none given the context
    >>> entropy_bits(x), context_bits(x, np.array([2, 3, 2, 3]), 2, entropy_bits)
    (4.0, 0.0)
    """
    if indices.size == 0:
        return 0.0
    order = np.argsort(contexts, kind="stable")
    ctx, idx = contexts[order], indices[order]
    cuts = np.flatnonzero(np.diff(ctx)) + 1
    return float(sum(code(part, k) for part in np.split(idx, cuts)))


def _previous_contexts(spans: Sequence[Span]) -> np.ndarray:
    """The previous index's position in the pool, or -1 at a tensor's first block."""
    prev = np.arange(-1, sum(sp.n_blocks for sp in spans) - 1)
    for sp in spans:
        prev[sp.start] = -1
    return prev


def _above(sp: Span, s: int) -> int | None:
    """Blocks per row of a weight matrix whose rows are whole blocks, else None."""
    if len(sp.shape) != 2 or sp.shape[1] % s or sp.shape[0] < 2:
        return None
    return sp.shape[1] // s


def lengths(mosaic: np.ndarray, k: int, spans: Sequence[Span], s: int) -> dict[str, float]:
    """Every code of the module docstring for one mosaic, in bits."""
    m = mosaic.size
    parts = [mosaic[sp.start : sp.start + sp.n_blocks] for sp in spans]
    prev = _previous_contexts(spans)
    # Context value k stands for "no previous block" (a tensor's first block).
    ctx1 = np.where(prev >= 0, mosaic[np.maximum(prev, 0)], k)
    order0 = two_part_coded_bits(mosaic, k)
    out = {
        "order0": float(order0),
        "table": order0 - coded_bits(mosaic, k),
        "H0": entropy_bits(mosaic, k),
        "fixed": float(m * math.ceil(math.log2(k))),
        "t_order0": float(sum(two_part_coded_bits(p, k) for p in parts)),
        "kt": kt_bits(mosaic, k),
        "laplace": laplace_bits(mosaic, k),
        "t_kt": sum(kt_bits(p, k) for p in parts),
        "t_laplace": sum(laplace_bits(p, k) for p in parts),
        "o1_kt": context_bits(mosaic, ctx1, k, kt_bits),
        "o1_H": context_bits(mosaic, ctx1, k, entropy_bits),
    }
    up_kt = up_h = 0.0
    for sp, part in zip(spans, parts):
        row = _above(sp, s)
        if row is None:
            up_kt += kt_bits(part, k)
            up_h += entropy_bits(part, k)
            continue
        # The first row has no block above: its own context, k.
        ctx = np.concatenate([np.full(row, k), part[:-row]])
        up_kt += context_bits(part, ctx, k, kt_bits)
        up_h += context_bits(part, ctx, k, entropy_bits)
    out["up_kt"], out["up_H"] = up_kt, up_h
    return out


def train_run(kw: dict, epochs: int, splits: Splits) -> tuple[RunState, float, float]:
    """Train one seed-0 MoMos MLP run; returns the state, test accuracy and seconds."""
    cfg = momos.TrainConfig(method="momos", epochs=epochs, estimators=(), seed=0, **kw)
    t0 = time.perf_counter()
    state = RunState(cfg, splits, torch.device("cpu"))
    for _ in range(epochs):
        state.train_epoch()
    return state, state.evaluate("test")[1], time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=30, help="training epochs per run")
    ap.add_argument("--out", type=Path, help="also write the table as CSV here")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error(f"--epochs must be >= 1 (the mosaic exists after one projection), "
                 f"got {args.epochs}")
    torch.set_num_threads(1)

    info = machine_info(extra=["torch", "constriction"])
    print("# MoMos mosaic: order-0 code against adaptive and context codes\n")
    print(f"- command: `{command_line()}`")
    print(f"- date: {now_utc()}")
    print(f"- machine: {machine_line(info)}")
    print(f"- load average at start: {os.getloadavg()[0]:.2f}")
    print(f"- kcomplex/momos: {source_revision('momos')}")
    print(f"- MLP on digits, seed 0, {args.epochs} epochs, torch threads 1\n")

    splits = momos.load_dataset("digits", seed=0)
    rows, verdicts = [], []
    for label, kw in RUNS:
        state, acc, secs = train_run(kw, args.epochs, splits)
        mm = state.momos  # plain MoMos: its spans carry the model's parameter names
        mosaic, k = mm.mosaic.cpu().numpy(), mm.motifs.shape[0]
        got = lengths(mosaic, k, mm.layout.spans, mm.layout.s)
        dl = description_length(state.model, mm, q=32)
        if got["order0"] != dl.mosaic_bits_coded:
            raise RuntimeError(f"{label}: order0 {got['order0']} bits != the codec's "
                               f"{dl.mosaic_bits_coded}: the measurement is not the codec's")
        ref = got["order0"]
        best = min((c for c in CODES if c not in NOT_CODES), key=got.get)
        verdicts.append((label, best, 1 - got[best] / ref, 1 - got["o1_H"] / ref,
                         (ref - got[best]) / dl.total_bits))
        rows.append({"run": label, "k": k, "m": mosaic.size, "test_acc": round(acc, 4),
                     "train_s": round(secs, 1), "total_stream_bits": dl.total_bits,
                     **{c: round(got[c], 1) for c in CODES},
                     **{f"{c}_bpi": round(got[c] / mosaic.size, 4) for c in CODES}})

    print("Mosaic code lengths, bits (bits/index underneath). `table` is part of "
          "`order0`; `H0`, `o1_H` and `up_H` are lower bounds (no model cost), not codes.\n")
    head = ["run", "k", "m", *CODES]
    print(markdown_table(head, [
        [r["run"], r["k"], f"{r['m']:,}", *(f"{r[c]:,.0f}" for c in CODES)] for r in rows]
        + [[r["run"], "", "bits/index", *(f"{r[c + '_bpi']:.3f}" for c in CODES)]
           for r in rows]))
    print()
    print(markdown_table(
        ["run", "test acc", "best code", "saves vs order0", "bound: o1_H saves",
         "saving / whole stream (q=32)"],
        [[label, f"{r['test_acc']:.3f}", best, f"{saved:+.2%}", f"{bound:+.2%}",
          f"{whole:+.2%}"] for (label, best, saved, bound, whole), r in zip(verdicts, rows)]))
    wins = [v for v in verdicts if v[2] > THRESHOLD]
    print()
    if wins:
        print("Measurably shorter (> 1 %) than order0: "
              + "; ".join(f"{lab}: {best} by {saved:.2%}" for lab, best, saved, _, _ in wins))
    else:
        print("No adaptive or context code is shorter than order0 by more than 1 % on any run.")
    if args.out is not None:
        with open(args.out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"\nCSV: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
