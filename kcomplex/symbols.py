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

__all__ = [
    "binarize", "check_real", "describe_nonfinite", "describe_overflow", "symbolize", "to_numpy",
]

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


def _where(flat: np.ndarray, shape: tuple[int, ...]) -> list[str]:
    """Flat indices as the caller indexes the array: ints in 1-D, tuples beyond."""
    if len(shape) > 1:
        return [str(tuple(int(i) for i in ix)) for ix in zip(*np.unravel_index(flat, shape))]
    return [str(int(i)) for i in flat]


def describe_nonfinite(arr: np.ndarray, name: str) -> str:
    """How many NaN and Inf values `arr` holds, and where the first are.

    Parameters
    ----------
    arr : numpy.ndarray
        A floating array, in its own dtype: the count is of its values, so an
        array about to be narrowed must be described before the cast.
    name : str
        What `arr` is, to start the message (``"weights"``, ``"tensor 'w'"``).

    Returns
    -------
    str
        ``"<name> contain <n> non-finite values (<k> NaN, <n - k> Inf), first at
        index i, j, ..."``, at most five indices, as tuples beyond 1-D.

    Examples
    --------
    >>> describe_nonfinite(np.array([1.0, np.nan, np.inf]), "weights")
    'weights contain 2 non-finite values (1 NaN, 1 Inf), first at index 1, 2'
    """
    bad = ~np.isfinite(arr)
    n_nan = int(np.count_nonzero(np.isnan(arr)))
    n_bad = int(np.count_nonzero(bad))
    where = _where(np.flatnonzero(bad)[:_MAX_REPORTED], arr.shape)
    return (
        f"{name} contain {n_bad} non-finite values ({n_nan} NaN, {n_bad - n_nan} Inf), "
        f"first at index {', '.join(where)}"
    )


def describe_overflow(arr: np.ndarray, name: str, dtype: Any = np.float32) -> str | None:
    """Which finite values of `arr` become infinite when cast to `dtype`, or None.

    Parameters
    ----------
    arr : numpy.ndarray
        A floating array in its own dtype.
    name : str
        What `arr` is, to start the message.
    dtype : numpy dtype, default float32
        The narrower floating dtype the values are about to be cast to.

    Returns
    -------
    str or None
        ``"<name>: <n> value(s) overflow(s) <dtype> (first at index i: v, ...)"``
        with at most five values, or None if every finite value fits.

    Examples
    --------
    >>> describe_overflow(np.array([1.0] * 20 + [1e300]), "tensor 'w'")
    "tensor 'w': 1 value overflows float32 (first at index 20: 1e+300)"
    >>> describe_overflow(np.array([1.0, np.inf]), "tensor 'w'") is None
    True
    """
    dtype = np.dtype(dtype)
    # Values beyond dtype's largest finite value by less than half an ulp round down to
    # it, so the cast itself, not a comparison with finfo.max, decides what overflows.
    with np.errstate(over="ignore"):
        narrow = arr.astype(dtype)
    over = np.isfinite(arr) & ~np.isfinite(narrow)
    n = int(np.count_nonzero(over))
    if not n:
        return None
    flat = np.flatnonzero(over)[:_MAX_REPORTED]
    values = arr.reshape(-1)[flat]
    where = ", ".join(f"{i}: {v:.6g}" for i, v in zip(_where(flat, arr.shape), values))
    verb = "value overflows" if n == 1 else "values overflow"
    return f"{name}: {n} {verb} {dtype} (first at index {where})"


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
        raise ValueError(describe_nonfinite(arr, name))
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
