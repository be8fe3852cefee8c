"""Encode a projected model into a .momos file and decode it back, bit for bit.

A MoMos projection leaves every pooled weight equal to a motif, so the model is fully
described by the motif bank, the mosaic (one motif index per block) and whatever MoMos
did not pool (here BatchNorm's running statistics). ``momos.encode`` writes that as one
self-contained byte string (docs/format.md); ``momos.decode`` needs nothing else to
return every tensor. This script checks that the round trip is exact with
``torch.equal`` on every floating tensor of the state dict and prints the itemized size
(``momos.stream_info``), which is the exact description length.

Run:
    python examples/encode_decode.py [--out model.momos] [--s 2] [--capacity 0.05]
    python examples/encode_decode.py --smoke           # a smaller model, a few seconds
"""

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn

import momos
from kcomplex.files import write_atomic


def build(width: int) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, width), nn.BatchNorm1d(width), nn.ReLU(),
                          nn.Linear(width, 10))
    # One forward pass in training mode moves the running statistics away from their
    # initial zeros and ones, so the leftovers hold real values.
    model(torch.randn(256, 64))
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="output .momos file (default: in a temporary directory)")
    parser.add_argument("--s", type=int, default=2, help="block size")
    parser.add_argument("--capacity", type=float, default=0.05, help="k/m")
    parser.add_argument("--width", type=int, default=512, help="hidden units")
    parser.add_argument("--smoke", action="store_true", help="64 hidden units")
    args = parser.parse_args()

    model = build(64 if args.smoke else args.width)
    mm = momos.MoMos(s=args.s, capacity=args.capacity, seed=0)
    stats = mm.project(model)  # in place: the parameters are now motifs
    print(f"projected {stats.k} motifs onto {mm.layout.m:,} blocks of {args.s}")

    with tempfile.TemporaryDirectory() as tmp:  # the default place of the file
        out = Path(args.out) if args.out else Path(tmp) / "model.momos"
        write_atomic(out, momos.encode(model, mm))
        data = out.read_bytes()
    decoded = momos.decode(data)

    state = model.state_dict()
    # num_batches_tracked is an integer counter, not a weight: the format does not store it.
    floating = {name for name, t in state.items() if t.is_floating_point()}
    assert set(decoded) == floating, sorted(set(decoded) ^ floating)
    for name in floating:
        assert torch.equal(decoded[name], state[name]), name
    print(f"decoded {len(decoded)} tensors from {out}: bit-exact equal to the model")

    info = momos.stream_info(data)
    n = info["n_weights"]
    print(f"{len(data):,} bytes for {n:,} values in {info['n_coded_tensors']} pooled and "
          f"{info['n_leftover_tensors']} leftover tensors; mosaic "
          f"{'entropy-coded' if info['mosaic_coded'] else 'fixed width'}")
    for part in ("header", "bank", "mosaic", "leftover", "total"):
        print(f"  {part:<10}{info[part + '_bits']:>12,} bits")
    print(f"  vs 32 bits per value (RAC) {32 * n / info['total_bits']:.3f}")


if __name__ == "__main__":
    main()
