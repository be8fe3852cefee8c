"""kcomplex.BDM against the slow oracle of ``tests/naive.py``, and its own invariants:
merge == whole, pickling, symmetries, bounds, input handling and error messages."""

from __future__ import annotations

import functools
import math
import operator
import pickle

import naive
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kcomplex
from kcomplex import BDM, BlockCounts

ALPHABETS = (2, 4, 5, 6, 9)
PARTITIONS = ("ignore", "recursive", "correlated")
TOL = 1e-9


def arrays(draw, shape, n_symbols):
    kind = draw(st.sampled_from(naive.KINDS))
    seed = draw(st.integers(0, 2**32 - 1))
    return naive.symbols(np.random.default_rng(seed), shape, n_symbols, kind)


def rng_array(seed, shape, n_symbols=2, kind="uniform"):
    return naive.symbols(np.random.default_rng(seed), shape, n_symbols, kind)


def assert_counts_equal(ours: BlockCounts, expected: dict) -> None:
    """Same blocks, multiplicities, and order of first appearance (per shape and of the
    shapes), as pybdm's ``Counter`` sees them."""
    got = naive.as_naive(ours)
    assert got == expected
    assert list(got) == list(expected)
    for shape in got:
        assert list(got[shape]) == list(expected[shape])
    assert ours.n_blocks == sum(sum(g.values()) for g in expected.values())
    assert ours.n_distinct == sum(len(g) for g in expected.values())


# -- against the naive oracle -----------------------------------------------------------


@st.composite
def cases_1d(draw):
    n_symbols = draw(st.sampled_from(ALPHABETS))
    size = draw(st.integers(1, 12))
    options = {
        "partition": draw(st.sampled_from(PARTITIONS)),
        "min_length": draw(st.integers(1, 4)),
        "shift": draw(st.integers(1, 5)),
    }
    length = draw(st.integers(size, 600))
    return n_symbols, size, options, arrays(draw, (length,), n_symbols)


@settings(max_examples=60, deadline=None)
@given(case=cases_1d())
def test_1d_matches_naive(case):
    n_symbols, size, options, x = case
    ours = BDM(n_symbols=n_symbols, shape=size, **options)
    expected = naive.count(x, size, **options)
    assert_counts_equal(ours.count(x), expected)
    assert ours.bdm(x) == pytest.approx(naive.bdm_of_counts(expected, n_symbols), abs=TOL)
    assert ours.ent(x) == pytest.approx(naive.ent_of_counts(expected), abs=TOL)


@st.composite
def cases_2d(draw):
    size = draw(st.integers(1, 4))
    options = {
        "partition": draw(st.sampled_from(PARTITIONS)),
        "min_length": draw(st.integers(1, 3)),
        "shift": draw(st.integers(1, 4)),
    }
    h, w = draw(st.integers(size, 45)), draw(st.integers(size, 45))
    return size, options, arrays(draw, (h, w), 2)


@settings(max_examples=60, deadline=None)
@given(case=cases_2d())
def test_2d_matches_naive(case):
    size, options, x = case
    ours = BDM(ndim=2, shape=size, **options)
    expected = naive.count(x, size, **options)
    assert_counts_equal(ours.count(x), expected)
    assert ours.bdm(x) == pytest.approx(naive.bdm_of_counts(expected, 2), abs=TOL)
    assert ours.ent(x) == pytest.approx(naive.ent_of_counts(expected), abs=TOL)


@pytest.mark.parametrize(
    ("n_symbols", "shape", "kind"),
    [
        (2, (12 * (2**16 + 5),), "uniform"),  # dense counter
        (4, (12 * (2**16 + 2048),), "uniform"),  # first-seen bitmap past 2**16 keys
        (5, (12 * (2**16 + 2048),), "uniform"),  # hash counter grown past 2**16 keys
        (2, (4 * 257, 4 * 256 + 3), "sparse"),  # 2-D, 65,792 blocks
    ],
    ids=["1d-binary", "1d-4sym", "1d-5sym", "2d-binary"],
)
def test_past_2_16_blocks(n_symbols, shape, kind):
    """int64 counters and indices: nothing wraps at 65,536 blocks or distinct keys."""
    x = rng_array(7, shape, n_symbols, kind)
    ours = BDM(ndim=len(shape), n_symbols=n_symbols)
    expected = naive.count(x, ours.size)
    counts = ours.count(x)
    assert counts.n_blocks > 2**16
    assert_counts_equal(counts, expected)
    if n_symbols > 2:
        assert counts.n_distinct > 2**16
    assert ours.bdm_from_counts(counts) == pytest.approx(
        naive.bdm_of_counts(expected, n_symbols), rel=1e-12
    )


# -- normalized values over the actual blocks -------------------------------------------


@st.composite
def cases_normalized(draw, ndim, n_symbols):
    size = draw(st.integers(2, 12 if ndim == 1 else 4))
    partition = draw(st.sampled_from(["ignore", "recursive"]))
    min_length = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(size + 1, 300 if ndim == 1 else 30)) for _ in range(ndim))
    return ndim, n_symbols, size, partition, min_length, arrays(draw, shape, n_symbols)


@pytest.mark.parametrize(("ndim", "n_symbols"), [(1, 2), (2, 2), (1, 4)])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_normalized_use_the_actual_blocks(ndim, n_symbols, data):
    """Documented behaviour, differing from pybdm under the recursive partition: the
    least and most complex objects have the same blocks per shape as the input (pybdm
    counts phantom shapes for leftovers shorter than min_length and merges block
    indices across shapes)."""
    _, _, size, partition, min_length, x = data.draw(cases_normalized(ndim, n_symbols))
    ours = BDM(ndim, n_symbols, shape=size, partition=partition, min_length=min_length)
    opts = {"size": size, "partition": partition, "min_length": min_length}
    for method in ("nbdm", "nent"):
        try:
            expected = getattr(naive, method)(x, n_symbols, **opts)
        except ZeroDivisionError:  # least and most complex objects coincide
            with pytest.raises(ValueError, match="undefined"):
                getattr(ours, method)(x)
        else:
            assert getattr(ours, method)(x) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("n_symbols", [4, 5, 6, 9])
def test_nbdm_default_block_with_incomplete_table(n_symbols):
    """The 12-symbol tables of larger alphabets lack some blocks (NaN in the dense
    array); the least complex block is still the table's minimum, so nbdm is finite."""
    x = np.zeros(24, dtype=np.uint8)  # least complex object: nbdm 0 exactly (pybdm: 0.0)
    assert BDM(n_symbols=n_symbols).nbdm(x) == pytest.approx(0.0, abs=TOL)
    x = np.arange(120) % n_symbols
    value = BDM(n_symbols=n_symbols).nbdm(x)
    assert value == pytest.approx(naive.nbdm(x, n_symbols), abs=TOL)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_normalized_bounds(data):
    """nbdm in [0, 1] for the binary tables (complete, so no block scores max + 1) and
    nent in [0, 1] for every alphabet, under the ignore partition."""
    ndim = data.draw(st.sampled_from([1, 2]))
    n_symbols = 2 if ndim == 2 else data.draw(st.sampled_from(ALPHABETS))
    size = data.draw(st.integers(2, 12 if ndim == 1 else 4))
    shape = tuple(data.draw(st.integers(2 * size, 400 if ndim == 1 else 40)) for _ in range(ndim))
    x = arrays(data.draw, shape, n_symbols)
    ours = BDM(ndim, n_symbols, shape=size)
    # Up to rounding: all blocks distinct gives sum(-p log2 p) / log2(n) = 1 + 4e-16,
    # as in pybdm.
    eps = 1e-12
    assert -eps <= ours.nent(x) <= 1.0 + eps
    if n_symbols == 2:
        assert -eps <= ours.nbdm(x) <= 1.0 + eps


def test_normalized_extremes():
    ours = BDM()
    assert ours.nbdm(np.zeros(120, dtype=int)) == pytest.approx(0.0, abs=TOL)
    assert ours.nent(np.zeros(120, dtype=int)) == 0.0
    distinct = np.array([naive.decode(k, 12, 2) for k in range(10)]).ravel()
    assert ours.nent(distinct) == pytest.approx(1.0, abs=TOL)


def test_normalized_undefined_and_correlated():
    with pytest.raises(ValueError, match="undefined"):
        BDM().nent(np.zeros(12, dtype=int))  # one block: least == most entropic
    with pytest.raises(ValueError, match="undefined"):
        BDM(shape=1).nbdm(np.zeros(1, dtype=int))  # one block, and a table of one
    for method in ("nbdm", "nent"):
        with pytest.raises(NotImplementedError, match="correlated"):
            getattr(BDM(partition="correlated"), method)(np.zeros(24, dtype=int))


# -- merge == whole -----------------------------------------------------------------------


def cut(draw, n: int, step: int, max_pieces: int = 5) -> list[int]:
    """Sorted cut points at multiples of ``step`` strictly inside ``[0, n]``."""
    grid = list(range(step, n, step))
    if not grid:
        return []
    return sorted(set(draw(st.lists(st.sampled_from(grid), max_size=max_pieces))))


def assert_merge_equals_whole(ours: BDM, x: np.ndarray, pieces: list[np.ndarray]) -> None:
    # A last piece too short for any block (the leftover edge) is left out, as it is
    # from the whole.
    opts = {"partition": ours.partition, "min_length": ours.min_length}
    pieces = [p for p in pieces if naive.blocks(p, ours.size, **opts)]
    whole = ours.count(x)
    merged = functools.reduce(operator.add, (ours.count(p) for p in pieces))
    assert merged == whole
    assert ours.bdm_from_counts(merged) == ours.bdm(x)  # to the last bit
    assert ours.ent_from_counts(merged) == ours.ent(x)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_merge_equals_whole_1d(data):
    n_symbols = data.draw(st.sampled_from(ALPHABETS))
    size = data.draw(st.sampled_from([3, 4, 12]))
    ours = BDM(n_symbols=n_symbols, shape=size,
               partition=data.draw(st.sampled_from(["ignore", "recursive"])))
    x = arrays(data.draw, (data.draw(st.integers(size, 800)),), n_symbols)
    bounds = [0, *cut(data.draw, x.size, size), x.size]
    assert_merge_equals_whole(ours, x, [x[a:b] for a, b in zip(bounds, bounds[1:])])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_merge_equals_whole_2d(data):
    size = data.draw(st.integers(2, 4))
    ours = BDM(ndim=2, shape=size,
               partition=data.draw(st.sampled_from(["ignore", "recursive"])))
    h, w = data.draw(st.integers(size, 60)), data.draw(st.integers(size, 60))
    x = arrays(data.draw, (h, w), 2)
    bounds = [0, *cut(data.draw, h, size), h]
    assert_merge_equals_whole(ours, x, [x[a:b] for a, b in zip(bounds, bounds[1:])])


def test_merge_rejects_other_tables():
    a = BDM().count(np.zeros(12, dtype=int))
    b = BDM(n_symbols=4).count(np.zeros(12, dtype=int))
    with pytest.raises(ValueError, match="cannot merge"):
        a + b
    with pytest.raises(TypeError):
        a + 1
    with pytest.raises(ValueError, match="n_symbols=4"):
        BDM().bdm_from_counts(b)


@pytest.mark.parametrize(
    ("options", "shape"),
    [
        ({}, (500,)),  # dense
        ({"n_symbols": 9, "partition": "recursive"}, (500,)),  # hash, two groups
        ({"ndim": 2, "partition": "recursive"}, (30, 29)),  # dense, several groups
    ],
)
def test_counts_pickle_round_trip(options, shape):
    ours = BDM(**options)
    x = rng_array(3, shape, ours.n_symbols, "runs")
    counts = ours.count(x)
    back = pickle.loads(pickle.dumps(counts))
    assert back == counts
    assert back is not counts
    assert back.n_blocks == counts.n_blocks and back.n_distinct == counts.n_distinct
    assert ours.bdm_from_counts(back) == ours.bdm(x)
    assert ours.ent_from_counts(back) == ours.ent(x)
    assert back + counts == counts + counts


# -- symmetries ---------------------------------------------------------------------------


@pytest.mark.parametrize("partition", PARTITIONS)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_binary_complement_invariance(partition, data):
    """0 and 1 swapped gives the same canonical blocks, counts and order: equal bits."""
    ndim = data.draw(st.sampled_from([1, 2]))
    size = data.draw(st.integers(2, 12 if ndim == 1 else 4))
    shape = tuple(data.draw(st.integers(size, 300 if ndim == 1 else 30)) for _ in range(ndim))
    x = arrays(data.draw, shape, 2)
    ours = BDM(ndim, shape=size, partition=partition)
    assert ours.bdm(x) == ours.bdm(1 - x)
    assert ours.ent(x) == ours.ent(1 - x)


@pytest.mark.parametrize("partition", PARTITIONS)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_2d_transpose_invariance(partition, data):
    """Holds for every partition: every partition is symmetric in the two axes and the
    2-D table gives a block and its transpose the same CTM (checked directly below)."""
    size = data.draw(st.integers(1, 4))
    h, w = data.draw(st.integers(size, 40)), data.draw(st.integers(size, 40))
    x = arrays(data.draw, (h, w), 2)
    ours = BDM(2, shape=size, partition=partition)
    assert ours.bdm(x) == pytest.approx(ours.bdm(x.T), abs=TOL)
    assert ours.ent(x) == pytest.approx(ours.ent(x.T), abs=TOL)


def test_2d_table_is_transpose_symmetric():
    for shape, table in naive.ctm_dict(2, 2).items():
        for key, value in table.items():
            block = np.array(list(key), dtype=int).reshape(shape)
            assert table[naive.canonical(block.T.flat)] == value


# -- input handling -----------------------------------------------------------------------


def test_bool_and_integer_inputs_agree():
    x = rng_array(1, (300,), 2, "runs")
    expected = BDM().bdm(x)
    assert BDM().bdm(x.astype(bool)) == expected
    assert BDM().bdm(x.tolist()) == expected
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64):
        assert BDM().bdm(x.astype(dtype)) == expected


def test_torch_tensors_accepted():
    torch = pytest.importorskip("torch")
    x = rng_array(2, (20, 30), 2, "sparse")
    expected = BDM(2).bdm(x)
    for dtype in (torch.int64, torch.int32, torch.uint8, torch.bool):
        assert BDM(2).bdm(torch.tensor(x).to(dtype)) == expected
    with pytest.raises(TypeError, match="binarize or symbolize"):
        BDM(2).bdm(torch.tensor(x, dtype=torch.float32))


@pytest.mark.parametrize("partition", PARTITIONS)
def test_read_only_input_accepted_and_untouched(partition):
    x = rng_array(5, (17, 23), 2, "periodic").astype(np.uint8)
    x.setflags(write=False)
    before = x.copy()
    ours = BDM(2, shape=3, partition=partition)
    value = ours.bdm(x)
    assert value == ours.bdm(before)
    np.testing.assert_array_equal(x, before)
    strided = np.asarray(rng_array(6, (40,), 4))[::2]  # non-contiguous view
    assert BDM(n_symbols=4, shape=4).bdm(strided) == BDM(n_symbols=4, shape=4).bdm(
        strided.copy()
    )


def test_convenience_function():
    x = np.ones(100, dtype=int)
    assert kcomplex.bdm(x, partition="recursive") == pytest.approx(36.541241731158856, abs=1e-12)
    assert kcomplex.bdm(x, partition="recursive") == BDM(partition="recursive").bdm(x)
    assert kcomplex.bdm(x) == BDM().bdm(x)
    y = rng_array(4, (9, 14), 2)
    assert kcomplex.bdm(y, ndim=2, shape=3) == BDM(ndim=2, shape=3).bdm(y)


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
def test_float_input_rejected(dtype):
    with pytest.raises(TypeError, match="binarize or symbolize"):
        BDM().bdm(np.zeros(24, dtype=dtype))


@pytest.mark.parametrize(
    ("n_symbols", "bad"), [(2, 2), (2, 255), (4, 4), (9, 9), (2, -1), (9, -3)]
)
def test_symbols_out_of_range(n_symbols, bad):
    x = np.zeros(30, dtype=np.int64)
    x[17] = bad
    with pytest.raises(ValueError, match=r"out of range.*index \(17,\)"):
        BDM(n_symbols=n_symbols).bdm(x)


def test_wrong_ndim():
    with pytest.raises(ValueError, match="ndim"):
        BDM().bdm(np.zeros((12, 12), dtype=int))
    with pytest.raises(ValueError, match="ndim"):
        BDM(2).bdm(np.zeros(16, dtype=int))
    with pytest.raises(ValueError, match="ndim"):
        BDM().bdm(np.int64(1))


@pytest.mark.parametrize(
    ("options", "x"),
    [
        ({}, np.zeros(11, dtype=int)),
        ({}, np.zeros(0, dtype=int)),
        ({"ndim": 2}, np.zeros((3, 40), dtype=int)),
        ({"partition": "correlated"}, np.zeros(5, dtype=int)),
        ({"partition": "recursive", "min_length": 4}, np.zeros(3, dtype=int)),
        ({"ndim": 2, "partition": "recursive"}, np.zeros((1, 9), dtype=int)),
    ],
)
def test_too_short_for_one_block(options, x):
    with pytest.raises(ValueError, match=r"too short.*smaller block.*partition='recursive'"):
        BDM(**options).bdm(x)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"partition": "periodic"}, "valid: ignore, recursive, correlated"),
        ({"n_symbols": 3}, "tables exist for ndim=1 n_symbols=2, ndim=1 n_symbols=4"),
        ({"ndim": 2, "n_symbols": 4}, "tables exist for .*ndim=2 n_symbols=2"),
        ({"ndim": 3}, "no CTM table for ndim=3"),
        ({"shape": 13}, r"available: \(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12\)"),
        ({"ndim": 2, "shape": 5}, r"available: \(1, 2, 3, 4\)"),
        ({"ndim": 2, "shape": (3, 4)}, "square"),
        ({"min_length": 0, "partition": "recursive"}, ">= 1"),
        ({"shift": 0, "partition": "correlated"}, ">= 1"),
    ],
)
def test_invalid_options(options, match):
    with pytest.raises(ValueError, match=match):
        BDM(**options)


def test_counts_attributes():
    x = np.r_[np.zeros(24, dtype=int), np.ones(12, dtype=int), np.zeros(5, dtype=int)]
    counts = BDM(partition="recursive").count(x)
    assert counts.n_blocks == 4 and counts.n_distinct == 3
    assert list(counts.groups) == [12, 5]
    keys, mult = counts.groups[12]
    assert keys.tolist() == [0, 2**12 - 1] and mult.tolist() == [2, 1]
    assert "n_blocks=4" in repr(counts)
    with pytest.raises(TypeError):
        hash(counts)
    assert math.isclose(BDM(partition="recursive").ent_from_counts(counts),
                        naive.ent_of_counts(naive.count(x, 12, partition="recursive")))


@pytest.mark.parametrize("shape", [3, np.int64(3), (3, 3), [3, 3], np.array([3, 3])])
def test_convenience_function_takes_the_options_of_bdm(shape):
    """``kcomplex.bdm(x, **options)``: options are those of ``BDM``, which takes any
    sequence as a shape (the convenience function caches instances by its options)."""
    y = rng_array(8, (9, 14), 2)
    assert kcomplex.bdm(y, ndim=2, shape=shape) == BDM(ndim=2, shape=shape).bdm(y)


@pytest.mark.parametrize("n_symbols", [4, 5])
def test_memmap_is_counted_in_place(tmp_path, monkeypatch, n_symbols):
    """A uint8 memmap (data beyond RAM) is read where it lies and counts like the array,
    also past one chunk of block keys for the large-alphabet path (5 symbols; 4 symbols
    are counted in first-seen bitmaps, without chunks)."""
    import importlib

    bdm_module = importlib.import_module("kcomplex.bdm")  # the attribute is the function

    x = np.random.default_rng(5).integers(0, n_symbols, 12 * 3000 + 7).astype(np.uint8)
    path = tmp_path / "x.u8"
    x.tofile(path)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    b = BDM(n_symbols=n_symbols)
    assert b._symbols(mm, "x") is mm or np.shares_memory(b._symbols(mm, "x"), mm)
    whole = b.count(x)
    monkeypatch.setattr(bdm_module, "_CHUNK", 1000)  # several chunks, merged in order
    chunked = b.count(mm)
    assert chunked == whole
    assert b.bdm_from_counts(chunked) == b.bdm(x)
