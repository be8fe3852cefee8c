"""Benchmark: ``kcomplex.analyze`` in one process vs on a local Dask cluster.

Writes a multi-file safetensors checkpoint (``--files`` shards with an index, Gaussian
float32 weights in tensors of 4M weights, ``--bytes`` in all), then runs each estimator
alone, per tensor and in total: single-process ``kcomplex.analyze`` of the loaded
weights (the reference; its time includes reading the files) and
``kcomplex.distributed.analyze`` of the index on ``LocalCluster(--workers)`` processes.
Prints both times, the throughput in seconds per GB of checkpoint, and checks that the
two reports are equal.

Run: python bench/distributed.py [--bytes 256e6] [--files 4] [--workers 2]
     [--estimators bdm,entropy,zstd,gzip]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _util import command_line, machine_info, machine_line, markdown_table, now_utc  # noqa: E402

# This script is named distributed.py: off the path, so that `import distributed` finds dask's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import kcomplex  # noqa: E402
from kcomplex import distributed as kd  # noqa: E402

TENSOR = 1 << 22  # weights per tensor


def write_checkpoint(root: Path, n_bytes: float, n_files: int) -> Path:
    """Shards ``model-0000i-of-0000n.safetensors`` and their index; returns the index."""
    rng = np.random.default_rng(0)
    n_tensors = max(n_files, round(n_bytes / 4 / TENSOR))
    weight_map = {}
    for f in range(n_files):
        name = f"model-{f + 1:05d}-of-{n_files:05d}.safetensors"
        tensors = {f"layers.{t}.weight": rng.standard_normal(TENSOR, dtype=np.float32)
                   .reshape(1024, -1) for t in range(f, n_tensors, n_files)}
        save_file(tensors, root / name)
        weight_map.update(dict.fromkeys(tensors, name))
    index = root / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bytes", type=float, default=256e6)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--estimators", default="bdm,entropy,zstd,gzip")
    args = parser.parse_args()
    print(f"# {command_line()}  ({now_utc()})")
    print(f"machine: {machine_line(machine_info(['dask', 'distributed']))}")
    with tempfile.TemporaryDirectory() as tmp:
        index = write_checkpoint(Path(tmp), args.bytes, args.files)
        shards = sorted(Path(tmp).glob("*.safetensors"))
        gb = sum(p.stat().st_size for p in shards) / 1e9
        print(f"checkpoint: {len(shards)} files, {gb:.3f} GB")
        tiny = Path(tmp) / "tiny.safetensors"
        save_file({"w": np.ones(100, np.float32)}, tiny)
        kcomplex.analyze(tiny, "all")  # compile the kernels, load the tables
        rows = []
        with kd.connect(workers=args.workers) as client:
            kd.analyze(tiny, "all", client=client)  # the same on the workers
            for name in args.estimators.split(","):
                start = time.perf_counter()
                weights = {}
                for p in shards:
                    weights.update(kcomplex.load_weights(p))
                single = kcomplex.analyze(weights, [name])
                t_single = time.perf_counter() - start
                del weights
                start = time.perf_counter()
                dist = kd.analyze(index, [name], client=client)
                t_dist = time.perf_counter() - start
                pd.testing.assert_frame_equal(single.table, dist.table, check_exact=True)
                rows.append([name, f"{t_single:.2f}", f"{t_single / gb:.1f}", f"{t_dist:.2f}",
                             f"{t_dist / gb:.1f}", f"{t_single / t_dist:.2f}", "yes"])
    print(markdown_table(
        ["estimator", "1 process [s]", "1 process [s/GB]",
         f"{args.workers} workers [s]", f"{args.workers} workers [s/GB]", "speed-up",
         "reports equal"], rows))


if __name__ == "__main__":
    main()
