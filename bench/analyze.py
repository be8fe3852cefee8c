"""Benchmark: ``kcomplex.analyze`` on a large checkpoint, and the compressors' throughput.

Writes a safetensors checkpoint of ``--params`` float32 weights (default 10^8, Gaussian,
in tensors of 4M weights like the layers of a mid-sized model), then analyzes it with the
default estimators in a fresh process and reports the wall time and the peak memory over
the interpreter's baseline, against the targets of docs/targets.md (<= 15 s, <= 2x the
weights). The compressors' throughput is measured on 10^7 weights, one codec at a time;
the reference for each is the standard library (or zstandard) called directly on the
same bytes, which is what kcomplex must not be slower than.

Run: python bench/analyze.py [--params 100000000] [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import lzma
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (  # noqa: E402
    RSS_PRELUDE,
    fmt_mb,
    fmt_s,
    machine_info,
    machine_line,
    markdown_table,
    now_utc,
    run_python,
)


def write_checkpoint(path: Path, params: int, seed: int = 0) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors, left, i = {}, params, 0
    while left:
        n = min(left, 1 << 22)
        tensors[f"layers.{i}.weight"] = (rng.standard_normal(n, dtype=np.float32) * 0.02)
        left -= n
        i += 1
    save_file(tensors, str(path))


ANALYZE = RSS_PRELUDE + '''
import kcomplex
from kcomplex.io import load_weights
path = sys.argv[1] if len(sys.argv) > 1 else {path!r}
kcomplex.analyze({{"warm": __import__("numpy").ones(100, "f4")}})  # compile kernels
base = _cur()
t0 = time.perf_counter()
weights = load_weights(path)
t1 = time.perf_counter()
report = kcomplex.analyze(weights, progress=False)
t2 = time.perf_counter()
total = report.total
print(json.dumps({{"load_s": t1 - t0, "analyze_s": t2 - t1, "peak_over_base": _peak() - base,
                  "bits": {{e: float(total[e + "_bits"]) for e in report.estimators}},
                  "numel": int(total["numel"])}}))
'''


def bench_analyze(params: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        write_checkpoint(path, params)
        return run_python(ANALYZE.format(path=str(path)), timeout=1800)


def bench_codecs(n: int) -> list[list]:
    from kcomplex.compressors import compressed_bits

    w = (np.random.default_rng(1).standard_normal(n, dtype=np.float32) * 0.02)
    raw = w.tobytes()
    mb = len(raw) / 1e6
    reference = {
        "gzip": lambda: gzip.compress(raw, compresslevel=9, mtime=0),
        "bz2": lambda: bz2.compress(raw, 9),
        "lzma": lambda: lzma.compress(raw, preset=9),
        "zstd": lambda: _zstd_stream(raw),
    }
    rows = []
    for codec, ref in reference.items():
        level = 3 if codec == "zstd" else None
        t = time.perf_counter()
        ref_bits = 8 * len(ref())
        t_ref = time.perf_counter() - t
        t = time.perf_counter()
        ours = compressed_bits(w, codec=codec, level=level)
        t_ours = time.perf_counter() - t
        rows.append([f"{codec}" + {"gzip": " (level 9)", "bz2": " (level 9)", "lzma": " (preset 9)",
                                     "zstd": " (level 3)"}[codec],
                     f"{mb / t_ref:.1f}", f"{mb / t_ours:.1f}", f"{ours / n:.3f}",
                     "yes" if ours == ref_bits else f"no ({ours} vs {ref_bits})"])
    return rows


def _zstd_stream(raw: bytes) -> bytes:
    """zstd at level 3 as kcomplex defines it: streamed, no content size, checksum or dict id."""
    import zstandard

    obj = zstandard.ZstdCompressor(
        level=3, write_content_size=False, write_checksum=False, write_dict_id=False
    ).compressobj()
    return obj.compress(raw) + obj.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=10**8)
    parser.add_argument("--codec-params", type=int, default=10**7)
    parser.add_argument("--quick", action="store_true", help="10^6 weights, a smoke run")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    if args.quick:
        args.params, args.codec_params = 10**6, 10**5
    info = machine_info()
    print(f"# kcomplex analyze benchmark, {now_utc()}\n\n{machine_line(info)}\n")

    res = bench_analyze(args.params)
    weights_bytes = 4 * args.params
    total_s = res["load_s"] + res["analyze_s"]
    print(markdown_table(
        ["work", "load", "analyze", "total", "peak memory over baseline", "x weights",
         "target", "met"],
        [[f"analyze {args.params:,} params (bdm, zstd, entropy)", fmt_s(res["load_s"]),
          fmt_s(res["analyze_s"]), fmt_s(total_s), fmt_mb(res["peak_over_base"]),
          f"{res['peak_over_base'] / weights_bytes:.2f}", "<= 15 s, <= 2x",
          "yes" if total_s <= 15 and res["peak_over_base"] <= 2 * weights_bytes else "no"]],
    ))
    print("\nbits of the whole vector: " + ", ".join(
        f"{k} {v / res['numel']:.3f} bits/param" for k, v in res["bits"].items()))

    rows = bench_codecs(args.codec_params)
    print(f"\nCompressor throughput on {args.codec_params:,} float32 weights (MB/s of input):\n")
    print(markdown_table(
        ["codec", "reference MB/s", "kcomplex MB/s", "bits/param", "identical bits"], rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"analyze": res, "codecs": rows}, indent=2))


if __name__ == "__main__":
    main()
