"""Tests for kcomplex.symbols."""

from __future__ import annotations

import doctest
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kcomplex import symbols
from kcomplex.symbols import binarize, symbolize, to_numpy

METHODS = ["uniform", "quantile"]

finite_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.float16]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=8),
    elements={"allow_nan": False, "allow_infinity": False},
)


def test_docstring_examples_run():
    result = doctest.testmod(symbols, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


# --- binarize -----------------------------------------------------------------


def test_binarize_known_values():
    w = np.array([[-2.0, -0.0, 0.0], [1e-300, 3.5, -1e-300]])
    out = binarize(w)
    assert out.dtype == np.uint8
    assert out.shape == w.shape
    np.testing.assert_array_equal(out, [[0, 0, 0], [1, 1, 0]])


@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.bool_])
def test_binarize_other_dtypes(dtype):
    w = np.array([-1, 0, 2, 1]).astype(dtype)
    np.testing.assert_array_equal(binarize(w), (w > 0).astype(np.uint8))


def test_binarize_list_and_scalar():
    np.testing.assert_array_equal(binarize([-1, 0, 3]), [0, 0, 1])
    out = binarize(np.float32(2.0))
    assert out.shape == () and out == 1


def test_binarize_read_only_array():
    w = np.array([-1.0, 0.5, 2.0])
    w.flags.writeable = False
    np.testing.assert_array_equal(binarize(w), [0, 1, 1])
    assert not w.flags.writeable


def test_input_array_not_modified():
    w = np.array([[3.0, -1.0], [0.0, 7.0]])
    before = w.copy()
    binarize(w)
    for method in METHODS:
        symbolize(w, 3, method)
    np.testing.assert_array_equal(w, before)


def test_binarize_bfloat16_tensor():
    torch = pytest.importorskip("torch")
    t = torch.tensor([[-1.5, 0.0], [0.25, 3.0]], dtype=torch.bfloat16)
    out = binarize(t)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 0], [1, 1]])


def test_binarize_float16_tensor():
    torch = pytest.importorskip("torch")
    t = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float16)
    np.testing.assert_array_equal(binarize(t), [0, 0, 1])


def test_tensor_requiring_grad_is_untouched():
    torch = pytest.importorskip("torch")
    t = torch.tensor([[-1.0, 2.0, 0.0], [4.0, -3.0, 0.5]], requires_grad=True)
    before = t.detach().clone()
    np.testing.assert_array_equal(binarize(t), [[0, 1, 0], [1, 0, 1]])
    out = symbolize(t, 4, "quantile")
    assert out.shape == (2, 3)
    assert t.requires_grad and t.grad is None
    assert torch.equal(t.detach(), before)


# --- to_numpy -------------------------------------------------------------------


def test_to_numpy_keeps_int64_tensor():
    torch = pytest.importorskip("torch")
    out = to_numpy(torch.arange(6, dtype=torch.int64).reshape(2, 3))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[0, 1, 2], [3, 4, 5]])


def test_to_numpy_bfloat16_becomes_float32():
    torch = pytest.importorskip("torch")
    out = to_numpy(torch.tensor([1.5, -2.0], dtype=torch.bfloat16))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [1.5, -2.0])


def test_to_numpy_keeps_numpy_dtype():
    assert to_numpy(np.arange(3, dtype=np.uint8)).dtype == np.uint8
    assert to_numpy([1, 2]).dtype.kind == "i"


# --- symbolize: properties --------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(w=finite_arrays, n=st.integers(2, 16), method=st.sampled_from(METHODS))
def test_symbolize_range(w, n, method):
    out = symbolize(w, n, method)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8
    assert out.shape == w.shape
    assert (out < n).all()


@settings(max_examples=200, deadline=None)
@given(w=finite_arrays, n=st.integers(2, 16), method=st.sampled_from(METHODS))
def test_symbolize_monotone(w, n, method):
    flat_w = w.ravel().astype(np.float64)
    flat_s = symbolize(w, n, method).ravel()
    order = np.argsort(flat_w, kind="stable")
    # Sorted by value, symbols must never decrease.
    assert (np.diff(flat_s[order].astype(int)) >= 0).all()


@settings(max_examples=200, deadline=None)
@given(w=finite_arrays.filter(lambda a: a.size > 0 and a.min() != a.max()), n=st.integers(2, 16))
def test_uniform_extremes(w, n):
    out = symbolize(w, n, "uniform")
    assert (out[w == w.min()] == 0).all()
    assert (out[w == w.max()] == n - 1).all()


@settings(max_examples=100, deadline=None)
@given(w=finite_arrays, n=st.integers(2, 16), method=st.sampled_from(METHODS))
def test_symbolize_deterministic(w, n, method):
    np.testing.assert_array_equal(symbolize(w, n, method), symbolize(w.copy(), n, method))


# --- symbolize: known values ------------------------------------------------------


def test_uniform_equal_width_bins():
    w = np.linspace(0.0, 1.0, 11)
    np.testing.assert_array_equal(symbolize(w, 5), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4])


def test_uniform_two_symbols_differs_from_binarize():
    w = np.array([-1.0, -0.5, 0.5, 1.0, 0.0])
    np.testing.assert_array_equal(symbolize(w, 2), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(binarize(w), [0, 0, 1, 1, 0])


def test_uniform_huge_range_does_not_overflow():
    big = np.finfo(np.float64).max
    out = symbolize(np.array([-big, 0.0, big]), 4)
    np.testing.assert_array_equal(out, [0, 2, 3])


def test_quantile_equal_counts():
    w = np.random.default_rng(0).permutation(1000).reshape(10, 100)
    out = symbolize(w, 4, "quantile")
    assert out.shape == (10, 100)
    np.testing.assert_array_equal(np.bincount(out.ravel(), minlength=4), [250] * 4)
    # Equal counts alone would not catch a shuffled assignment.
    np.testing.assert_array_equal(out, w // 250)


def test_quantile_ties_go_to_higher_bin():
    # Edges at quantiles 1/3, 2/3 are both 1.0; side="right" sends the ties up.
    w = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 2.0])
    np.testing.assert_array_equal(symbolize(w, 3, "quantile"), [0, 2, 2, 2, 2, 2])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("w", [np.full((3, 4), 2.5), np.zeros(0), np.array(7.0), [[-1.0]]])
def test_constant_or_empty_is_all_zero(w, method):
    out = symbolize(w, 8, method)
    assert out.dtype == np.uint8
    assert out.shape == np.shape(w)
    assert not out.any()


def test_symbolize_integer_input():
    np.testing.assert_array_equal(symbolize(np.arange(4), 4), [0, 1, 2, 3])
    np.testing.assert_array_equal(symbolize(np.arange(4), 256), [0, 85, 170, 255])


def test_symbolize_int64_extremes_do_not_wrap():
    info = np.iinfo(np.int64)
    w = np.array([info.min, 0, info.max], dtype=np.int64)
    np.testing.assert_array_equal(symbolize(w, 4), [0, 2, 3])


# --- errors ------------------------------------------------------------------------


def test_non_finite_message_multi_index():
    w = np.zeros((5, 4))
    w[0, 3] = np.nan
    w[1, 2] = np.inf
    w[4, 0] = np.nan
    msg = r"3 non-finite values \(2 NaN, 1 Inf\), first at index \(0, 3\), \(1, 2\), \(4, 0\)"
    with pytest.raises(ValueError, match=msg):
        symbolize(w, 4)
    with pytest.raises(ValueError, match=msg):
        binarize(w)


def test_non_finite_message_flat_index_and_limit():
    w = np.full(20, -np.inf)
    w[2] = np.nan
    msg = r"20 non-finite values \(1 NaN, 19 Inf\), first at index 0, 1, 2, 3, 4$"
    with pytest.raises(ValueError, match=msg):
        symbolize(w, 2, "quantile")


def test_non_finite_tensor():
    torch = pytest.importorskip("torch")
    t = torch.tensor([1.0, float("nan")], dtype=torch.bfloat16)
    msg = r"1 non-finite values \(1 NaN, 0 Inf\), first at index 1$"
    with pytest.raises(ValueError, match=msg):
        binarize(t)


@pytest.mark.parametrize("n", [0, 1, 257, -3, 2.0, 4.5, True, "4", None])
def test_bad_n_symbols(n):
    with pytest.raises(ValueError, match="n_symbols.*" + re.escape(repr(n))):
        symbolize(np.arange(5.0), n)


def test_numpy_integer_n_symbols_accepted():
    assert symbolize(np.arange(5.0), np.int64(256)).max() == 255


def test_bad_method_lists_valid_names():
    with pytest.raises(ValueError, match=r"'kmeans'.*'uniform'.*'quantile'"):
        symbolize(np.arange(5.0), 3, method="kmeans")


@pytest.mark.parametrize(
    "w", [np.array([1 + 2j, 3j]), np.array(["a", "b"]), np.array([1.0, None])]
)
def test_non_real_dtype_is_type_error(w):
    with pytest.raises(TypeError, match=str(w.dtype)):
        symbolize(w, 2)
    with pytest.raises(TypeError, match=str(w.dtype)):
        binarize(w)


def test_complex_tensor_is_type_error():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="complex64"):
        binarize(torch.tensor([1 + 1j, 2 - 1j]))
