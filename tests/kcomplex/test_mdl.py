"""Tests for kcomplex.mdl against independent brute-force computations.

The two-part code's Elias delta header is built as a Python string from ``bin(n)``;
sequence code lengths from exact integer arithmetic (``math.comb``, ``math.factorial``,
``fractions.Fraction``) and the sequential definitions of the adaptive codes.
"""

from __future__ import annotations

import doctest
import math
from collections import Counter
from fractions import Fraction

import constriction
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcomplex import mdl
from kcomplex.bitstream import elias_delta_length
from kcomplex.mdl import (
    LOG_STAR_C0,
    QUANTIZED_CODES,
    ans_encode,
    categorical_model,
    coded_bits,
    decode_coded,
    dequantize_uniform,
    entropy_bits,
    kt_bits,
    laplace_bits,
    log_star,
    quantize_uniform,
    quantized_bits,
    two_part_bits,
)

# --- oracles --------------------------------------------------------------------------


def delta_len(n: int) -> int:
    """Length of the Elias delta codeword of n >= 1: the gamma code of n's bit length
    (2 B - 1 bits, B the bit length of that length) and n's bits after the leading 1."""
    length = n.bit_length()
    return 2 * length.bit_length() - 1 + length - 1


def exact_entropy(symbols) -> float:
    n = len(symbols)
    return -sum(c * math.log2(c / n) for c in Counter(symbols).values())


def exact_two_part(symbols, a: int) -> float:
    n, counts = len(symbols), Counter(symbols).values()
    multinomial = math.factorial(n) // math.prod(math.factorial(c) for c in counts)
    return delta_len(n + 1) + math.log2(math.comb(n + a - 1, a - 1)) + math.log2(multinomial)


def sequential_bits(symbols, a: int, alpha: Fraction) -> float:
    """-log2 of prod_t (c_x(t) + alpha) / (t + a alpha), exactly with fractions."""
    p, seen = Fraction(1), Counter()
    for t, x in enumerate(symbols):
        p *= (seen[x] + alpha) / (t + a * alpha)
        seen[x] += 1
    return math.log2(p.denominator) - math.log2(p.numerator)


sequences = st.integers(1, 6).flatmap(
    lambda a: st.tuples(st.just(a), st.lists(st.integers(0, a - 1), max_size=40))
)


def test_docstring_examples_run():
    result = doctest.testmod(mdl, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_categorical_model_is_the_model_of_ans_encode():
    s = np.array([0, 2, 2, 1, 2, 2, 0, 2])
    payload = ans_encode(s, 3)
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(payload, "<u4").astype(np.uint32))
    assert coder.decode(categorical_model(np.bincount(s)), s.size).tolist() == s.tolist()
    assert coder.is_empty()

# --- log* -------------------------------------------------------------------------------


def test_log_star_values():
    c = math.log2(LOG_STAR_C0)
    assert log_star(1) == pytest.approx(c)
    assert log_star(2) == pytest.approx(c + 1)
    assert log_star(16) == pytest.approx(c + 4 + 2 + 1)
    assert log_star(3) == pytest.approx(c + math.log2(3) + math.log2(math.log2(3)))
    assert log_star(2**65536) == pytest.approx(c + 65536 + 16 + 4 + 2 + 1)


def test_log_star_kraft():
    """With c0 the full Kraft sum is 1, so every partial sum is below 1."""
    assert sum(2.0 ** -log_star(n) for n in range(1, 20000)) < 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_log_star_rejects(bad):
    with pytest.raises(ValueError, match="integer"):
        log_star(bad)


# --- sequence codes ---------------------------------------------------------------------


@given(case=sequences)
def test_sequence_codes_match_exact_arithmetic(case):
    a, s = case
    assert entropy_bits(s, a) == pytest.approx(exact_entropy(s), abs=1e-9)
    assert two_part_bits(s, a) == pytest.approx(exact_two_part(s, a), rel=1e-12, abs=1e-9)
    assert kt_bits(s, a) == pytest.approx(sequential_bits(s, a, Fraction(1, 2)), abs=1e-9)
    assert laplace_bits(s, a) == pytest.approx(sequential_bits(s, a, Fraction(1)), abs=1e-9)


@given(case=sequences)
def test_sequence_code_bounds(case):
    """True for every sequence, with n H = entropy_bits:

    * n H <= n log2(distinct symbols);
    * KT and Laplace are Dirichlet mixtures, and a mixture of i.i.d. probabilities is at
      most the maximum-likelihood one 2^-nH, so both are >= n H;
    * Laplace = log2 C(n+a-1, a-1) + log2 multinomial, with the multinomial <= 2^nH and
      C(n+a-1, a-1) <= (n+1)^(a-1): Laplace <= n H + (a-1) log2(n+1);
    * two-part = Laplace + elias_delta_length(n + 1);
    * binary KT <= n H + log2(n)/2 + 1 for n >= 1 (Willems, Shtarkov, Tjalkens 1995).
    """
    a, s = case
    n, h = len(s), entropy_bits(s, a)
    eps = 1e-9
    assert h <= n * math.log2(max(len(set(s)), 1)) + eps
    assert kt_bits(s, a) >= h - eps
    assert laplace_bits(s, a) >= h - eps
    assert laplace_bits(s, a) <= h + (a - 1) * math.log2(n + 1) + eps
    assert two_part_bits(s, a) == pytest.approx(laplace_bits(s, a) + elias_delta_length(n + 1))
    if a == 2 and n:
        assert kt_bits(s, a) <= h + math.log2(n) / 2 + 1 + eps


def test_sequence_codes_large_alphabet_and_shapes():
    s = np.array([[0, 2**40], [5, 2**40]], dtype=np.uint64)
    a = 2**41
    assert entropy_bits(s) == pytest.approx(exact_entropy([0, 2**40, 5, 2**40]))
    assert two_part_bits(s, a) == pytest.approx(exact_two_part([0, 2**40, 5, 2**40], a))
    assert kt_bits(s, a) == pytest.approx(
        sequential_bits([0, 2**40, 5, 2**40], a, Fraction(1, 2)), rel=1e-9
    )


def test_sequence_codes_empty_and_errors():
    assert entropy_bits([]) == kt_bits([], 3) == laplace_bits([], 3) == 0.0
    assert two_part_bits([], 3) == 1.0  # delta(1)
    with pytest.raises(ValueError, match="lie in \\[0, 3\\), found 3 at index 2"):
        kt_bits([0, 1, 3], 3)
    with pytest.raises(ValueError, match="found -1 at index 1"):
        entropy_bits([0, -1])
    with pytest.raises(ValueError, match="alphabet must be an integer"):
        two_part_bits([0], 0)
    with pytest.raises(TypeError, match="integers"):
        entropy_bits([0.5])


# --- ANS-coded length ------------------------------------------------------------------


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32 - 1), a=st.integers(2, 300), n=st.integers(1, 5000),
       conc=st.sampled_from([0.05, 0.3, 1.0, 5.0]))
def test_coded_bits_round_trip_and_near_entropy(seed, a, n, conc):
    """Round trip, and the acceptance bound actual <= n H + 64 + 0.01 n H. Not a theorem:
    ANS adds up to one 32-bit initial state and one partial last word to the model's
    ideal length, and the 24-bit quantization of probabilities >= 1/n (n <= 5000) adds
    far less than 1% for these inputs."""
    rng = np.random.default_rng(seed)
    s = rng.choice(a, n, p=rng.dirichlet(np.full(a, conc)))
    payload = ans_encode(s, a)
    bits = coded_bits(s, a)
    assert type(bits) is float
    assert bits == 8 * len(payload) and len(payload) % 4 == 0
    h = entropy_bits(s, a)
    assert bits <= h + 64 + 0.01 * h
    np.testing.assert_array_equal(decode_coded(payload, np.bincount(s, minlength=a)), s)


def test_coded_bits_degenerate():
    for symbols, alphabet in (([], 4), ([3, 3, 3], 4), ([0], 1)):
        assert ans_encode(symbols, alphabet) == b""
        bits = coded_bits(symbols, alphabet)
        assert bits == 0.0 and type(bits) is float
    np.testing.assert_array_equal(decode_coded(b"", [0, 0, 0, 3]), [3, 3, 3])
    assert decode_coded(b"", [0, 0]).size == 0


def test_coded_bits_errors():
    s = np.random.default_rng(0).integers(0, 5, 1000)
    counts = np.bincount(s, minlength=5)
    payload = ans_encode(s, 5)
    with pytest.raises(ValueError, match="corrupt payload"):
        decode_coded(payload[:-4], counts)
    with pytest.raises(ValueError, match="corrupt payload"):
        decode_coded(payload[:-1], counts)
    with pytest.raises(ValueError, match="corrupt payload"):
        decode_coded(payload, counts + 1)
    with pytest.raises(ValueError, match="corrupt payload"):
        decode_coded(b"\x00" * 4, [0, 5])
    with pytest.raises(ValueError, match="counts must be"):
        decode_coded(payload, [1.0, 2.0])
    for code in (ans_encode, coded_bits):
        with pytest.raises(ValueError, match="below 2\\*\\*24"):
            code([0, 1], 2**24)


# --- quantization -----------------------------------------------------------------------


@given(seed=st.integers(0, 2**32 - 1), q=st.integers(2, 32), n=st.integers(1, 200))
def test_quantize_uniform_matches_definition(seed, q, n):
    w = (np.random.default_rng(seed).standard_normal(n) * 10.0 ** (seed % 7 - 3)).astype(
        np.float32
    )
    ints, scale = quantize_uniform(w, q)
    levels = 2 ** (q - 1) - 1
    exact = float(np.abs(w).max()) / levels
    assert float(np.float32(scale)) == scale  # stored in 32 bits
    assert exact <= scale <= exact * (1 + 2**-23)
    assert ints.dtype == np.int32 and ints.shape == w.shape
    expected = [max(-levels, min(levels, round(float(x) / scale))) for x in w]
    assert ints.tolist() == expected
    assert np.abs(ints).max() <= levels
    back = dequantize_uniform(ints, scale)
    assert back.dtype == np.float32
    # Half a step, plus the rounding of the result to float32.
    assert np.all(np.abs(back.astype(np.float64) - w) <= scale / 2 + np.spacing(np.abs(w)))


def test_quantize_edge_cases():
    ints, scale = quantize_uniform(np.zeros((2, 3)), 8)
    assert scale == 0.0 and ints.shape == (2, 3) and not ints.any()
    ints, scale = quantize_uniform([-1.0, 1.0, 0.25], 8)
    assert ints.tolist() == [-127, 127, 32] and scale == pytest.approx(1 / 127)
    for bad_q in (1, 33, 8.0, True):
        with pytest.raises(ValueError, match="q must be an integer in \\[2, 32\\]"):
            quantize_uniform([1.0], bad_q)
    with pytest.raises(ValueError, match="empty"):
        quantize_uniform([], 8)
    with pytest.raises(ValueError, match="non-finite"):
        quantize_uniform([1.0, np.nan], 8)
    with pytest.raises(TypeError, match="integers"):
        dequantize_uniform([0.5], 1.0)


def test_quantized_bits():
    w = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    for q in (2, 4, 8):
        ints, _ = quantize_uniform(w, q)
        sym = ints.ravel().astype(np.int64) + 2 ** (q - 1) - 1
        assert quantized_bits(w, q) == 1000 * q + 32
        assert quantized_bits(w, q, "entropy") == pytest.approx(entropy_bits(sym) + 32)
        assert quantized_bits(w, q, "two_part") == pytest.approx(
            two_part_bits(sym, 2**q - 1) + 32
        )
        assert quantized_bits(w, q, "entropy") <= quantized_bits(w, q) + 1e-9
    assert list(QUANTIZED_CODES) == ["fixed", "entropy", "two_part"]
    with pytest.raises(ValueError, match="unknown code 'huffman'; valid: 'fixed'"):
        quantized_bits(w, 8, "huffman")


def test_quantized_bits_torch():
    torch = pytest.importorskip("torch")
    w = torch.randn(50, requires_grad=True)
    assert quantized_bits(w, 4, "entropy") == quantized_bits(w.detach().numpy(), 4, "entropy")
