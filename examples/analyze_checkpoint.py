"""How complex is a checkpoint? Bits per tensor and in total, and init vs trained ratios.

Reads a weights file (.safetensors, .pt/.pth/.bin state dict, .npy, .npz), prints
``kcomplex.analyze``'s table (one row per tensor, the last ``(all)`` row the whole weight
vector) and a line per estimator for the whole vector: bits, bits per weight, and the
compression rate 32 n / bits for the compressors. ``--compare`` adds the ratios of a
second checkpoint to the first (the paper's BDM(trained) / BDM(init) with the
initialization first); ``--plot`` draws the table (needs matplotlib).

Without a path it writes a demo checkpoint, a randomly initialized MLP, to a temporary
directory and analyzes that. See docs/tutorial-measuring.md for how to read the numbers.

Run:
    python examples/analyze_checkpoint.py                          # demo checkpoint
    python examples/analyze_checkpoint.py model.safetensors --plot bits.png
    python examples/analyze_checkpoint.py init.safetensors --compare final.safetensors
    python examples/analyze_checkpoint.py --smoke                  # a few seconds
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

import kcomplex


def demo_checkpoint(directory: Path, sizes: list[int]) -> Path:
    """An MLP with ``sizes`` units per layer, uniform init in +-1/sqrt(fan_in) (torch's)."""
    rng = np.random.default_rng(0)
    tensors = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        bound = 1 / np.sqrt(fan_in)
        tensors[f"fc{i}.weight"] = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        tensors[f"fc{i}.bias"] = rng.uniform(-bound, bound, fan_out).astype(np.float32)
    path = directory / "demo.safetensors"
    save_file(tensors, str(path))
    return path


def totals(report: kcomplex.Report) -> None:
    """One line per estimator for the whole weight vector."""
    total = report.total
    n = int(total["numel"])
    print(f"whole weight vector: {n:,} weights, {int(total['raw_bits']):,} raw bits "
          "(32 per weight)")
    for est in report.estimators:
        bits = total[f"{est}_bits"]
        # Rates only for real codes: BDM measures the signs, not the float32 bytes.
        rate = f", rate {total['raw_bits'] / bits:.3f}" if est in kcomplex.CODECS else ""
        print(f"  {est:<8}{bits:>14,.1f} bits  {bits / n:8.4f} bits per weight{rate}")


def analyze_and_compare(path, estimators, plot: str | None, other: str | None) -> None:
    """The table of ``path`` and its totals; with ``other``, the ratios other / path."""
    report = kcomplex.analyze(path, estimators, progress=False)
    print(report)
    totals(report)
    if plot:
        report.plot(plot)
        print(f"wrote {plot}")
    if other:
        cmp = kcomplex.compare(path, other, estimators, progress=False)
        print(cmp)
        print(f"whole weight vector, {other} over {path}:")
        for row in cmp.table[cmp.table["tensor"] == "(all)"].itertuples():
            print(f"  {row.estimator:<8} ratio {row.ratio:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="weights file; default: a demo checkpoint")
    parser.add_argument("--compare", metavar="OTHER", help="second checkpoint: ratios OTHER / PATH")
    parser.add_argument("--estimators", nargs="+", default=["paper"],
                        help="estimator names or a preset: default, paper (default), all")
    parser.add_argument("--plot", metavar="OUT.png", help="draw the per-tensor table")
    parser.add_argument("--smoke", action="store_true",
                        help="a small demo checkpoint and the fast estimators bdm and gzip")
    args = parser.parse_args()

    estimators = ["bdm", "gzip"] if args.smoke else args.estimators
    if len(estimators) == 1:  # a preset name or a single estimator
        estimators = estimators[0]
    with tempfile.TemporaryDirectory() as tmp:  # holds the demo checkpoint, if any
        path = args.path
        if path is None:
            sizes = [64, 32, 10] if args.smoke else [784, 256, 256, 10]
            path = demo_checkpoint(Path(tmp), sizes)
            print(f"demo checkpoint: {path}")
        analyze_and_compare(path, estimators, args.plot, args.compare)


if __name__ == "__main__":
    main()
