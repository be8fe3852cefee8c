"""Streamed analysis on one machine (kcomplex.distributed.analyze without a client):
the report equals kcomplex.analyze whatever the chunk size, and memory stays bounded."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

import kcomplex
from kcomplex import distributed as kd
from kcomplex.estimators import _entropy_bits, _entropy_tensor, _entropy_total
from kcomplex.io import _iter_chunks


def assert_same(report, reference):
    pd.testing.assert_frame_equal(report.table, reference.table, check_exact=True)
    assert report.meta == reference.meta


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    rng = np.random.default_rng(0)
    weights = {
        "a.weight": rng.normal(size=(37, 29)).astype(np.float32),
        "a.bias": rng.normal(size=5).astype(np.float32),
        "b.weight": np.round(rng.normal(size=(50, 41)), 2).astype(np.float16),
        "c.weight": rng.normal(size=1003),
    }
    out = tmp_path_factory.mktemp("stream") / "model.safetensors"
    save_file(weights, out)
    return out


@pytest.mark.parametrize("chunk", [12, 100, kd.CHUNK])
def test_streamed_equals_analyze(path, chunk):
    # Chunks on and off the BDM block grid; the default reads every tensor whole.
    assert_same(kd.analyze(path, "all", chunk=chunk), kcomplex.analyze(path, "all"))


def test_streamed_drop_nonfinite(tmp_path):
    w = np.random.default_rng(1).normal(size=(30, 40)).astype(np.float32)
    w[[0, 7, 29], [3, 3, 39]] = [np.nan, np.inf, -np.inf]
    save_file({"w": w, "v": np.full(3, np.nan, np.float32)}, tmp_path / "nan.safetensors")
    reference = kcomplex.analyze(tmp_path / "nan.safetensors", "all", nonfinite="drop")
    assert_same(kd.analyze(tmp_path / "nan.safetensors", "all", nonfinite="drop", chunk=50),
                reference)
    assert "empty: skipped" in reference.table["notes"].iloc[0]


@pytest.mark.parametrize("order", ["C", "F"])
def test_streamed_npy_and_npz(tmp_path, order):
    w = np.asarray(np.random.default_rng(2).normal(size=(60, 70)), order=order)
    np.save(tmp_path / "w.npy", w)
    np.savez(tmp_path / "w.npz", w=w, v=w[:3])
    for f in ("w.npy", "w.npz"):
        assert_same(kd.analyze(tmp_path / f, ["bdm", "gzip", "entropy"], chunk=500),
                    kcomplex.analyze(tmp_path / f, ["bdm", "gzip", "entropy"]))


def test_chunks_of_every_float_dtype(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    t = torch.randn(5, 31)
    save_torch({n: t.to(getattr(torch, n)) for n in ("bfloat16", "float16", "float64")},
               tmp_path / "t.safetensors")
    whole = kcomplex.load_weights(tmp_path / "t.safetensors")
    for name, w in whole.items():
        pieces = list(_iter_chunks(tmp_path / "t.safetensors", name, chunk=16))
        assert [p.size for p in pieces] == [16] * 9 + [11]
        assert np.array_equal(np.concatenate(pieces), w.reshape(-1))


@pytest.mark.parametrize("budget", [1, 40, 5000, 10**6])
def test_entropy_in_passes_is_exact(budget):
    # Small budgets force many passes and bins counted by their low 16 bits.
    rng = np.random.default_rng(3)
    arrays = [rng.normal(size=999).astype(np.float32), np.full(3000, 0.25, np.float32),
              np.round(rng.normal(size=7000), 1).astype(np.float32)]
    whole = np.concatenate(arrays)
    (distinct, nlogn), = kd._entropy_parts(lambda: iter(arrays), 0, [0], budget)
    assert _entropy_bits(whole.size, distinct, nlogn) == _entropy_tensor(whole)
    distinct, nlogn = 0, 0.0
    for d, s in kd._entropy_parts(lambda: iter(arrays), 3, range(8), budget):
        distinct, nlogn = distinct + d, nlogn + s
    assert _entropy_bits(whole.size, distinct, nlogn) == _entropy_total(arrays)


def _write_big(path, tensors, piece=1 << 22):
    """A float32 .safetensors file written piece by piece, never whole in memory."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        for shape in tensors.values():
            left = int(np.prod(shape))
            while left:
                fh.write(rng.standard_normal(min(piece, left), dtype=np.float32).tobytes())
                left -= min(piece, left)
    return offset


def test_peak_memory_well_below_the_file(tmp_path):
    big = tmp_path / "big.safetensors"
    size = _write_big(big, {"embed": (12_000, 4_096), "head": (4_000, 4_096)})  # 256 MiB
    save_file({"w": np.ones(100, np.float32)}, tmp_path / "tiny.safetensors")
    code = textwrap.dedent(f"""
        import resource, kcomplex.distributed as kd
        kd.analyze({str(tmp_path / "tiny.safetensors")!r}, ["bdm", "zstd"])  # compile, tables
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report = kd.analyze({str(big)!r}, ["bdm", "zstd"], chunk=1 << 22)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((peak - base) * 1024, report.total["numel"])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    grown, numel = int(out[0]), int(out[1])
    assert numel == size // 4
    assert grown < size / 4, f"peak memory grew by {grown / 2**20:.0f} MiB for a 256 MiB file"
