"""One contract over every estimator: bits as a Python float >= 0, deterministic, input
untouched, read-only and every integer dtype accepted with the same value, floats and
empty input rejected with messages that name the fix. And one over every public ``*_bits``
function of kcomplex, found by introspection: a Python float >= 0, deterministic, input
untouched, and ``8 * len(payload)`` where the code has a payload."""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import re

import naive
import numpy as np
import pytest

import kcomplex
from kcomplex import BDM, mdl
from kcomplex.compressors import compress
from kcomplex.ctm import TABLES
from kcomplex.estimators import ESTIMATORS

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
    assert type(bits) is float and bits >= 0 and math.isfinite(bits)
    assert est.tensor(w) == bits
    np.testing.assert_array_equal(w, before)
    ro = w.copy()
    ro.setflags(write=False)
    assert est.tensor(ro) == bits
    assert est.total([w]) == pytest.approx(bits, rel=1e-12)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_weight_estimator_merge_equals_whole(name):
    """The total over pieces is the estimate of their concatenation, for any cut (the
    pieces are streamed, never concatenated). A codec's total is the length of one stream,
    which does not depend on the cut (zstd's included): exactly equal."""
    est = ESTIMATORS[name]
    w = _weights(1000)
    pieces = [w[:5], w[5:123], w[123:124], w[124:]]
    total = est.total(pieces)
    assert total == pytest.approx(est.tensor(w), rel=1e-12)
    if name in kcomplex.CODECS:
        assert total == est.tensor(w)


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


# -- every public *_bits function of kcomplex ---------------------------------------------

_BITS_NAME = re.compile(r"_bits(_|$)")  # compressed_bits, compressed_bits_chunks, ...


def _qualname(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _public_bits_functions() -> set[str]:
    """Every public function or method of kcomplex whose name has ``_bits`` as a word,
    found in each public module: what it lists in ``__all__`` and the public functions
    and classes it defines, re-exports counted once (by the defining module)."""
    modules = [kcomplex] + [
        importlib.import_module(f"kcomplex.{m.name}")
        for m in pkgutil.iter_modules(kcomplex.__path__)
        if not m.name.startswith("_")
    ]
    found = set()
    for module in modules:
        names = set(getattr(module, "__all__", ()))
        names |= {n for n, obj in vars(module).items() if not n.startswith("_")
                  and (inspect.isfunction(obj) or inspect.isclass(obj))
                  and obj.__module__ == module.__name__}
        for name in names:
            obj = getattr(module, name)
            members = [(name, obj)]
            if inspect.isclass(obj) and obj.__module__.startswith("kcomplex"):
                members += [(n, m) for n, m in vars(obj).items() if not n.startswith("_")]
            for n, member in members:
                if _BITS_NAME.search(n) and callable(member):
                    found.add(_qualname(member))
    return found


_SYMBOLS = np.random.default_rng(7).integers(0, 6, 200)
_ALPHABET = 6


def _chunks(w: np.ndarray) -> list[np.ndarray]:
    return [w[:1], w[1:100], w[100:100], w[100:]]


def _bits_cases():
    """(function, input, bits of the input, its payload or None): the function is called
    on the input; where a payload exists the bits must be ``8 * len(payload)``."""
    for codec in kcomplex.CODECS:
        yield pytest.param(
            kcomplex.compressed_bits, _weights,
            lambda w, c=codec: kcomplex.compressed_bits(w, c),
            lambda w, c=codec: compress(w, c), id=f"compressed_bits-{codec}",
        )
        yield pytest.param(
            kcomplex.compressed_bits_chunks, _weights,
            lambda w, c=codec: kcomplex.compressed_bits_chunks(_chunks(w), c),
            lambda w, c=codec: compress(w, c), id=f"compressed_bits_chunks-{codec}",
        )
    for code in (mdl.entropy_bits, mdl.laplace_bits, mdl.two_part_bits, mdl.kt_bits):
        yield pytest.param(
            code, lambda: _SYMBOLS.copy(), lambda s, f=code: f(s, _ALPHABET), None,
            id=code.__name__,
        )
    yield pytest.param(
        mdl.coded_bits, lambda: _SYMBOLS.copy(), lambda s: mdl.coded_bits(s, _ALPHABET),
        lambda s: mdl.ans_encode(s, _ALPHABET), id="coded_bits",
    )
    for code in mdl.QUANTIZED_CODES:
        yield pytest.param(
            mdl.quantized_bits, _weights, lambda w, c=code: mdl.quantized_bits(w, 4, c), None,
            id=f"quantized_bits-{code}",
        )
    yield pytest.param(
        kcomplex.ctm_bits, lambda: _SYMBOLS[:12] % 2, lambda s: kcomplex.ctm_bits(s), None,
        id="ctm_bits",
    )
    for lz in (kcomplex.lz76_bits, kcomplex.lz78_bits):
        yield pytest.param(lz, _weights, lz, None, id=lz.__name__)


_CASES = list(_bits_cases())


def test_every_public_bits_function_is_in_the_contract():
    """A new public ``*_bits`` anywhere in kcomplex fails here until it has a case."""
    covered = {_qualname(case.values[0]) for case in _CASES}
    assert _public_bits_functions() == covered


@pytest.mark.parametrize(("function", "make_input", "bits_of", "payload_of"), _CASES)
def test_bits_contract(function, make_input, bits_of, payload_of):
    x = make_input()
    before = x.copy()
    bits = bits_of(x)
    assert type(bits) is float
    assert math.isfinite(bits) and bits >= 0.0
    assert bits_of(x) == bits  # deterministic
    np.testing.assert_array_equal(x, before)  # input untouched
    frozen = x.copy()
    frozen.setflags(write=False)
    assert bits_of(frozen) == bits
    if payload_of is not None:
        assert bits == 8 * len(payload_of(x))
