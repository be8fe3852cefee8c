"""Map real-valued weights to discrete symbols for the BDM estimator.

BDM works on strings or arrays over a small alphabet, so weights must be
discretised first.  :func:`binarize` is the sign convention of the reference
paper; :func:`symbolize` gives larger alphabets.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["binarize", "check_real", "symbolize", "to_numpy"]

_MAX_REPORTED = 5


def to_numpy(w: Any) -> np.ndarray:
    """Convert a NumPy array, array-like or torch tensor to a NumPy array.

    The dtype is kept (integer symbol tensors stay integer), except that
    floating dtypes NumPy lacks (bfloat16, float8) become float32.  No value
    checks are made.

    Parameters
    ----------
    w : array_like or torch.Tensor
        Input on any device, with or without ``requires_grad``.

    Returns
    -------
    numpy.ndarray
        The values of `w`.  It may share memory with `w`, so treat it as
        read-only.

    Examples
    --------
    >>> to_numpy([[1, 2], [3, 4]]).shape
    (2, 2)
    """
    # Look torch up instead of importing it: a tensor can only exist if the
    # caller already imported torch, and the import is slow and optional.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(w, torch.Tensor):
        t = w.detach()
        if t.is_floating_point() and t.dtype not in (
            torch.float16,
            torch.float32,
            torch.float64,
        ):
            t = t.float()
        # force=True moves to the CPU and resolves lazy conj/neg bits.
        return t.numpy(force=True)
    return np.asarray(w)


def _describe_non_finite(arr: np.ndarray, name: str) -> str:
    bad = ~np.isfinite(arr)
    n_nan = int(np.count_nonzero(np.isnan(arr)))
    n_bad = int(np.count_nonzero(bad))
    first = np.flatnonzero(bad)[:_MAX_REPORTED]
    if arr.ndim > 1:
        multi = zip(*np.unravel_index(first, arr.shape))
        where = [str(tuple(int(i) for i in ix)) for ix in multi]
    else:
        where = [str(int(i)) for i in first]
    return (
        f"{name} contain {n_bad} non-finite values ({n_nan} NaN, {n_bad - n_nan} Inf), "
        f"first at index {', '.join(where)}"
    )


def check_real(w: Any, name: str = "weights") -> np.ndarray:
    """``w`` as a NumPy array of real numbers with no NaN or Inf, dtype kept.

    Raises
    ------
    TypeError
        If the dtype is complex, string or object.
    ValueError
        If there are NaN or Inf values: how many of each, and where the first are.
    """
    arr = to_numpy(w)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    # One pass over the data; isfinite on a float32 array allocates n bytes, not 8n.
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(_describe_non_finite(arr, name))
    return arr


def _as_float_array(w: Any, name: str = "weights") -> np.ndarray:
    """Validate `w` and return it as a finite float64 array (never in place)."""
    # float64 stops integer ranges wrapping and float16 ranges overflowing in
    # the binning arithmetic; astype copies unless the input is float64 already.
    return check_real(w, name).astype(np.float64, copy=False)


def binarize(w: Any) -> np.ndarray:
    """Binarise weights by sign: strictly positive is 1, everything else 0.

    This is the reference paper's convention; zeros count as 0.  It differs
    from ``symbolize(w, 2)``, which splits the value range in half.

    Parameters
    ----------
    w : array_like or torch.Tensor
        Real-valued (float, integer or bool) weights of any shape.

    Returns
    -------
    numpy.ndarray
        uint8 array with the shape of `w`.

    Raises
    ------
    TypeError
        If `w` has a complex or non-numeric dtype.
    ValueError
        If `w` contains NaN or Inf.

    Examples
    --------
    >>> binarize([-1.5, 0.0, 2.0])
    array([0, 0, 1], dtype=uint8)
    """
    return (check_real(w) > 0).view(np.uint8)


def _uniform(w: np.ndarray, n_symbols: int) -> np.ndarray:
    lo, hi = w.min(), w.max()
    # Every step is monotone under IEEE rounding, so the mapping is monotone,
    # and (hi - lo) / (hi - lo) == 1 exactly puts the maximum in the last bin.
    scaled = np.floor((w - lo) / (hi - lo) * n_symbols)
    return np.minimum(scaled, n_symbols - 1).astype(np.uint8)


def _quantile(w: np.ndarray, n_symbols: int) -> np.ndarray:
    edges = np.quantile(w, np.arange(1, n_symbols) / n_symbols)
    return np.searchsorted(edges, w, side="right").astype(np.uint8)


_METHODS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "uniform": _uniform,
    "quantile": _quantile,
}


def symbolize(w: Any, n_symbols: int, method: str = "uniform") -> np.ndarray:
    """Discretise weights into `n_symbols` symbols ``0 .. n_symbols - 1``.

    ``"uniform"`` splits ``[min(w), max(w)]`` into equal-width bins; the
    maximum falls in the last bin.  ``"quantile"`` places bin edges at the
    empirical quantiles ``np.quantile(w, i / n_symbols)``, ``i = 1 ..
    n_symbols - 1``, so symbols are equally frequent as far as ties allow.  A
    value is assigned the number of edges ``<=`` it
    (``np.searchsorted(edges, w, side="right")``), so values tied with an edge
    go to the higher bin.  Both methods are deterministic and monotone, and a
    constant (or empty) array maps to all 0.

    Parameters
    ----------
    w : array_like or torch.Tensor
        Real-valued (float, integer or bool) weights of any shape.
    n_symbols : int
        Alphabet size, from 2 to 256.
    method : {"uniform", "quantile"}
        Binning rule.

    Returns
    -------
    numpy.ndarray
        uint8 array with the shape of `w`, values in ``[0, n_symbols)``.

    Raises
    ------
    ValueError
        If `n_symbols` is not an integer in [2, 256], `method` is unknown, or
        `w` contains NaN or Inf.
    TypeError
        If `w` has a complex or non-numeric dtype.

    Examples
    --------
    >>> symbolize([0.0, 0.1, 0.5, 0.9, 1.0], 4)
    array([0, 0, 2, 3, 3], dtype=uint8)
    >>> symbolize([5.0, 1.0, 3.0, 7.0], 2, method="quantile")
    array([1, 0, 0, 1], dtype=uint8)
    """
    if not (isinstance(n_symbols, (int, np.integer)) and 2 <= n_symbols <= 256):
        raise ValueError(f"n_symbols must be an integer in [2, 256], got {n_symbols!r}")
    if method not in _METHODS:
        valid = ", ".join(map(repr, _METHODS))
        raise ValueError(f"unknown method {method!r}; valid methods: {valid}")
    arr = _as_float_array(w)
    # Without spread there is no information to encode; the methods would also
    # divide by zero (uniform) or put everything in the last bin (quantile).
    if arr.size == 0 or arr.min() == arr.max():
        return np.zeros(arr.shape, dtype=np.uint8)
    with np.errstate(over="ignore"):
        span = arr.max() - arr.min()
    if not np.isfinite(span):
        # The range overflows float64; halving is monotone and keeps bins intact.
        arr = arr / 2
    return _METHODS[method](arr, int(n_symbols))
