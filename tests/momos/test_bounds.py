"""The paper's bound and RAC: its worked values (docs/method.md) and the formula itself."""

from __future__ import annotations

import math

import pytest

from momos.bounds import bound_bits, motif_count, rac


@pytest.mark.parametrize("n, m, k, log2k, ratio", [
    (986_634, 493_317, 24_665, 15, 3.52),   # MLP 3072-256-256-256-256-10
    (269_722, 134_861, 6_743, 13, 3.95),    # ResNet-20, BN affine included
])
def test_worked_values(n, m, k, log2k, ratio):
    assert math.ceil(n / 2) == m
    assert motif_count(m, capacity=0.05) == k
    assert math.ceil(math.log2(k)) == log2k
    assert bound_bits(n, 2, capacity=0.05) == k * 2 * 32 + m * log2k
    assert bound_bits(n, 2, k=k) == bound_bits(n, 2, capacity=0.05)
    assert round(rac(n, 2, capacity=0.05), 2) == ratio
    assert rac(n, 2, capacity=0.05) == n * 32 / bound_bits(n, 2, capacity=0.05)


@pytest.mark.parametrize("n, s, k, q", [
    (1, 1, 1, 32), (10, 3, 2, 8), (1000, 4, 5, 16), (2**20 + 1, 7, 2**16 + 1, 32),
    (77, 2, 32, 4), (77, 2, 33, 4),
])
def test_formula(n, s, k, q):
    m = -(-n // s)
    k_eff = min(k, m)
    log2k = 0 if k_eff == 1 else math.ceil(math.log2(k_eff))
    assert bound_bits(n, s, k=k, q=q) == k_eff * s * q + m * log2k
    assert rac(n, s, k=k, q=q) == n * q / (k_eff * s * q + m * log2k)


def test_one_motif_needs_no_index_bits():
    assert bound_bits(1000, 4, k=1) == 4 * 32
    assert rac(1000, 4, k=1) == 1000 / 4
    assert motif_count(3, capacity=0.01) == 1  # floor(0.03) = 0 -> at least one motif


def test_k_is_clipped_to_m():
    assert motif_count(10, k=50) == 10 and motif_count(10, capacity=1.0) == 10
    assert bound_bits(20, 2, k=50) == bound_bits(20, 2, k=10) == 10 * 64 + 10 * 4


@pytest.mark.parametrize("call, match", [
    (lambda: rac(0, 2, k=1), "n must be an integer >= 1"),
    (lambda: rac(10, 0, k=1), "s must be an integer >= 1"),
    (lambda: rac(10, 2, k=1, q=0), "q must be an integer >= 1"),
    (lambda: rac(10.5, 2, k=1), "n must be an integer"),
    (lambda: bound_bits(10, 2), "exactly one of k"),
    (lambda: bound_bits(10, 2, k=1, capacity=0.5), "exactly one of k"),
    (lambda: bound_bits(10, 2, k=0), "k must be an integer >= 1"),
    (lambda: bound_bits(10, 2, capacity=0), r"capacity must be a number in \(0, 1\]"),
    (lambda: bound_bits(10, 2, capacity=1.01), r"capacity must be a number in \(0, 1\]"),
    (lambda: motif_count(0, k=1), "m must be an integer >= 1"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
