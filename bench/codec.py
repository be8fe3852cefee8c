"""MoMos stream codec: encode and decode time and the exact description length of the
paper's MLP, against the paper's bound and the trivial 32 bits per weight.

Usage (from the repository root)::

    python bench/codec.py [--repeat 5] [--q 32]

The model is the MLP 3072-256-256-256-256-10 (986,634 parameters, ``nn.Linear`` default
init after ``torch.manual_seed(0)``), projected by ``MoMos(s=2, capacity=0.05, seed=0)``.
``encode`` and ``decode`` are each timed as the median of ``--repeat`` calls after one
untimed warm-up; the decoded weights are checked with ``torch.equal``. Target: encode +
decode <= 0.3 s. Exit status 1 if the round trip is not exact.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from momos import models as momos_models

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

# _util sits beside this script, whether it runs as a script or as bench.codec.
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

from momos.codec import decode, description_length, encode  # noqa: E402
from momos.projection import MoMos  # noqa: E402

TARGET_S = 0.3


def mlp() -> nn.Module:
    """The paper's MLP (3072-256-256-256-256-10, 986,634 parameters), seeded."""
    torch.manual_seed(0)
    return momos_models.mlp()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed calls (median)")
    ap.add_argument("--q", type=int, default=32, help="bits per motif value")
    args = ap.parse_args(argv)

    info = machine_info(extra=["torch", "constriction", "zstandard"])
    print("# MoMos codec: exact description length of the paper's MLP\n")
    print(f"- command: `{command_line()}`")
    print(f"- date: {now_utc()}")
    print(f"- machine: {machine_line(info)}")
    print(f"- load average at start: {os.getloadavg()[0]:.2f}")
    print(f"- kcomplex/momos: {source_revision('momos')}")
    print(f"- torch threads: {torch.get_num_threads()}\n")

    model = mlp()
    mm = MoMos(s=2, capacity=0.05, seed=0)
    mm.project(model)
    n = mm.layout.n
    enc = time_call(lambda: encode(model, mm, q=args.q), repeat=args.repeat)
    data = enc.result
    dec = time_call(lambda: decode(data), repeat=args.repeat)
    exact = all(torch.equal(dec.result[k], v) for k, v in model.state_dict().items())
    dl = description_length(model, mm, q=args.q)
    both = enc.median + dec.median

    print(f"MLP 3072-256-256-256-256-10, {n:,} parameters, s=2, c=0.05, "
          f"m={mm.layout.m:,}, k={mm.motifs.shape[0]:,}, q={args.q}. Times: median of "
          f"{args.repeat} after a warm-up.\n")
    print(markdown_table(
        ["encode (s)", "decode (s)", "encode + decode (s)", "target", "met",
         "round trip exact", "stream bytes"],
        [[fmt_s(enc.median), fmt_s(dec.median), fmt_s(both), f"<= {TARGET_S} s",
          "yes" if both <= TARGET_S else "**no**", "yes" if exact else "**no**",
          f"{len(data):,}"]]))
    print()
    mosaic = "coded (ANS)" if dl.mosaic_coded else "fixed width"
    rows = [
        ["header (prefix, names, shapes, s/k/q, counts' framing)", f"{dl.header_bits:,}"],
        ["motif bank", f"{dl.bank_bits:,}"],
        [f"mosaic as stored: {mosaic}", f"{dl.mosaic_bits:,}"],
        ["mosaic, fixed width m*ceil(log2 k)", f"{dl.mosaic_bits_fixed:,}"],
        ["mosaic, entropy-coded (Elias counts + ANS payload)", f"{dl.mosaic_bits_coded:,}"],
        ["mosaic, ideal (two-part: m*H + counts)", f"{dl.mosaic_bits_ideal:,.0f}"],
        ["leftover tensors", f"{dl.leftover_bits:,}"],
        ["**total (exact, 8 * bytes)**", f"**{dl.total_bits:,}**"],
        ["paper's bound k*s*q + m*ceil(log2 k)", f"{dl.bound_bits:,}"],
        ["trivial 32 * n", f"{dl.trivial_bits:,}"],
        ["RAC of the bound (trivial / bound)", f"{dl.rac_bound:.3f}"],
        ["RAC exact (trivial / total)", f"{dl.rac_exact:.3f}"],
    ]
    print(markdown_table(["item", "bits"], rows))
    print()
    print(markdown_table(["tensor", "numel", "blocks", "bits (attributed)", "bits/weight"],
                         [[r.name, f"{r.numel:,}", f"{r.n_blocks:,}", f"{r.bits:,.0f}",
                           f"{r.bits_per_weight:.3f}"] for r in dl.table().itertuples()]))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
