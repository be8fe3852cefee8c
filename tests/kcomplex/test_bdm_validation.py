"""Bad input to BDM never gives a wrong value, a crash or lasting state: hand-built
``BlockCounts`` are checked, a corrupted CTM cache is rebuilt, options are true integers
checked before anything is cached; and where the 2-D recursive sum differs from pybdm's,
it differs exactly as ``docs/bdm.md`` says."""

from __future__ import annotations

import io
import math
import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest

import kcomplex
import kcomplex.ctm
from kcomplex import BDM, BlockCounts, perturbation
from kcomplex.ctm import load_table

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pybdm's import warns about pkg_resources
    import pybdm
    from pybdm import PartitionRecursive

ZEROS24 = 26.610413747641715  # BDM of 24 zeros, binary blocks of 12 (docs/bdm.md)


# -- 3: hand-built BlockCounts ------------------------------------------------------------

FORGED = {
    # id: (ndim, n_symbols, groups, error, message)
    "key-beyond-block": (1, 2, {12: (np.array([10**9]), np.array([1]))}, ValueError,
                         r"key 1000000000 is not a block of 12 symbols"),
    "negative-count": (1, 2, {12: (np.array([0]), np.array([-1]))}, ValueError,
                       r"counts of side 12 must lie in \[1, 2\*\*62\)"),
    "zero-count": (1, 2, {12: (np.array([0]), np.array([0]))}, ValueError, r"\[1, 2\*\*62\)"),
    "lengths": (1, 2, {12: (np.array([0, 1]), np.array([1]))}, ValueError,
                "1 counts for 2 keys"),
    "negative-key": (1, 2, {12: (np.array([-1]), np.array([1]))}, ValueError,
                     "key -1 is not a block"),
    "float-keys": (1, 2, {12: (np.array([3.7]), np.array([1]))}, TypeError,
                   "keys of side 12 must be an integer array"),
    "float-counts": (1, 2, {12: (np.array([3]), np.array([1.0]))}, TypeError,
                     "counts of side 12 must be an integer array"),
    "bool-keys": (1, 2, {1: (np.array([True]), np.array([1]))}, TypeError, "dtype bool"),
    "2d-keys": (1, 2, {12: (np.zeros((1, 1), dtype=int), np.array([1]))}, ValueError,
                "must be 1-D"),
    "duplicate-key": (1, 2, {12: (np.array([5, 5]), np.array([1, 1]))}, ValueError,
                      "repeat a key"),
    "empty-group": (1, 2, {12: (np.array([], dtype=int), np.array([], dtype=int))},
                    ValueError, "empty"),
    "side-not-in-table": (1, 2, {13: (np.array([0]), np.array([1]))}, ValueError,
                          r"side 13; the CTM table .* has sides \(1, 2"),
    "2d-side-not-in-table": (2, 2, {5: (np.array([0]), np.array([1]))}, ValueError,
                             "side 5"),
    "2d-key-beyond-square": (2, 2, {3: (np.array([1 << 9]), np.array([1]))}, ValueError,
                             "not a block of 9 symbols"),
    # 5 symbols take 3 bits: the field value 7 fits in the key but is no symbol.
    "symbol-beyond-alphabet": (1, 5, {2: (np.array([0b000_111]), np.array([1]))},
                               ValueError, r"symbol of 7, outside \[0, 5\)"),
    "float-side": (1, 2, {12.0: (np.array([0]), np.array([1]))}, TypeError, "block side"),
    "float-n_symbols": (1, 2.0, {}, TypeError, "n_symbols must be an integer"),
    "no-table": (3, 2, {}, ValueError, "no CTM table for ndim=3"),
    "groups-not-mapping": (1, 2, [(12, (np.array([0]), np.array([1])))], TypeError,
                           "must be a mapping"),
    "pair-not-tuple": (1, 2, {12: [np.array([0]), np.array([1])]}, TypeError,
                       r"\(keys, counts\) tuple"),
    "too-many-blocks": (1, 2, {12: (np.array([0, 1]), np.array([2**61, 2**61]))},
                        ValueError, "2\\*\\*62 blocks or more"),
}


@pytest.mark.parametrize(("ndim", "n_symbols", "groups", "error", "match"),
                         FORGED.values(), ids=FORGED.keys())
def test_forged_counts_are_refused(ndim, n_symbols, groups, error, match):
    """Each of these once segfaulted, returned NaN, -inf or a wrong value, or truncated."""
    with pytest.raises(error, match=match):
        BlockCounts(ndim, n_symbols, groups)


def test_hand_built_counts_are_copied_read_only_and_exact():
    x = np.random.default_rng(0).integers(0, 5, 500)
    b = BDM(n_symbols=5, partition="recursive")
    counted = b.count(x)
    source = {s: (k.astype(np.uint64), list(n)) for s, (k, n) in counted.groups.items()}
    built = BlockCounts(1, 5, source)
    assert built == counted
    assert b.bdm_from_counts(built) == b.bdm(x)
    assert b.bdm_from_counts(built + counted) == b.bdm_from_counts(counted + counted)
    source[12][0][0] = 7  # the caller's arrays are not the counts' arrays
    assert built == counted
    for counts in (built, counted):
        keys, n = counts.groups[12]
        with pytest.raises(ValueError, match="read-only"):
            keys[0] = 10**9
        with pytest.raises(ValueError, match="read-only"):
            n[0] = -1
        with pytest.raises(TypeError):
            counts.groups[12] = (np.array([10**9]), np.array([1]))


def test_unpickled_counts_are_checked():
    counts = BDM().count(np.zeros(24, dtype=np.uint8))
    assert pickle.loads(pickle.dumps(counts)) == counts
    forged = BlockCounts.__new__(BlockCounts)
    object.__setattr__(forged, "ndim", 1)
    object.__setattr__(forged, "n_symbols", 2)
    object.__setattr__(forged, "groups", {12: (np.array([10**9]), np.array([1]))})
    with pytest.raises(ValueError, match="not a block"):
        pickle.loads(pickle.dumps(forged))


def test_bdm_from_counts_needs_counts():
    with pytest.raises(TypeError, match="BlockCounts"):
        BDM().bdm_from_counts({12: (np.array([0]), np.array([1]))})


# -- 4: the CTM cache ---------------------------------------------------------------------

CACHE_NAME = "ctm-b2-d12.npz"


@pytest.fixture
def fresh(ctm_cache):
    """The binary 1-D cache file of an empty cache directory; conversions counted."""
    folder, calls = ctm_cache
    return folder / CACHE_NAME, calls


def _members(path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def _truncate_keep_checksum(path):
    arrays = _members(path)
    arrays["values_12"] = arrays["values_12"][:100]
    arrays["labels_12"] = arrays["labels_12"][:100]
    np.savez(path, **arrays)


def _truncate_with_its_checksum(path):
    arrays = _members(path)
    del arrays["checksum"]
    arrays["values_12"] = arrays["values_12"][:100]
    arrays["labels_12"] = arrays["labels_12"][:100]
    np.savez(path, **arrays, checksum=np.array(kcomplex.ctm._checksum(arrays)))


def _change_a_value(path):
    arrays = _members(path)
    arrays["values_12"] = arrays["values_12"].copy()
    arrays["values_12"][0] = 1e277  # the CTM of twelve zeros; the zip CRC is rewritten
    np.savez(path, **arrays)


def _announce_a_huge_array(path):
    """values_12's header claims 2**40 values (8 TiB) over the few bytes present."""
    arrays = _members(path)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)}
    )
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr)
            data = header.getvalue() + b"\0" * 64 if name == "values_12" else buf.getvalue()
            zf.writestr(f"{name}.npy", data)


CORRUPT = {
    "truncated-arrays-old-checksum": _truncate_keep_checksum,
    "truncated-arrays-own-checksum": _truncate_with_its_checksum,
    "changed-value": _change_a_value,
    "huge-header": _announce_a_huge_array,
}


@pytest.mark.parametrize("corrupt", CORRUPT.values(), ids=CORRUPT.keys())
def test_cache_with_right_fingerprint_but_wrong_content_is_rebuilt(fresh, corrupt):
    path, calls = fresh
    assert kcomplex.bdm(np.zeros(24, dtype=np.uint8)) == ZEROS24
    corrupt(path)
    with zipfile.ZipFile(path) as zf, zf.open("fingerprint.npy") as fh:
        fingerprint = str(np.lib.format.read_array(fh))
    assert fingerprint == kcomplex.ctm._fingerprint(
        kcomplex.ctm._source_path(kcomplex.ctm.TABLES[1, 2])
    )
    load_table.cache_clear()
    assert kcomplex.bdm(np.zeros(24, dtype=np.uint8)) == ZEROS24  # once 4.8e277
    assert len(calls) == 2
    load_table.cache_clear()
    assert kcomplex.bdm(np.zeros(24, dtype=np.uint8)) == ZEROS24
    assert len(calls) == 2  # the rebuilt cache was written and is valid


def test_cache_that_is_a_fifo_is_not_read(fresh):
    path, calls = fresh
    os.mkfifo(path)  # reading would block forever
    assert kcomplex.bdm(np.zeros(24, dtype=np.uint8)) == ZEROS24
    assert len(calls) == 1 and path.is_file()


# -- 5: options are integers, checked before anything is cached ---------------------------

BAD_OPTIONS = {
    "n_symbols-float": ({"n_symbols": 2.0}, TypeError, "n_symbols must be an integer"),
    "n_symbols-bool": ({"n_symbols": True}, TypeError, "n_symbols must be an integer"),
    "ndim-float": ({"ndim": 1.0}, TypeError, "ndim must be an integer"),
    "ndim-bool": ({"ndim": True}, TypeError, "ndim must be an integer"),
    "shift-float": ({"shift": 1.7, "partition": "correlated"}, TypeError, "shift"),
    "shift-numpy-float": ({"shift": np.float64(2)}, TypeError, "shift"),
    "min_length-float": ({"min_length": 2.9, "partition": "recursive"}, TypeError,
                         "min_length"),
    "min_length-bool": ({"min_length": True}, TypeError, "min_length"),
    "shape-bool": ({"shape": True}, TypeError, "shape"),
    "shape-float": ({"shape": 4.0}, TypeError, "shape"),
    "shape-float-tuple": ({"shape": (4.0,)}, TypeError, "shape"),
    "shape-float-array": ({"ndim": 2, "shape": np.array([3.0, 3.0])}, TypeError, "shape"),
    "shape-bool-list": ({"shape": [True]}, TypeError, "shape"),
    "shape-string": ({"shape": "4"}, TypeError, "shape"),
    "shape-zero": ({"shape": 0}, ValueError, "shape"),
    "shape-empty": ({"shape": ()}, ValueError, "square"),
    "partition-list": ({"partition": ["ignore"]}, ValueError, "unknown partition"),
}


@pytest.fixture
def cleared():
    """A cleared in-process table cache, so a bad first load could poison it."""
    load_table.cache_clear()
    yield
    load_table.cache_clear()


@pytest.mark.parametrize(("options", "error", "match"), BAD_OPTIONS.values(),
                         ids=BAD_OPTIONS.keys())
def test_bad_option_is_refused_and_leaves_no_state(cleared, options, error, match):
    x = np.zeros(24, dtype=np.uint8)
    with pytest.raises(error, match=match):
        BDM(**options)
    with pytest.raises(error, match=match):
        kcomplex.bdm(x, **options)
    assert kcomplex.bdm(x) == ZEROS24  # once AttributeError for every later call
    table = load_table(1, 2)
    assert type(table.n_symbols) is int and type(table.ndim) is int
    with pytest.raises(error, match=match):  # a valid call before must not let it pass
        kcomplex.bdm(x, **options)


def test_load_table_needs_integers(cleared):
    for ndim, n_symbols in [(1, 2.0), (1.0, 2), (True, 2), (1, np.float64(2))]:
        with pytest.raises(TypeError, match="must be an integer"):
            load_table(ndim, n_symbols)
    assert load_table(np.int64(1), np.int64(2)) is load_table(1, 2)


def test_numpy_integer_options_are_plain_ints():
    b = BDM(ndim=np.int64(2), n_symbols=np.int32(2), shape=np.int64(3),
            min_length=np.int8(1), partition="recursive")
    assert repr(b) == "BDM(ndim=2, n_symbols=2, shape=(3, 3), partition='recursive', min_length=1)"
    assert all(type(v) is int for v in (b.ndim, b.n_symbols, b.size, b.min_length, b.shift))


PERTURBATION = {
    "idx-float": ({"idx": [1.7]}, TypeError, "idx must be integers"),
    "idx-bool": ({"idx": [True]}, TypeError, "idx must be integers"),
    "idx-shape": ({"idx": [[1, 2]]}, ValueError, r"idx has shape \(1, 2\)"),
    "values-float": ({"idx": [1], "values": [0.5]}, TypeError, "values must be integers"),
    "values-bool": ({"idx": [1], "values": [True]}, TypeError, "values must be integers"),
    "seed-float": ({"seed": 1.5}, TypeError, "seed must be an integer"),
    "metric": ({"metric": "nbdm"}, ValueError, "metric must be one of"),
    "bdm": ({"bdm": "recursive"}, TypeError, "bdm must be a kcomplex.BDM"),
}


@pytest.mark.parametrize(("options", "error", "match"), PERTURBATION.values(),
                         ids=PERTURBATION.keys())
def test_perturbation_options(options, error, match):
    with pytest.raises(error, match=match):
        perturbation(np.zeros(30, dtype=np.uint8), **options)


def test_perturbation_integer_selections():
    x = np.zeros(30, dtype=np.uint8)
    assert perturbation(x, []).shape == (0,)
    whole = perturbation(x)
    np.testing.assert_array_equal(perturbation(x, np.array([3, 7], dtype=np.uint8)),
                                  whole[[3, 7]])
    np.testing.assert_array_equal(perturbation(x, [[3], [7]], [1, 1]), whole[[3, 7]])


# -- 13: summation order against pybdm ----------------------------------------------------


def _reference(ndim: int, n_symbols: int, size: int, min_length: int) -> pybdm.BDM:
    return pybdm.BDM(ndim, n_symbols, shape=(size,) * ndim, partition=PartitionRecursive,
                     min_length=min_length, warn_if_missing_ctm=False, raise_if_zero=False)


def _recursive_cases(ndim: int, n: int):
    rng = np.random.default_rng(13 + ndim)
    for _ in range(n):
        n_symbols = 2 if ndim == 2 else int(rng.choice([2, 4, 5, 6, 9]))
        size = int(rng.integers(2, 5 if ndim == 2 else 13))
        min_length = int(rng.integers(1, 4))
        shape = rng.integers(size, 41, 2) if ndim == 2 else (int(rng.integers(size, 400)),)
        yield n_symbols, size, min_length, rng.integers(0, n_symbols, tuple(shape))


def test_2d_recursive_adds_pybdms_terms_side_by_side():
    """docs/bdm.md: the same terms as pybdm, each computed the same way; pybdm adds them
    in the order its recursion meets the blocks, kcomplex side by side (largest first,
    each side in pybdm's order). The difference is rounding, within the bound stated."""
    u = 2.0**-53
    differ = 0
    for _, size, min_length, x in _recursive_cases(2, 150):
        theirs = _reference(2, 2, size, min_length)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            counter = theirs.decompose_and_count(x)
            expected = theirs.bdm(x)
        terms = [(len(key), ctm + math.log2(n)) for (key, ctm), n in counter.items()]
        in_their_order = 0
        for _, t in terms:
            in_their_order += t
        assert in_their_order == expected
        first_seen = list(dict.fromkeys(side for side, _ in terms))
        side_by_side = 0.0
        for _, t in sorted(terms, key=lambda st: first_seen.index(st[0])):  # stable
            side_by_side += t
        ours = BDM(ndim=2, shape=size, partition="recursive", min_length=min_length)
        got = ours.bdm(x)
        assert got == side_by_side
        n = len(terms)
        gamma = (n - 1) * u / (1 - (n - 1) * u)
        assert abs(got - expected) <= 2 * gamma * got
        differ += got != expected
    assert differ > 0  # the difference is real (about 1 case in 6 here)


def test_1d_recursive_matches_pybdm_to_the_last_bit():
    """In 1-D the recursion meets the sides one after the other: the orders coincide."""
    for n_symbols, size, min_length, x in _recursive_cases(1, 80):
        if x.size < size:
            continue
        theirs = _reference(1, n_symbols, size, min_length)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = theirs.bdm(x)
        ours = BDM(n_symbols=n_symbols, shape=size, partition="recursive",
                   min_length=min_length)
        assert ours.bdm(x) == expected


def test_pybdm_2d_recursive_normalization_raises_stop_iteration():
    """What docs/bdm.md says pybdm does for a non-square top-level slice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(StopIteration):
            _reference(2, 2, 4, 2).nbdm(np.ones((6, 7), dtype=int))
    assert 0 <= BDM(ndim=2, partition="recursive").nbdm(np.ones((6, 7), dtype=int)) <= 1
