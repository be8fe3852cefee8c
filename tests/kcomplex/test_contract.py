"""One contract over every estimator: bits as a Python float >= 0, deterministic, input
untouched, read-only and every integer dtype accepted with the same value, floats and
empty input rejected with messages that name the fix."""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest

import kcomplex
from kcomplex import BDM
from kcomplex.ctm import TABLES

INT_DTYPES = (np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64)


def _estimators():
    for ndim, n_symbols in TABLES:
        for method in ("bdm", "ent"):
            yield pytest.param(
                ndim, n_symbols, lambda x, d=ndim, n=n_symbols, m=method: getattr(BDM(d, n), m)(x),
                id=f"BDM({ndim}, {n_symbols}).{method}",
            )
        yield pytest.param(
            ndim, n_symbols, lambda x, d=ndim, n=n_symbols: kcomplex.bdm(x, ndim=d, n_symbols=n),
            id=f"kcomplex.bdm(ndim={ndim}, n_symbols={n_symbols})",
        )


def small_input(ndim: int, n_symbols: int) -> np.ndarray:
    shape = (40,) if ndim == 1 else (9, 10)  # edges left over in both cases
    x = naive.symbols(np.random.default_rng(ndim * 10 + n_symbols), shape, n_symbols, "runs")
    x.flat[: n_symbols] = np.arange(n_symbols)  # every symbol occurs
    return x.astype(np.int64)


@pytest.mark.parametrize(("ndim", "n_symbols", "estimate"), list(_estimators()))
def test_estimator_contract(ndim, n_symbols, estimate):
    x = small_input(ndim, n_symbols)
    before = x.copy()

    value = estimate(x)
    assert type(value) is float
    assert math.isfinite(value) and value >= 0.0
    assert estimate(x) == value  # deterministic
    np.testing.assert_array_equal(x, before)  # input untouched
    assert x.dtype == before.dtype

    frozen = x.copy()
    frozen.setflags(write=False)
    assert estimate(frozen) == value
    if ndim == 2:
        assert estimate(np.asfortranarray(x)) == value
    assert estimate(np.repeat(x, 2, axis=0)[::2]) == value  # strided view
    assert estimate(x.tolist()) == value

    dtypes = INT_DTYPES + ((np.bool_,) if n_symbols == 2 else ())
    for dtype in dtypes:
        assert estimate(x.astype(dtype)) == value, dtype

    with pytest.raises(TypeError, match="binarize or symbolize"):
        estimate(x.astype(np.float64))
    with pytest.raises(TypeError, match="binarize or symbolize"):
        estimate(np.full(x.shape, np.nan))
    with pytest.raises(ValueError, match="too short"):
        estimate(np.zeros((0,) * ndim, dtype=np.uint8))
    with pytest.raises(ValueError, match="out of range"):
        estimate(np.full(x.shape, n_symbols))


# -- the estimators of analyze(), on real-valued weights ---------------------------------

from kcomplex.estimators import ESTIMATORS  # noqa: E402

WEIGHT_DTYPES = (np.float16, np.float32, np.float64)


def _weights(n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(n)
    w = rng.normal(size=n).astype(np.float32)
    w[::7] = 0.0  # repeats, so the entropy and the compressors see structure
    return w


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_weight_estimator_contract(name):
    est = ESTIMATORS[name]
    w = _weights()
    before = w.copy()
    bits = est.tensor(w)
    assert isinstance(bits, float) and bits >= 0 and math.isfinite(bits)
    assert est.tensor(w) == bits
    np.testing.assert_array_equal(w, before)
    ro = w.copy()
    ro.setflags(write=False)
    assert est.tensor(ro) == bits
    assert est.total([w]) == pytest.approx(bits, rel=1e-12)


@pytest.mark.parametrize("name", ["bdm", "entropy", "gzip", "bz2", "lzma"])
def test_weight_estimator_merge_equals_whole(name):
    """The total over pieces is the estimate of their concatenation, for any cut (the
    pieces are streamed, never concatenated); zstd streams with other block splits and
    is checked only for being close."""
    est = ESTIMATORS[name]
    w = _weights(1000)
    pieces = [w[:5], w[5:123], w[123:124], w[124:]]
    assert est.total(pieces) == pytest.approx(est.tensor(w), rel=1e-12)


@pytest.mark.parametrize("dtype", WEIGHT_DTYPES)
def test_analyze_accepts_float_dtypes(dtype):
    w = _weights().astype(dtype)
    report = kcomplex.analyze({"w": w}, "all")
    assert (report.table.filter(like="_bits").iloc[-1] > 0).all()


def test_analyze_rejects_nan_and_empty():
    w = _weights()
    w[3] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        kcomplex.analyze({"w": w})
    with pytest.raises(ValueError, match="empty"):
        kcomplex.analyze({"w": np.zeros(0, np.float32)})
