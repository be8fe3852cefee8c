"""Lempel-Ziv estimators against independent oracles: antropy's ``lziv_complexity`` and a
plain-Python Kaspar-Schuster scan for LZ76, a dictionary-based parse for LZ78."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kcomplex import _kernels as k
from kcomplex import binarize, symbolize
from kcomplex.lz import lz76_bits, lz76_phrases, lz78_bits, lz78_phrases


def ks_phrases(s) -> int:
    """Kaspar and Schuster's (1987) scan, transcribed: every earlier start is tried."""
    s = list(s)
    n = len(s)
    if n == 1:
        return 1
    c, start, i, kk, k_max = 1, 1, 0, 1, 1
    while True:
        if s[i + kk - 1] == s[start + kk - 1]:
            kk += 1
            if start + kk > n:
                c += 1
                break
        else:
            k_max = max(kk, k_max)
            i += 1
            if i == start:
                c += 1
                start += k_max
                if start + 1 > n:
                    break
                i, kk, k_max = 0, 1, 1
            else:
                kk = 1
    return c


def lz78_parse(s) -> tuple[int, bool]:
    """LZ78 with a dict of phrases: whole phrases, and whether a partial one is left."""
    seen, phrase, count = set(), (), 0
    for c in s:
        phrase += (c,)
        if phrase not in seen:
            seen.add(phrase)
            count += 1
            phrase = ()
    return count, bool(phrase)


def lz78_code(s, alphabet: int) -> float:
    count, partial = lz78_parse(s)
    index = sum(math.ceil(math.log2(j)) for j in range(1, count + partial + 1))
    return index + count * math.log2(alphabet)


sequences = st.lists(st.integers(0, 3), min_size=1, max_size=200)


def structured(rng, n):
    """Periodic, constant, run-length and mostly-constant sequences."""
    period = rng.integers(0, 3, rng.integers(1, 8))
    yield np.resize(period, n)
    yield np.zeros(n, dtype=np.int64)
    yield np.repeat(rng.integers(0, 4, n // 7 + 1), 7)[:n]
    yield (rng.random(n) < 0.05).astype(np.int64)


def test_published_example():
    # antropy's docs: 1 / 0 / 01 / 1110 / 1100 / 0010
    assert lz76_phrases([int(c) for c in "1001111011000010"]) == 6
    assert ks_phrases("1001111011000010") == 6
    assert lz76_phrases([1, 0] * 5) == 3


@given(sequences)
def test_lz76_equals_the_kaspar_schuster_scan(s):
    assert lz76_phrases(s) == ks_phrases(s)


@given(sequences)
def test_kernel_as_plain_python(s):
    # The kernels' Python source (under NUMBA_DISABLE_JIT=1 they are plain functions).
    lz76 = getattr(k.lz76_phrases, "py_func", k.lz76_phrases)
    lz78 = getattr(k.lz78_phrases, "py_func", k.lz78_phrases)
    assert lz76(np.array(s, dtype=np.uint8)) == ks_phrases(s)
    assert lz78(np.array(s, dtype=np.uint8)) == lz78_parse(s)


def test_lz76_equals_antropy_random_and_structured():
    antropy = pytest.importorskip("antropy")
    rng = np.random.default_rng(7)
    cases = []
    for n in (1, 2, 3, 17, 100, 1000, 5000):
        for alphabet in (2, 3, 4, 9):
            cases.append(rng.integers(0, alphabet, n))
        if n >= 8:
            cases.extend(structured(rng, n))
    for s in cases:
        assert lz76_phrases(s) == antropy.lziv_complexity(s, normalize=False), s


def test_symbol_values_only_matter_by_equality():
    s = np.random.default_rng(1).integers(0, 3, 500)
    relabelled = np.array([-5, 10**12, 7])[s]
    assert lz76_phrases(relabelled) == lz76_phrases(s)
    assert lz78_phrases(relabelled) == lz78_phrases(s)
    many = np.random.default_rng(2).integers(0, 1000, 3000)  # > 256 distinct symbols
    assert lz76_phrases(many) == ks_phrases(many.tolist())
    assert lz78_phrases(many) == lz78_parse(many.tolist())


@given(st.integers(2, 5000))
def test_lz76_of_a_constant_sequence(n):
    assert lz76_phrases(np.ones(n, dtype=np.int64)) == 2
    assert lz76_bits(np.full(n, -1.0)) == pytest.approx(2 * math.log2(n))


@pytest.mark.parametrize("n", [1 << 12, 1 << 16])
def test_lz76_bits_of_random_signs_near_the_raw_size(n):
    w = np.random.default_rng(n).normal(size=n)
    c = lz76_phrases((w > 0).astype(np.uint8))
    assert 0.95 < c / (n / math.log2(n)) < 1.15
    assert lz76_bits(w) == c * math.log2(n)


def test_lz76_bits_symbols():
    w = np.random.default_rng(3).normal(size=3000)
    q = symbolize(w, 4, "quantile")
    assert lz76_bits(w, symbols=4, method="quantile") == lz76_phrases(q) * math.log2(w.size)
    assert lz76_bits(w.reshape(30, 100)) == lz76_bits(w)
    assert lz76_bits([3.0]) == 0.0


@given(sequences)
def test_lz78_parse_equals_the_dictionary_parse(s):
    assert lz78_phrases(s) == lz78_parse(s)


def greedy_max_phrases(n: int, alphabet: int) -> int:
    """Most distinct non-empty phrases of total length <= n: the shortest first."""
    count, length = 0, 1
    while n >= length:
        take = min(alphabet**length, n // length)
        count += take
        n -= take * length
        length += 1
    return count


@given(st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=300),
       st.sampled_from([None, 2, 3, 5]))
def test_lz78_bits_is_its_code_and_bounded(w, symbols):
    seq = binarize(w) if symbols is None else symbolize(w, symbols)
    alphabet = symbols or 2
    bits = lz78_bits(w, symbols=symbols)
    assert bits == pytest.approx(lz78_code(seq.tolist(), alphabet), rel=1e-12)
    c_max = greedy_max_phrases(len(w), alphabet)
    bound = sum(math.ceil(math.log2(j)) for j in range(1, c_max + 2))
    assert 0 <= bits <= bound + c_max * math.log2(alphabet)


def test_lz78_random_signs_cost_about_their_raw_size():
    n = 1 << 16
    bits = lz78_bits(np.random.default_rng(5).normal(size=n))
    assert n < bits < 1.3 * n  # LZ78 converges slowly: it overshoots at this length


@pytest.mark.parametrize("bad", [np.array([True, False]), [True, False, True]])
def test_bool_symbols_refused(bad):
    with pytest.raises(TypeError, match="bool"):
        lz76_phrases(bad)
    with pytest.raises(TypeError, match="bool"):
        lz78_phrases(bad)


@pytest.mark.parametrize("fn", [lz76_phrases, lz78_phrases])
def test_bad_symbols(fn):
    with pytest.raises(TypeError, match="integer symbols"):
        fn([0.0, 1.0])
    with pytest.raises(ValueError, match="empty"):
        fn(np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="1-D"):
        fn(np.zeros((2, 2), dtype=np.int64))


@pytest.mark.parametrize("fn", [lz76_bits, lz78_bits])
def test_bad_weights(fn):
    with pytest.raises(ValueError, match="empty"):
        fn(np.array([]))
    with pytest.raises(ValueError, match="NaN"):
        fn([1.0, float("nan")])
    with pytest.raises(TypeError, match="symbols"):
        fn([1.0, 2.0], symbols=True)
    with pytest.raises(ValueError, match="symbols"):
        fn([1.0, 2.0], symbols=1)
    with pytest.raises(TypeError, match="real"):
        fn(np.array(["a", "b"]))
