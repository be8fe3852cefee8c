"""``kcomplex analyze|compare|distance|map|trajectory``: a thin command line over the
library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import distributed
from .analysis import analyze, compare
from .distance import DISTANCE_DEFAULT, DISTANCE_ESTIMATORS, distance_matrix
from .estimators import ESTIMATORS, PRESETS, spelling_help
from .files import write_atomic
from .io import load_weights
from .plot import plot_distance_matrix
from .regions import complexity_map, plot_complexity_map
from .trajectory import plot_trajectory, trajectory

__all__ = ["main"]


def _estimator_help() -> str:
    lines = []
    for name, est in ESTIMATORS.items():
        lines.append(f"  {name:<8} {est.description}")
        lines += [f"  {'':<8}   {key.describe()}" for key in est.keys]
    lines += [f"  {name:<8} preset: {', '.join(names)}" for name, names in PRESETS.items()]
    return ("estimators (all in bits), with the keys each takes:\n" + "\n".join(lines)
            + "\n\n" + spelling_help())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kcomplex",
        description="Algorithmic complexity of neural-network weights, in bits.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_estimator_help(),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--estimators", "-e", nargs="+", default=["default"], metavar="NAME",
        help="estimators, NAME or NAME:KEY=VALUE,..., or a preset (default, paper, all); "
             "see below",
    )
    common.add_argument("--all-params", action="store_true",
                        help="include frozen parameters of modules (requires_grad=False)")
    common.add_argument("--json", metavar="OUT", help="write the table and metadata as JSON")
    common.add_argument("--csv", metavar="OUT", help="write the table as CSV")
    common.add_argument("--plot", metavar="OUT.png", help="draw the figure to a file")
    common.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_argument("--workers", type=_positive, metavar="N",
                        help="threads in this process (default: one per CPU; 1: sequential)")

    p = sub.add_parser("analyze", parents=[common], help="bits per tensor and in total",
                       epilog=_estimator_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help=".npy, .npz, .pt/.pth/.bin state dict, .safetensors, or a sharded "
                        "checkpoint's model.safetensors.index.json")
    p.add_argument("--drop-nonfinite", action="store_true",
                   help="leave NaN/Inf weights out (reported) instead of failing")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on this Dask scheduler (workers read the files themselves)")
    where.add_argument("--dask-workers", type=_positive, metavar="N",
                       help="run on a local Dask cluster of N worker processes")
    c = sub.add_parser("compare", parents=[common], help="ratios of trained to init",
                       epilog=_estimator_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("init", metavar="INIT", help="weights a (say, the initialization)")
    c.add_argument("trained", metavar="TRAINED", help="weights b (say, trained): ratio = b / a")
    c.add_argument("--strict", action="store_true",
                   help="fail if a tensor is in one file only or its shapes differ, "
                        "instead of listing it")
    d = sub.add_parser("distance", help="normalized compression distance between weight "
                                        "files (kcomplex.distance)")
    d.add_argument("paths", nargs="+", metavar="PATH", help="two or more weight files")
    d.add_argument("--estimator", default=DISTANCE_DEFAULT, choices=DISTANCE_ESTIMATORS,
                   help="one of %(choices)s (default: %(default)s)")
    d.add_argument("--asymmetric", action="store_true",
                   help="compute NCD(x, y) and NCD(y, x) both (default: the upper triangle, "
                        "mirrored)")
    d.add_argument("--csv", metavar="OUT", help="write the matrix as CSV")
    d.add_argument("--plot", metavar="OUT.png", help="draw the heatmap to a file")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    t = sub.add_parser("trajectory", parents=[common],
                       help="every estimator per checkpoint of a run, in training order",
                       epilog=_estimator_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("paths", nargs="+", metavar="PATH",
                   help="checkpoint files, or one directory of them; ordered by the epoch or "
                        "step number in their names, else as given")
    m = sub.add_parser("map", help="complexity map of one weight matrix: its 2-D block "
                                   "decomposition shared over its blocks "
                                   "(kcomplex.complexity_map)")
    m.add_argument("path", metavar="PATH", help="a weight file")
    m.add_argument("--tensor", required=True, metavar="NAME",
                   help="the 2-D tensor to map (required: a file holds several)")
    m.add_argument("--block", type=_positive, default=4, metavar="SIDE",
                   help="block side, 2 to 4 (default: 4)")
    m.add_argument("--csv", metavar="OUT", help="write the map as CSV")
    m.add_argument("--plot", metavar="OUT.png", help="draw the heatmap to a file")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _estimators(names: list[str]) -> str | list[str]:
    return names[0] if len(names) == 1 and names[0] in PRESETS else names


def _out(path: str | None, tag: str | None) -> str | None:
    """``OUT`` for one input; ``OUT`` with the input's stem inserted for several."""
    if path is None or tag is None:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{tag}{p.suffix}"))


def _emit(result, args: argparse.Namespace, title: str, tag: str | None = None) -> None:
    print(title)
    print(result)
    if args.json:
        result.to_json(_out(args.json, tag))
    if args.csv:
        result.to_csv(_out(args.csv, tag))
    if args.plot:
        result.plot(_out(args.plot, tag))


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    """The Dask client the options ask for, or None."""
    if args.scheduler is None and args.dask_workers is None:
        yield None
        return
    with distributed.connect(args.scheduler, workers=args.dask_workers) as client:
        yield client


def _distance(args: argparse.Namespace, progress: bool | None) -> None:
    if len(args.paths) < 2:
        raise ValueError("distance needs two or more weight files")
    frame = distance_matrix([Path(p) for p in args.paths], args.estimator,
                            symmetric=not args.asymmetric, progress=progress)
    print(f"== NCD ({args.estimator})")
    print(frame.to_string(float_format="{:.4f}".format))
    if args.csv:
        write_atomic(args.csv, frame.to_csv().encode())
    if args.plot:
        plot_distance_matrix(frame, args.plot)


def _trajectory(args: argparse.Namespace, progress: bool | None) -> None:
    paths = args.paths[0] if len(args.paths) == 1 else args.paths
    table = trajectory(paths, _estimators(args.estimators), trainable_only=not args.all_params,
                       progress=progress, workers=args.workers)
    print(table.to_string(float_format="{:,.4f}".format))
    if args.json:
        write_atomic(args.json, table.to_json(orient="index", indent=1).encode())
    if args.csv:
        write_atomic(args.csv, table.to_csv().encode())
    if args.plot:
        plot_trajectory(table, args.plot)


def _map(args: argparse.Namespace) -> None:
    weights = load_weights(args.path)
    if args.tensor not in weights:
        raise ValueError(f"{args.path} has no tensor {args.tensor!r}; it has "
                         f"{', '.join(list(weights)[:8])}{' ...' if len(weights) > 8 else ''}")
    cmap = complexity_map(weights[args.tensor], block=(args.block, args.block))
    print(f"== {args.path} {args.tensor}: {cmap.shape[0]}x{cmap.shape[1]} blocks of "
          f"{args.block}x{args.block}, total {cmap.sum():.2f} bits (the matrix's 2-D block "
          "decomposition)")
    if args.csv:
        import pandas as pd

        write_atomic(args.csv, pd.DataFrame(cmap).to_csv(index=False).encode())
    if args.plot:
        plot_complexity_map(cmap, args.plot)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    progress = False if getattr(args, "no_progress", False) else None
    try:
        if args.command == "analyze":
            nonfinite = "drop" if args.drop_nonfinite else "raise"
            with _client(args) as client:
                for path in args.paths:
                    report = analyze(
                        path, _estimators(args.estimators),
                        trainable_only=not args.all_params, nonfinite=nonfinite,
                        progress=progress, client=client, workers=args.workers,
                    )
                    tag = Path(path).stem if len(args.paths) > 1 else None
                    _emit(report, args, f"== {path}", tag)
        elif args.command == "compare":
            cmp = compare(args.init, args.trained, _estimators(args.estimators),
                          trainable_only=not args.all_params, strict=args.strict,
                          progress=progress, workers=args.workers)
            _emit(cmp, args, f"== a: {args.init}  b: {args.trained}  (ratio = b / a)")
        elif args.command == "distance":
            _distance(args, progress)
        elif args.command == "trajectory":
            _trajectory(args, progress)
        else:
            _map(args)
    except (OSError, ValueError, TypeError, ImportError) as err:
        print(f"kcomplex: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
