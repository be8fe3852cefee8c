"""kcomplex.BDM against pybdm 0.1.0, the reference implementation.

The oracle values of ``docs/bdm.md`` pin a few numbers; hypothesis then compares
random (mostly structured) inputs over every table, several block sizes and all three
partitions. Known, intended differences from pybdm are not compared here (see
``test_bdm.py``): normalized values under the recursive partition, and input too short
for one block (pybdm returns 0 or raises something unhelpful, we raise a clear error).
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import naive
import numpy as np
import pybdm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pybdm import PartitionCorrelated, PartitionIgnore, PartitionRecursive

from kcomplex import BDM

ALPHABETS = (2, 4, 5, 6, 9)
PARTITIONS = ("ignore", "recursive", "correlated")
SIZES_1D = (1, 2, 3, 5, 8, 11, 12)
TOL = 1e-9

# -- oracle values (docs/bdm.md) ------------------------------------------------------

NBDM_2D = np.array([[0, 0, 1, 0], [1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 1, 0]])
ORACLE = [
    # id, BDM options, input, method, value
    ("zeros24-bdm", {}, np.zeros(24, dtype=int), "bdm", 26.610413747641715),
    ("zeros24-ent", {}, np.zeros(24, dtype=int), "ent", 0.0),
    ("halves-bdm", {}, np.repeat([0, 1], 12), "bdm", 51.22082749528343),
    ("halves-ent", {}, np.repeat([0, 1], 12), "ent", 1.0),
    ("ones100-ignore", {}, np.ones(100, dtype=int), "bdm", 28.610413747641715),
    (
        "ones100-recursive",
        {"partition": "recursive"},
        np.ones(100, dtype=int),
        "bdm",
        36.541241731158856,
    ),
    (
        "ones100-correlated",
        {"partition": "correlated", "shift": 1},
        np.ones(100, dtype=int),
        "bdm",
        32.086147178608115,
    ),
    ("2d-ones12", {"ndim": 2}, np.ones((12, 12), dtype=int), "bdm", 25.176631293734488),
    ("2d-ones4", {"ndim": 2}, np.ones((4, 4), dtype=int), "bdm", 22.006706292292176),
    ("2d-eye4", {"ndim": 2}, np.eye(4, dtype=int), "bdm", 23.2385807669306),
    ("2d-eye8", {"ndim": 2}, np.eye(8, dtype=int), "bdm", 47.245287059222775),
    ("4sym", {"n_symbols": 4}, np.arange(12) % 4, "bdm", 34.8511652922343),
    ("9sym", {"n_symbols": 9}, np.arange(12) % 9, "bdm", 52.4124435234676),
    ("2d-nbdm", {"ndim": 2}, NBDM_2D, "nbdm", 0.6139131118181638),
]
ORACLE_PARAMS = [pytest.param(*row[1:], id=row[0]) for row in ORACLE]


@pytest.mark.parametrize(("options", "x", "method", "expected"), ORACLE_PARAMS)
def test_oracle_values(options, x, method, expected):
    got = getattr(BDM(**options), method)(x)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=0, abs=1e-12)


@pytest.mark.parametrize(("options", "x", "method", "expected"), ORACLE_PARAMS)
def test_oracle_values_are_pybdms(options, x, method, expected):
    """The table itself is what pybdm computes (guards the documentation)."""
    got = getattr(reference(**options), method)(x)
    assert got == pytest.approx(expected, rel=0, abs=1e-12)


# -- pybdm wrapper ----------------------------------------------------------------------


@lru_cache(maxsize=None)
def reference(
    ndim=1, n_symbols=2, shape=None, partition="ignore", min_length=2, shift=1
) -> pybdm.BDM:
    """pybdm configured like ``kcomplex.BDM(**same options)``."""
    size = shape or (12 if ndim == 1 else 4)
    kwds = {}
    if partition == "recursive":
        kwds["min_length"] = min_length
    elif partition == "correlated":
        kwds["shift"] = shift
    cls = {
        "ignore": PartitionIgnore,
        "recursive": PartitionRecursive,
        "correlated": PartitionCorrelated,
    }[partition]
    return pybdm.BDM(
        ndim,
        n_symbols,
        shape=(size,) * ndim,
        partition=cls,
        warn_if_missing_ctm=False,
        raise_if_zero=False,
        **kwds,
    )


def pybdm_value(bdm: pybdm.BDM, method: str, x: np.ndarray) -> float:
    """pybdm's value; NaN where its normalization divides zero by zero."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return float(getattr(bdm, method)(x))
        except ZeroDivisionError:
            return math.nan


def has_block(length: int, size: int, partition: str, min_length: int) -> bool:
    if length >= size:
        return True
    return partition == "recursive" and length >= min_length


def arrays(draw, shape, n_symbols):
    kind = draw(st.sampled_from(naive.KINDS))
    seed = draw(st.integers(0, 2**32 - 1))
    return naive.symbols(np.random.default_rng(seed), shape, n_symbols, kind)


# -- bdm and ent, 1-D -----------------------------------------------------------------


@st.composite
def cases_1d(draw, n_symbols):
    options = {
        "n_symbols": n_symbols,
        "shape": draw(st.sampled_from(SIZES_1D)),
        "partition": draw(st.sampled_from(PARTITIONS)),
        "min_length": draw(st.integers(1, 4)),
        "shift": draw(st.integers(1, 5)),
    }
    length = draw(st.one_of(st.integers(0, 30), st.integers(0, 2000)))
    return options, arrays(draw, (length,), n_symbols)


def check_against_pybdm(options: dict, x: np.ndarray, exact: bool) -> None:
    ours = BDM(**options)
    if not has_block(x.shape[0], ours.size, ours.partition, ours.min_length):
        for method in ("bdm", "ent"):
            with pytest.raises(ValueError, match=r"smaller block.*partition='recursive'"):
                getattr(ours, method)(x)
        return
    theirs = reference(**options)
    b, e = ours.bdm(x), ours.ent(x)
    assert b == pytest.approx(pybdm_value(theirs, "bdm", x), rel=0, abs=TOL)
    assert e == pytest.approx(pybdm_value(theirs, "ent", x), rel=0, abs=TOL)
    if exact:
        # Same blocks in the same order of first appearance, summed the same way.
        assert b == pybdm_value(theirs, "bdm", x)


@pytest.mark.parametrize("n_symbols", ALPHABETS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_1d_matches_pybdm(n_symbols, data):
    options, x = data.draw(cases_1d(n_symbols))
    check_against_pybdm(options, x, exact=options["partition"] != "recursive")


# -- bdm and ent, 2-D -----------------------------------------------------------------


@st.composite
def cases_2d(draw):
    options = {
        "ndim": 2,
        "shape": draw(st.integers(2, 4)),
        "partition": draw(st.sampled_from(PARTITIONS)),
        "min_length": draw(st.integers(1, 3)),
        "shift": draw(st.integers(1, 4)),
    }
    h, w = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    return options, arrays(draw, (h, w), 2)


def has_block_2d(shape, size, partition, min_length) -> bool:
    h, w = shape
    if min(h, w) >= size:
        return True
    # Recursive: an edge of side min(h, w) >= min_length is re-tiled.
    return partition == "recursive" and min(h, w) >= min_length


@settings(max_examples=60, deadline=None)
@given(case=cases_2d())
def test_2d_matches_pybdm(case):
    options, x = case
    ours = BDM(**options)
    if not has_block_2d(x.shape, ours.size, ours.partition, ours.min_length):
        with pytest.raises(ValueError, match=r"smaller block.*partition='recursive'"):
            ours.bdm(x)
        return
    theirs = reference(**options)
    assert ours.bdm(x) == pytest.approx(pybdm_value(theirs, "bdm", x), rel=0, abs=TOL)
    assert ours.ent(x) == pytest.approx(pybdm_value(theirs, "ent", x), rel=0, abs=TOL)
    if options["partition"] != "recursive":
        assert ours.bdm(x) == pybdm_value(theirs, "bdm", x)


@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize(("n_symbols", "size"), [(2, 12), (2, 3), (4, 5), (9, 12)])
def test_1d_too_short_for_one_block(partition, n_symbols, size):
    ours = BDM(n_symbols=n_symbols, shape=size, partition=partition, min_length=3)
    rng = np.random.default_rng(size)
    for length in range(size):
        x = rng.integers(0, n_symbols, length)
        if has_block(length, size, partition, min_length=3):
            continue
        for method in ("bdm", "ent", "nbdm", "nent", "count"):
            with pytest.raises(ValueError, match=r"smaller block.*partition='recursive'"):
                getattr(ours, method)(x)


@pytest.mark.parametrize("partition", PARTITIONS)
@pytest.mark.parametrize("length", [12, 13, 23, 24, 25, 36])
def test_1d_block_boundaries_match_pybdm(partition, length):
    """Lengths around multiples of the block, each alphabet, exactly where edges start."""
    for n_symbols in ALPHABETS:
        x = np.random.default_rng(length).integers(0, n_symbols, length)
        check_against_pybdm(
            {"n_symbols": n_symbols, "partition": partition}, x, partition != "recursive"
        )


# -- normalized variants, ignore partition ----------------------------------------------


def check_normalized(options: dict, x: np.ndarray) -> None:
    ours, theirs = BDM(**options), reference(**options)
    for method in ("nbdm", "nent"):
        expected = pybdm_value(theirs, method, x)
        if math.isnan(expected):  # one block: least and most complex objects coincide
            with pytest.raises(ValueError, match="undefined"):
                getattr(ours, method)(x)
        else:
            assert getattr(ours, method)(x) == pytest.approx(expected, rel=0, abs=TOL)


@pytest.mark.parametrize("blocks", ["up to 10", "11 and 12"])
@pytest.mark.parametrize("n_symbols", ALPHABETS)
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_1d_normalized_matches_pybdm_ignore(n_symbols, blocks, data):
    """Split by block size: the tables of 4, 5, 6 and 9 symbols lack some blocks of
    length 11 and 12 (all of the binary table is there)."""
    sizes = SIZES_1D[1:-2] if blocks == "up to 10" else (11, 12)
    size = data.draw(st.sampled_from(sizes))
    length = data.draw(st.integers(size, 1500))
    x = arrays(data.draw, (length,), n_symbols)
    check_normalized({"n_symbols": n_symbols, "shape": size}, x)


@pytest.mark.parametrize(
    ("n_symbols", "size", "length", "kind"),
    [(2, 12, 500, "runs"), (2, 3, 50, "uniform"), (4, 12, 300, "sparse"), (4, 2, 40, "few"),
     (5, 8, 300, "uniform"), (6, 11, 200, "periodic"), (9, 5, 400, "uniform")],
)
def test_naive_normalization_is_pybdms_under_ignore(n_symbols, size, length, kind):
    """The oracle's normalization (used for the recursive partition in test_bdm.py)
    reproduces pybdm's construction where pybdm's is right: one block shape."""
    x = naive.symbols(np.random.default_rng(length), (length,), n_symbols, kind)
    theirs = reference(n_symbols=n_symbols, shape=size)
    assert naive.nbdm(x, n_symbols, size) == pytest.approx(
        pybdm_value(theirs, "nbdm", x), abs=TOL
    )
    assert naive.nent(x, n_symbols, size) == pytest.approx(
        pybdm_value(theirs, "nent", x), abs=TOL
    )


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_2d_normalized_matches_pybdm_ignore(data):
    size = data.draw(st.integers(2, 4))
    h, w = data.draw(st.integers(size, 40)), data.draw(st.integers(size, 40))
    x = arrays(data.draw, (h, w), 2)
    check_normalized({"ndim": 2, "shape": size}, x)


def test_normalized_single_block_is_undefined():
    """pybdm divides 0 by 0 (NaN) for the entropy of one block; we raise instead."""
    x = np.zeros(12, dtype=int)
    assert math.isnan(pybdm_value(reference(), "nent", x))
    with pytest.raises(ValueError, match="undefined"):
        BDM().nent(x)
