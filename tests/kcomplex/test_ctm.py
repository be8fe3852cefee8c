"""CTM tables: the on-disk cache (written once, read back, never trusted when corrupt or
stale) and the values, checked against pybdm's data files read directly."""

from __future__ import annotations

import doctest
import struct
import zipfile
from collections import Counter
from pathlib import Path

import naive
import numpy as np
import pytest

import kcomplex.ctm
from kcomplex.ctm import TABLES, bits_per_symbol, cache_dir, load_table

CACHE_NAME = "ctm-b2-d12.npz"


@pytest.fixture
def reference():
    """The binary 1-D table as loaded from the normal cache, before any patching."""
    return load_table(1, 2)


@pytest.fixture
def fresh(ctm_cache):
    """An empty cache directory and a cleared in-process cache; conversions counted."""
    return ctm_cache


def assert_same_table(a, b):
    assert (a.ndim, a.n_symbols, a.sizes) == (b.ndim, b.n_symbols, b.sizes)
    for s in a.sizes:
        np.testing.assert_array_equal(a.values[s], b.values[s])  # NaN == NaN here
        np.testing.assert_array_equal(a.labels[s], b.labels[s])
        assert a.values[s].dtype == np.float64 and a.labels[s].dtype == np.uint8


def test_docstring_examples_run():
    result = doctest.testmod(kcomplex.ctm)
    assert result.attempted > 0 and result.failed == 0


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KCOMPLEX_CACHE_DIR", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("KCOMPLEX_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "kcomplex"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "kcomplex"


def test_first_load_writes_cache_second_reads_it(reference, fresh):
    tmp_path, calls = fresh
    first = load_table(1, 2)
    assert len(calls) == 1
    assert (tmp_path / CACHE_NAME).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [CACHE_NAME]  # no temp files left
    assert load_table(1, 2) is first  # once per process
    load_table.cache_clear()
    second = load_table(1, 2)
    assert len(calls) == 1  # read from the cache, not converted again
    assert second is not first
    assert_same_table(second, first)
    assert_same_table(second, reference)
    for s in second.sizes:
        assert not second.values[s].flags.writeable
        assert not second.labels[s].flags.writeable


def _data_offset(blob: bytes, path: Path, member: str) -> int:
    info = zipfile.ZipFile(path).getinfo(member)
    start = info.header_offset  # local file header: 30 bytes, then name and extra field
    name_len, extra_len = struct.unpack("<HH", blob[start + 26 : start + 30])
    return start + 30 + name_len + extra_len


def _flip_data_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    offset = _data_offset(bytes(blob), path, "values_12.npy") + 1000
    blob[offset] ^= 0x5A
    path.write_bytes(bytes(blob))


CORRUPTIONS = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)),
    "flipped-data-byte": _flip_data_byte,  # caught by the zip CRC
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_cache_is_rebuilt(reference, fresh, corrupt):
    tmp_path, calls = fresh
    load_table(1, 2)
    corrupt(tmp_path / CACHE_NAME)
    load_table.cache_clear()
    rebuilt = load_table(1, 2)
    assert len(calls) == 2
    assert_same_table(rebuilt, reference)
    load_table.cache_clear()
    assert_same_table(load_table(1, 2), reference)  # the rewritten cache is valid
    assert len(calls) == 2


def _rewrite(path: Path, **changes) -> None:
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


STALE = {
    "fingerprint": {"fingerprint": np.array("0" * 64)},
    "no-fingerprint": {"fingerprint": None},
    "labels-dtype": {"labels_12": np.zeros(10, dtype=np.int64)},
    "values-2d": {"values_3": np.zeros((2, 2))},
}


@pytest.mark.parametrize("change", STALE.values(), ids=STALE.keys())
def test_stale_cache_is_rebuilt(reference, fresh, change):
    tmp_path, calls = fresh
    load_table(1, 2)
    _rewrite(tmp_path / CACHE_NAME, **change)
    load_table.cache_clear()
    assert_same_table(load_table(1, 2), reference)
    assert len(calls) == 2
    with np.load(tmp_path / CACHE_NAME) as data:  # rewritten with the right fingerprint
        fingerprint = str(data["fingerprint"])
    assert fingerprint == kcomplex.ctm._fingerprint(
        kcomplex.ctm._source_path(TABLES[1, 2])
    )


def test_unwritable_cache_warns_and_still_loads(reference, fresh, monkeypatch):
    tmp_path, _ = fresh
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("KCOMPLEX_CACHE_DIR", str(blocker / "sub"))
    with pytest.warns(RuntimeWarning, match="KCOMPLEX_CACHE_DIR"):
        table = load_table(1, 2)
    assert_same_table(table, reference)


@pytest.mark.parametrize(("ndim", "n_symbols"), [(1, 3), (1, 10), (2, 4), (3, 2), (0, 2)])
def test_no_table(ndim, n_symbols):
    valid = ", ".join(f"ndim={d} n_symbols={n}" for d, n in TABLES)
    with pytest.raises(ValueError, match=f"no CTM table for ndim={ndim}") as info:
        load_table(ndim, n_symbols)
    assert valid in str(info.value)
    assert "ndim=1 n_symbols=9" in valid and "ndim=2 n_symbols=2" in valid


# -- values against pybdm's data files ------------------------------------------------------

TABLE_PARAMS = [
    pytest.param(d, n, marks=[pytest.mark.slow] if n == 9 else [], id=f"{d}d-{n}sym")
    for d, n in TABLES
]


@pytest.mark.parametrize(("ndim", "n_symbols"), TABLE_PARAMS)
def test_table_values_match_pybdm_data(ndim, n_symbols):
    """Uses the normal cache, so each table is converted at most once per machine."""
    table = load_table(ndim, n_symbols)
    source = naive.ctm_dict(ndim, n_symbols)
    rng = np.random.default_rng(n_symbols)
    expected_sizes = tuple(range(1, 13)) if ndim == 1 else (1, 2, 3, 4)
    assert table.sizes == expected_sizes
    assert table.bits == bits_per_symbol(n_symbols) == naive.bits_per_symbol(n_symbols)
    for size in table.sizes:
        shape = (size,) * ndim
        entries = source[shape]
        values, labels = table.values[size], table.labels[size]
        present = ~np.isnan(values)
        assert int(present.sum()) == len(entries)
        assert table.missing_value(size) == max(entries.values()) + 1
        # Number of distinct symbols of the canonical blocks present.
        assert Counter(labels[present].tolist()) == Counter(
            int(max(k)) + 1 for k in entries
        )
        # Canonical keys from the file, each under a random relabelling of the symbols.
        keys = list(entries)
        sample = [keys[i] for i in rng.choice(len(keys), min(len(keys), 1500), replace=False)]
        raws = []
        for key in sample:
            perm = rng.permutation(n_symbols)
            raws.append(tuple(int(perm[int(c)]) for c in key))
        got = table.lookup(size, np.array([naive.encode(r, n_symbols) for r in raws]))
        assert got.tolist() == [entries[k] for k in sample]
        # Uniformly random raw blocks, present or not (absent: max + 1).
        raws = [tuple(r) for r in rng.integers(0, n_symbols, (1500, size**ndim)).tolist()]
        got = table.lookup(size, np.array([naive.encode(r, n_symbols) for r in raws]))
        assert got.tolist() == [naive.ctm(shape, r, n_symbols) for r in raws]
