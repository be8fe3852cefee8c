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
from kcomplex import estimators
from kcomplex.estimators import ESTIMATORS
from kcomplex.io import iter_chunks


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
        pieces = list(iter_chunks(tmp_path / "t.safetensors", name, chunk=16))
        assert [p.size for p in pieces] == [16] * 9 + [11]
        assert np.array_equal(np.concatenate(pieces), w.reshape(-1))


def _entropy_oracle(w):
    """The entropy estimator from its formula, on np.unique's counts."""
    _, counts = np.unique(w.view(np.uint32), return_counts=True)
    n = w.size
    two_part = 32 * counts.size + n * np.log2(n) - float(np.sum(counts * np.log2(counts)))
    return 1 + min(two_part, 32 * n)


@pytest.mark.parametrize("budget", [1, 40, 5000, 10**6])
def test_entropy_compacted_is_exact(monkeypatch, budget):
    # Small budgets compact the gathered values into distinct values and counts often:
    # the bits are those of the sorted values, to the last bit, however they came.
    rng = np.random.default_rng(3)
    arrays = [rng.normal(size=999).astype(np.float32), np.full(3000, 0.25, np.float32),
              np.round(rng.normal(size=7000), 1).astype(np.float32)]
    est = ESTIMATORS["entropy"]
    expected_one, expected_parts = est.tensor(np.concatenate(arrays)), est.total(arrays)
    monkeypatch.setattr(estimators, "_BUDGET", budget)
    pieces = [p for a in arrays for p in np.array_split(a, 7)]
    assert est.bits([est.fold(pieces)]) == expected_one
    assert est.total(pieces) == expected_parts
    assert expected_parts == pytest.approx(_entropy_oracle(np.concatenate(arrays)), rel=1e-12)


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


@pytest.mark.parametrize("slice_size", [1, 2, 7, 1 << 20])
def test_entropy_counts_runs_across_slices(monkeypatch, slice_size):
    # The sorted values are scanned a slice at a time; runs that cross slices count once,
    # in order: the same numbers as the kernel that scans them in one go.
    from kcomplex import _kernels

    monkeypatch.setattr(estimators, "_SLICE", slice_size)
    rng = np.random.default_rng(slice_size)
    for n in (0, 1, 2, 13, 500):
        for values in (np.round(rng.normal(size=n), 1), np.zeros(n), rng.normal(size=n)):
            u = np.sort(values.astype(np.float32).view(np.uint32))
            expected = _kernels.sorted_runs(u)
            assert estimators._distinct(u) == (expected[0], expected[1])
