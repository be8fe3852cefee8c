"""kcomplex.ctm_bits and algorithmic_probability against pybdm 0.1.0 and acss.

The oracle is pybdm's own lookup of one block (its string key, normalized by pybdm,
looked up in its unpickled table), independent of kcomplex's ranking of blocks. The
published values of the R package acss (its test suite and guide) pin a few numbers.
"""

from __future__ import annotations

import itertools
import warnings
from functools import lru_cache

import numpy as np
import pybdm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcomplex.ctm_query import algorithmic_probability, ctm_bits

ALPHABETS = (2, 4, 5, 6, 9)


@lru_cache(maxsize=1)  # the 9-symbol table takes a gigabyte as pybdm holds it: one at a time
def reference(ndim: int, n_symbols: int) -> pybdm.BDM:
    return pybdm.BDM(ndim, n_symbols, warn_if_missing_ctm=False)


def pybdm_ctm(block: np.ndarray, n_symbols: int) -> float:
    """pybdm's CTM of one block, whatever its shape."""
    ((_, value),) = reference(block.ndim, n_symbols).lookup([np.asarray(block)])
    return float(value)


def pybdm_has(block: np.ndarray, n_symbols: int) -> bool:
    """Whether pybdm's table holds ``block`` (else it scores the table's max + 1)."""
    key = pybdm.encoding.normalize_key(pybdm.encoding.string_from_array(block))
    return key in reference(block.ndim, n_symbols)._ctm[block.shape]


@st.composite
def strings(draw, n_symbols: int, max_length: int = 12) -> np.ndarray:
    """Strings over the first ``used`` symbols, relabelled: structured and random ones
    (uniform strings over 9 symbols are mostly absent from the table)."""
    used = draw(st.integers(1, n_symbols))
    x = draw(st.lists(st.integers(0, used - 1), min_size=1, max_size=max_length))
    labels = draw(st.permutations(range(n_symbols)))
    return np.array(labels, dtype=np.int64)[np.array(x, dtype=np.int64)]


# -- acss's published values -----------------------------------------------------------

# acss 0.2-5, tests/testthat/test-acss.R: acss(c("01011100", "00030101"), alphabet =
# c(2, 4)) and, from the acss guide, acss("010120123", alphabet = 5).
ACSS = [
    ("01011100", 2, 22.0030069458495, 2.37922171238823e-07, 1e-13),
    ("01011100", 4, 24.75269450012, 3.53750027225721e-08, 1e-13),
    ("00030101", 4, 24.9239869906869, 3.14146556992709e-08, 1e-13),
    ("010120123", 5, 30.03474, 9.091617e-10, 1e-6),
]


@pytest.mark.parametrize(("x", "n_symbols", "k", "d", "rel"), ACSS)
def test_acss_published_values(x, n_symbols, k, d, rel):
    assert ctm_bits(x, n_symbols) == pytest.approx(k, rel=rel, abs=0)
    assert algorithmic_probability(x, n_symbols) == pytest.approx(d, rel=rel, abs=0)


def test_acss_na_is_an_error():
    # acss gives NA for "00030101" over 2 symbols: it holds a 3.
    with pytest.raises(ValueError, match=r"outside \[0, 2\), first 3 at index \(3,\)"):
        ctm_bits("00030101", 2)


# -- pybdm's lookup of one block ----------------------------------------------------------


def test_binary_strings_up_to_8_exhaustive():
    n = 0
    for length in range(1, 9):
        for t in itertools.product((0, 1), repeat=length):
            x = np.array(t)
            expected = pybdm_ctm(x, 2)
            assert ctm_bits(x) == expected
            assert ctm_bits("".join(map(str, t))) == expected
            n += 1
    assert n == 510


@pytest.mark.parametrize("n_symbols", ALPHABETS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_strings_match_pybdm(n_symbols, data):
    x = data.draw(strings(n_symbols))
    assert ctm_bits(x, n_symbols) == pybdm_ctm(x, n_symbols)
    assert ctm_bits(x.tolist(), n_symbols) == pybdm_ctm(x, n_symbols)


def test_absent_block_scores_pybdms_missing_value():
    # Right after the 9-symbol hypothesis test, whose table is still loaded.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, 12)
    while pybdm_has(x, 9):
        x = rng.integers(0, 9, 12)
    expected = reference(1, 9)._ctm_missing[(12,)]
    assert ctm_bits(x, 9) == pybdm_ctm(x, 9) == expected


@settings(max_examples=40, deadline=None)
@given(x=st.lists(st.integers(0, 1), min_size=12, max_size=12))
def test_length_12_is_pybdms_bdm_of_one_block(x):
    # One block seen once: BDM = CTM + log2(1).
    x = np.array(x)
    assert ctm_bits(x) == pybdm.BDM(ndim=1).bdm(x)


@pytest.mark.parametrize("side", [1, 2, 3])
def test_binary_squares_up_to_3x3_exhaustive(side):
    for t in itertools.product((0, 1), repeat=side * side):
        x = np.array(t).reshape(side, side)
        assert ctm_bits(x) == pybdm_ctm(x, 2)


@settings(max_examples=80, deadline=None)
@given(side=st.sampled_from([3, 4]), seed=st.integers(0, 2**32 - 1),
       p=st.sampled_from([0.1, 0.5, 0.9]))
def test_binary_squares_match_pybdm(side, seed, p):
    x = (np.random.default_rng(seed).random((side, side)) < p).astype(np.int64)
    assert ctm_bits(x) == pybdm_ctm(x, 2)
    if side == 4:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert ctm_bits(x) == pybdm.BDM(ndim=2).bdm(x)


# -- properties of the tables ---------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(x=st.lists(st.integers(0, 1), min_size=1, max_size=12))
def test_binary_complement_and_reversal_keep_ctm(x):
    x = np.array(x)
    value = ctm_bits(x)
    assert ctm_bits(1 - x) == value
    assert ctm_bits(x[::-1]) == value
    assert 0 < algorithmic_probability(x) == 2.0**-value < 1


@pytest.mark.parametrize("n_symbols", [4, 5])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_relabelling_and_reversal_keep_ctm(n_symbols, data):
    x = data.draw(strings(n_symbols))
    labels = np.array(data.draw(st.permutations(range(n_symbols))))
    value = ctm_bits(x, n_symbols)
    assert ctm_bits(labels[x], n_symbols) == value
    assert ctm_bits(x[::-1], n_symbols) == value


@settings(max_examples=100, deadline=None)
@given(side=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_square_symmetries_keep_ctm(side, seed):
    x = np.random.default_rng(seed).integers(0, 2, (side, side))
    value = ctm_bits(x)
    for y in (1 - x, x.T, np.rot90(x), np.rot90(x, 2), x[::-1], x[:, ::-1]):
        assert ctm_bits(y) == value


@pytest.mark.parametrize("length", range(1, 9))
def test_constant_strings_are_the_simplest(length):
    values = [ctm_bits(np.array(t)) for t in itertools.product((0, 1), repeat=length)]
    assert min(values) == ctm_bits("0" * length)
    # All 0s and all 1s, nothing else (at length 2 every string is as simple).
    assert values.count(min(values)) == (4 if length == 2 else 2)


# -- input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("x", [
    "0110", [0, 1, 1, 0], (0, 1, 1, 0), np.array([0, 1, 1, 0], dtype=np.uint8),
    np.array([0, 1, 1, 0], dtype=np.int16), [np.int64(0), 1, 1, np.uint8(0)],
])
def test_input_forms_agree(x):
    assert ctm_bits(x) == pybdm_ctm(np.array([0, 1, 1, 0]), 2)


def test_nested_lists_are_squares():
    assert ctm_bits([[0, 1], [1, 0]]) == pybdm_ctm(np.array([[0, 1], [1, 0]]), 2)


ERRORS = [
    # x, n_symbols, exception, message
    ("0" * 13, 2, ValueError, r"strings of 1 to 12 symbols: .*kcomplex\.bdm"),
    ([0] * 13, 9, ValueError, r"strings of 1 to 12 symbols"),
    (np.zeros((5, 5), dtype=int), 2, ValueError, r"squares of side 1 to 4: .*kcomplex\.bdm"),
    (np.zeros((2, 3), dtype=int), 2, ValueError, r"shape \(2, 3\).*square"),
    (np.zeros((2, 2, 2), dtype=int), 2, ValueError, r"shape \(2, 2, 2\)"),
    ("", 2, ValueError, "non-empty"),
    ([], 2, ValueError, "non-empty"),
    ("0110", 3, ValueError, r"n_symbols=3; 1-D tables exist for n_symbols in \{2, 4, 5, 6, 9\}"),
    (np.zeros((2, 2), dtype=int), 4, ValueError, r"2-D tables exist for n_symbols in \{2\}"),
    ("01a", 2, ValueError, "string of digits"),
    ("0١", 2, ValueError, "string of digits"),  # an Arabic-Indic digit
    ([0, 1, 2], 2, ValueError, r"outside \[0, 2\), first 2 at index \(2,\)"),
    (np.array([[0, 1], [-1, 0]]), 2, ValueError, r"first -1 at index \(1, 0\)"),
    ([2**70], 2, ValueError, "larger than any CTM alphabet"),
    ([True, False], 2, TypeError, "bool is not a symbol"),
    ([0, np.True_], 2, TypeError, "bool is not a symbol"),
    (np.array([True, False]), 2, TypeError, "bool array"),
    (np.array([0.0, 1.0]), 2, TypeError, "dtype float64"),
    ([0.0, 1.0], 2, TypeError, r"got 0\.0 \(float\)"),
    (["0", "1"], 2, TypeError, r"got '0' \(str\)"),
    ([[0, 1], [1]], 2, TypeError, "rectangular"),
    (b"01", 2, TypeError, "got bytes"),
    (3, 2, TypeError, "got int"),
    ("01", 2.0, TypeError, "n_symbols must be an integer"),
    ("01", True, TypeError, "n_symbols must be an integer"),
]


@pytest.mark.parametrize(("x", "n_symbols", "exc", "match"), ERRORS)
def test_errors(x, n_symbols, exc, match):
    with pytest.raises(exc, match=match):
        ctm_bits(x, n_symbols)
    with pytest.raises(exc, match=match):
        algorithmic_probability(x, n_symbols)
