"""``momos encode|decode|size``: a thin command line over :mod:`momos.codec`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="momos", description="Mosaic-of-Motifs: project, encode and measure models."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("encode", help="project a checkpoint onto motifs, then encode it")
    e.add_argument("checkpoint", help=".pt/.pth/.bin state dict, .safetensors, .npz")
    e.add_argument("out", help="output .momos file (written atomically)")
    e.add_argument("--s", type=int, required=True, help="block size")
    size = e.add_mutually_exclusive_group(required=True)
    size.add_argument("--capacity", type=float, help="k = floor(capacity * m)")
    size.add_argument("--k", type=int, help="number of motifs")
    e.add_argument("--seed", type=int, default=0, help="seed of the motif sampling")
    e.add_argument("--q", type=int, default=32, help="bits per motif value (32, 16, 2..15)")
    e.add_argument("--exclude", nargs="*", default=(), metavar="TOKEN",
                   help="tensors whose name contains a token are stored as they are")
    d = sub.add_parser("decode", help="decode a .momos file into a .safetensors file")
    d.add_argument("path")
    d.add_argument("out")
    z = sub.add_parser("size", help="itemized size of a .momos file, in bits")
    z.add_argument("path")
    return parser


def _print_sizes(info: dict) -> None:
    n = info["n_weights"]
    rows = [
        ("header", info["header_bits"]),
        ("motif bank", info["bank_bits"]),
        ("mosaic (" + ("entropy-coded" if info["mosaic_coded"] else "fixed width") + ")",
         info["mosaic_bits"]),
        ("leftover tensors", info["leftover_bits"]),
        ("total", info["total_bits"]),
    ]
    print(f"s={info['s']} k={info['k']} q={info['q']} blocks={info['m']:,} weights={n:,}")
    for label, bits in rows:
        print(f"  {label:<28}{bits:>14,} bits")
    print(f"  {'bits per weight':<28}{info['total_bits'] / n:>14.4f}")
    print(f"  {'vs 32-bit weights (RAC)':<28}{32 * n / info['total_bits']:>14.3f}")


def _encode(args: argparse.Namespace) -> None:
    import torch

    from kcomplex import load_weights

    from .codec import encode, stream_info, write_atomic
    from .projection import MoMos

    state = {name: torch.from_numpy(arr.astype("float32"))
             for name, arr in load_weights(args.checkpoint).items()}
    pooled = {k: v for k, v in state.items() if not any(t in k for t in args.exclude)}
    mm = MoMos(args.s, k=args.k, capacity=args.capacity, seed=args.seed)
    mm.project(pooled)
    data = encode(state, mm, q=args.q)
    write_atomic(args.out, data)
    print(f"wrote {args.out}")
    _print_sizes(stream_info(data))


def _decode(args: argparse.Namespace) -> None:
    from safetensors.torch import save

    from .codec import decode, write_atomic

    tensors = decode(Path(args.path).read_bytes())
    write_atomic(args.out, save({k: v.contiguous() for k, v in tensors.items()}))
    print(f"wrote {args.out}: {len(tensors)} tensors")


def _size(args: argparse.Namespace) -> None:
    from .codec import stream_info

    _print_sizes(stream_info(Path(args.path).read_bytes()))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        {"encode": _encode, "decode": _decode, "size": _size}[args.command](args)
    except (OSError, ValueError, TypeError) as err:
        print(f"momos: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
