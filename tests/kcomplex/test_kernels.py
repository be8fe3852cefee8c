"""The numba kernels of kcomplex._kernels against plain Python, called directly.

Inputs are small: the whole file also runs with the JIT off (``test_kernels_without_jit``),
where every kernel is plain Python.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import types
from pathlib import Path

import naive
import numpy as np
import pytest

from kcomplex import _kernels as k
from kcomplex.ctm import load_table

ROOT = Path(__file__).resolve().parents[2]


def python_counts(keys):
    """Keys in order of first appearance, with counts."""
    counts: dict[int, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return list(counts), list(counts.values())


def windows_1d(x, start, stop, size, step, n_symbols):
    return [
        naive.encode(tuple(int(v) for v in x[s : s + size]), n_symbols)
        for s in range(start, stop - size + 1, step)
    ]


def windows_2d(x, r0, c0, height, width, size, step, n_symbols):
    return [
        naive.encode(tuple(int(v) for v in x[r : r + size, c : c + size].flat), n_symbols)
        for r in range(r0, r0 + height - size + 1, step)
        for c in range(c0, c0 + width - size + 1, step)
    ]


# The hash-counter state is private to the kernels; only these two helpers know its
# layout: ``(slots, order, n)``, slots[h] = (key, count, id), order[id] = key.


def capacity(state) -> int:
    return state[0].shape[0]


def state_result(state):
    """(keys in order of first appearance, their counts) of a hash-counter state."""
    slots, order, n = state
    return order[:n].tolist(), k.table_counts(slots, n).tolist()


# -- hash counting ----------------------------------------------------------------------


@pytest.mark.parametrize(("expected", "cap"), [(0, 16), (1, 16), (8, 16), (9, 32), (1000, 2048)])
def test_new_table(expected, cap):
    state = k.new_table(expected)
    assert capacity(state) == cap
    assert state_result(state) == ([], [])


@pytest.mark.parametrize(
    ("n_symbols", "size", "step", "start", "stop"),
    [
        (2, 3, 3, 0, 300),
        (2, 5, 1, 7, 290),
        (4, 4, 2, 1, 300),
        (9, 3, 1, 0, 300),
        (5, 12, 5, 3, 299),
    ],
)
def test_block_keys_and_count_keys_match_python(n_symbols, size, step, start, stop):
    x = np.random.default_rng(size).integers(0, n_symbols, 300).astype(np.uint8)
    bits = naive.bits_per_symbol(n_symbols)
    keys = k.block_keys_1d(x, start, stop, size, step, bits)
    expected = windows_1d(x, start, stop, size, step, n_symbols)
    assert keys.tolist() == expected
    got_keys, got_counts = k.count_keys(keys, bits * size)
    assert (got_keys.tolist(), got_counts.tolist()) == python_counts(expected)


@pytest.mark.parametrize("key_bits", [1, 5, 12, 13, 30, 48])
def test_count_keys_partitions(key_bits):
    """Keys spread over many partitions, skewed into one, and fewer bits than a
    partition index: always the first-appearance order and the counts."""
    rng = np.random.default_rng(key_bits)
    spread = rng.integers(0, 1 << key_bits, 3000, dtype=np.int64)
    skewed = np.where(rng.random(3000) < 0.9, 0, spread)
    for keys in (spread, skewed, np.zeros(0, dtype=np.int64)):
        got_keys, got_counts = k.count_keys(keys, key_bits)
        assert (got_keys.tolist(), got_counts.tolist()) == python_counts(keys.tolist())


def test_block_keys_empty_range():
    x = np.zeros(5, dtype=np.uint8)
    assert k.block_keys_1d(x, 0, 5, 6, 1, 1).size == 0
    assert k.block_keys_1d(x, 3, 3, 1, 1, 1).size == 0


def test_merge_counts():
    keys = np.array([5, 3, 5, 99, 3, 7] * 10, dtype=np.int64)
    counts = np.arange(1, keys.size + 1, dtype=np.int64)
    state = k.merge_counts(keys, counts, *k.new_table(1))
    expected: dict[int, int] = {}
    for key, c in zip(keys.tolist(), counts.tolist()):
        expected[key] = expected.get(key, 0) + c
    assert state_result(state) == (list(expected), list(expected.values()))
    many = np.arange(100, dtype=np.int64) * 7919  # growth while merging
    state = k.merge_counts(many, np.ones(100, dtype=np.int64), *state)
    for key in many.tolist():
        expected[key] = expected.get(key, 0) + 1
    assert state_result(state) == (list(expected), list(expected.values()))


# -- first-seen bitmaps -------------------------------------------------------------------


def new_seen(key_bits, room):
    """An empty first-seen state: (seen, multi, firsts, n, slots, order, n_rep)."""
    n_bytes = max(1, (1 << key_bits) >> 3)
    return (np.zeros(n_bytes, dtype=np.uint8), np.zeros(n_bytes, dtype=np.uint8),
            np.empty(room, dtype=np.int64), 0, *k.new_table(0))


def seen_state_result(state):
    _, multi, firsts, n, slots, _, _ = state
    return firsts[:n].tolist(), k.seen_result(multi, firsts, n, slots).tolist()


@pytest.mark.parametrize(
    ("n_symbols", "size", "step", "start", "stop"),
    [(4, 11, 11, 0, 3000), (4, 12, 1, 5, 2990), (4, 3, 2, 1, 3000), (2, 2, 1, 0, 3000)],
)
def test_seen_1d_matches_python(n_symbols, size, step, start, stop):
    """Windows of few and of many repeats (the hash counter of repeats grows), also past
    one buffer of keys, then more windows and counts added in order."""
    x = np.random.default_rng(size).integers(0, n_symbols, 3000).astype(np.uint8)
    bits = naive.bits_per_symbol(n_symbols)
    state = new_seen(bits * size, 2 * 3000)
    seen, multi, firsts = state[:3]
    state = (seen, multi, firsts, *k.seen_1d(x, start, stop, size, step, bits, *state))
    expected = windows_1d(x, start, stop, size, step, n_symbols)
    assert seen_state_result(state) == python_counts(expected)
    state = (seen, multi, firsts, *k.seen_1d(x, 7, 1500, size, size, bits, *state[:7]))
    expected += windows_1d(x, 7, 1500, size, size, n_symbols)
    assert seen_state_result(state) == python_counts(expected)
    keys = np.array(expected[:50], dtype=np.int64)
    counts = np.arange(1, 51, dtype=np.int64)
    state = (seen, multi, firsts, *k.seen_counts(keys, counts, *state[:7]))
    assert keys.tolist() == expected[:50]  # the caller's keys are left as they are
    totals = dict(zip(*python_counts(expected)))
    for key, c in zip(keys.tolist(), counts.tolist()):
        totals[key] += c
    assert seen_state_result(state) == (list(totals), list(totals.values()))


def test_seen_counts_new_keys_with_counts():
    """Counts above 1 of keys not seen before: the first goes to ``firsts``, the rest to
    the repeats."""
    keys = np.array([9, 3, 9, 200, 3, 0], dtype=np.int64)
    counts = np.array([4, 1, 2, 1, 5, 1], dtype=np.int64)
    state = new_seen(8, 6)
    seen, multi, firsts = state[:3]
    state = (seen, multi, firsts, *k.seen_counts(keys, counts, *state))
    assert seen_state_result(state) == ([9, 3, 200, 0], [6, 6, 1, 1])


# -- dense counting -----------------------------------------------------------------------


def dense_result(counts, first):
    keys = np.flatnonzero(counts)
    keys = keys[np.argsort(first[keys], kind="stable")]
    return keys.tolist(), counts[keys].tolist()


def test_dense_1d_matches_python():
    x = np.random.default_rng(1).integers(0, 2, 200).astype(np.uint8)
    counts = np.zeros(1 << 4, dtype=np.int64)
    first = np.zeros(1 << 4, dtype=np.int64)
    seq = k.dense_1d(x, 0, 200, 4, 1, 1, counts, first, 0)
    assert seq == 197
    seq = k.dense_1d(x, 3, 100, 4, 4, 1, counts, first, seq)  # carries on in order
    expected = windows_1d(x, 0, 200, 4, 1, 2) + windows_1d(x, 3, 100, 4, 4, 2)
    assert seq == len(expected)
    assert dense_result(counts, first) == python_counts(expected)


def test_dense_2d_matches_python():
    x = np.random.default_rng(2).integers(0, 2, (20, 15)).astype(np.uint8)
    counts = np.zeros(1 << 9, dtype=np.int64)
    first = np.zeros(1 << 9, dtype=np.int64)
    seq = k.dense_2d(x, 1, 2, 19, 13, 3, 2, 1, counts, first, 0)
    expected = windows_2d(x, 1, 2, 19, 13, 3, 2, 2)
    assert seq == len(expected)
    assert dense_result(counts, first) == python_counts(expected)


# -- canonical keys -----------------------------------------------------------------------


def restricted_growth_strings(length: int, n_labels: int):
    """All canonical keys of a length, in lexicographic order."""
    out = []

    def extend(prefix, m):
        if len(prefix) == length:
            out.append(prefix)
            return
        for d in range(min(m + 1, n_labels)):
            extend(prefix + [d], max(m, d + 1))

    extend([0], 1)
    return out


def stirling2(n, j):
    """Partitions of n items into j non-empty sets."""
    terms = ((-1) ** i * math.comb(j, i) * (j - i) ** n for i in range(j + 1))
    return sum(terms) // math.factorial(j)


@pytest.mark.parametrize("length", range(1, 9))
def test_rank_canonical_is_a_bijection(length):
    for n_symbols in (2, 4, 5, 6, 9):
        n_labels = min(n_symbols, length)
        rgs = restricted_growth_strings(length, n_labels)
        f = k.rgs_completions(length, n_labels)
        assert int(f[1, 1]) == len(rgs) == sum(stirling2(length, j) for j in range(1, n_labels + 1))
        ranks = k.rank_canonical(np.array(rgs, dtype=np.uint8), f)
        assert ranks.tolist() == list(range(len(rgs)))


@pytest.mark.parametrize(("ndim", "n_symbols"), [(1, 2), (2, 2), (1, 9)])
def test_rgs_completions_match_table_sizes(ndim, n_symbols):
    """The dense CTM arrays have one slot per canonical key: f[1, 1] of them."""
    table = load_table(ndim, n_symbols)
    for size in table.sizes:
        length = size**ndim
        f = k.rgs_completions(length, min(n_symbols, length))
        assert table.values[size].size == f[1, 1]


@pytest.mark.parametrize(
    ("n_symbols", "length"), [(2, 6), (4, 5), (4, 1), (5, 6), (9, 5), (9, 3), (6, 3)]
)
def test_ctm_of_keys_matches_python(n_symbols, length):
    rng = np.random.default_rng(length * n_symbols)
    n_labels = min(n_symbols, length)
    rank = {
        "".join(map(str, s)): i for i, s in enumerate(restricted_growth_strings(length, n_labels))
    }
    values = rng.random(len(rank)) * 30
    values[rng.random(len(rank)) < 0.3] = np.nan  # absent from the table
    missing = 99.5
    raws = [tuple(r) for r in rng.integers(0, n_symbols, (300, length)).tolist()]
    raws.append((n_symbols - 1,) * length)  # all bits of the largest symbol set
    raws.append(tuple((n_symbols - 1 - i) % n_symbols for i in range(length)))
    keys = np.array([naive.encode(r, n_symbols) for r in raws], dtype=np.int64)
    f = k.rgs_completions(length, n_labels)
    bits = naive.bits_per_symbol(n_symbols)
    expected = []
    for raw in raws:
        v = values[rank[naive.canonical(raw)]]
        expected.append(missing if np.isnan(v) else v)
    assert k.ctm_of_keys(keys, length, bits, f, values, missing).tolist() == expected
    for split in range(1, length + 1):  # every split with small rank tables
        states = sum(math.perm(n_symbols, m) for m in range(1, min(split, n_symbols) + 1))
        if 2 ** (bits * split) + states * 2 ** (bits * (length - split)) > 2**15:
            continue
        tables = k.split_rank_tables(length, bits, n_symbols, f, split)
        got = k.ctm_by_tables(keys, bits * (length - split), *tables, values, missing)
        assert got.tolist() == expected


# -- sums ---------------------------------------------------------------------------------


def test_bdm_sum_and_ent_sum():
    rng = np.random.default_rng(3)
    ctm = rng.random(50) * 40
    counts = rng.integers(1, 20, 50)
    total = 0.0
    for v, c in zip(ctm.tolist(), counts.tolist()):
        total += v + math.log2(c)
    assert k.bdm_sum(ctm, counts, 0.0) == total  # same order, same bits
    p = counts / counts.sum()
    assert k.ent_sum(counts) == pytest.approx(float(-(p * np.log2(p)).sum()), abs=1e-12)
    assert k.ent_sum(np.array([7], dtype=np.int64)) == 0.0
    assert k.ent_sum(np.array([3, 3, 3, 3], dtype=np.int64)) == pytest.approx(2.0, abs=1e-15)


@pytest.mark.parametrize("n", [1, 2, 5, 6, 7, 13, 40])
def test_sorted_prefix_bdm(n):
    """The cyclic sequence ``values[t]`` repeated ``mult[t]`` times, drawn ``n`` times."""
    values = np.array([9.0, 7.5, 7.5, 3.0])
    mult = np.array([2, 1, 3, 1], dtype=np.int64)
    sequence = [v for v, m in zip(values.tolist(), mult.tolist()) for _ in range(m)]
    drawn = [0] * len(sequence)
    for i in range(n):
        drawn[i % len(sequence)] += 1
    expected = 1.25 + sum(v + math.log2(c) for v, c in zip(sequence, drawn) if c)
    assert k.sorted_prefix_bdm(values, mult, n, 1.25) == pytest.approx(expected, abs=1e-12)


# -- the same tests with the JIT off -------------------------------------------------------


def test_kernels_without_jit():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    cmd = [
        sys.executable, "-m", "pytest", str(Path(__file__).relative_to(ROOT)),
        "-q", "-p", "no:cacheprovider", "-k", "not without_jit",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert " passed" in proc.stdout


def test_jit_state_matches_environment():
    """Guards the run above: with NUMBA_DISABLE_JIT=1 the kernels are plain functions."""
    jit_off = os.environ.get("NUMBA_DISABLE_JIT") == "1"
    for kernel in (k.block_keys_1d, k.count_keys, k.dense_1d, k.seen_1d, k.ctm_of_keys,
                   k.ctm_by_tables, k.rank_canonical):
        assert isinstance(kernel, types.FunctionType) == jit_off
