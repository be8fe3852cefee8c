"""Lempel-Ziv estimators: the LZ76 phrase count and the LZ78 code length, in bits.

Both read the weights as one symbol sequence: the signs (``w > 0``, as
:func:`kcomplex.binarize`) by default, or ``symbolize(w, symbols, method)`` for a larger
alphabet; arrays of any shape are read flattened in C order.

- ``lz76_bits`` is ``c * log2(n)`` for ``c`` Kaspar-Schuster phrases of ``n`` symbols:
  the normalized LZ complexity ``c / (n / log_k n)`` of the literature (Zhang et al. 2009)
  times the raw size ``n log2 k`` of the string, the alphabet cancelling out. It is the
  simplicity-bias literature's ``K_LZ`` (Dingle, Camargo and Louis 2018) without their
  average over the reversed string. A random string gets about ``n log2 k`` bits (the
  ratio tends to 1 from above: 1.01 at a million random signs), a constant one
  ``2 log2 n``. An estimate, not a code length: it is no upper bound.
- ``lz78_bits`` is a code length, so an upper bound on the complexity (up to the
  constant of the decoder): phrase ``j`` of the LZ78 parse costs ``ceil(log2 j)`` bits
  for the index of its prefix among the ``j`` entries of the dictionary (the empty
  phrase included) plus ``log2 k`` bits for its new symbol; a last partial phrase costs
  its index only. The length ``n`` is not coded (every kcomplex estimator takes it as
  known).

Neither is mergeable across chunks: a phrase may copy from anywhere earlier, so the
parse of a chunk depends on every symbol before it; measure a whole vector in one
sequence. Memory: about ``60 n`` bytes for LZ76 (a suffix automaton), ``12 n`` for LZ78.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _kernels as _k
from .symbols import binarize, symbolize, to_numpy
from .validation import check_int

__all__ = ["lz76_bits", "lz76_phrases", "lz78_bits", "lz78_phrases"]

# The kernels index states and edges with int32: 2n states and 3n edges must fit.
_MAX_LENGTH = (1 << 31) // 3 - 1

# Symbol ranges relabelled through a table instead of a sort (a table of this many bytes).
_TABLE_RANGE = 1 << 20


def _labels(symbols: Any, name: str) -> np.ndarray:
    """``symbols`` (a non-empty 1-D integer sequence) relabelled ``0..k-1`` in order of
    value, as the kernels' compact labels."""
    arr = to_numpy(symbols)
    if arr.dtype == np.bool_:
        raise TypeError(
            f"{name} has dtype bool; give integer symbols (x.astype(np.uint8)), or the "
            "weights to lz76_bits / lz78_bits, which binarize them"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"{name} has dtype {arr.dtype}; give integer symbols, or the weights to "
            "lz76_bits / lz78_bits, which binarize or symbolize them"
        )
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D sequence, got shape {arr.shape}: flatten it (x.ravel())"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty: Lempel-Ziv complexity needs at least one symbol")
    if arr.size > _MAX_LENGTH:
        raise ValueError(f"{name} has {arr.size} symbols; at most {_MAX_LENGTH} are supported")
    lo, hi = int(arr.min()), int(arr.max())
    if hi - lo < _TABLE_RANGE:
        present = np.bincount((arr - lo).astype(np.intp), minlength=hi - lo + 1) > 0
        relabel = np.cumsum(present) - 1
        out = relabel[arr - lo]
    else:
        out = np.unique(arr, return_inverse=True)[1].reshape(-1)
    return np.ascontiguousarray(out, dtype=np.uint8 if out.max() < 256 else np.int32)


def _sequence(w: Any, symbols: int | None, method: str) -> tuple[np.ndarray, int]:
    """The symbol sequence of the weights ``w`` and its alphabet size."""
    if symbols is None:
        seq, k = binarize(w), 2
    else:
        k = check_int(symbols, "symbols", minimum=2, maximum=256)
        seq = symbolize(w, k, method)
    seq = seq.reshape(-1)
    if seq.size == 0:
        raise ValueError("weights are empty: Lempel-Ziv complexity needs at least one weight")
    if seq.size > _MAX_LENGTH:
        raise ValueError(f"weights have {seq.size} values; at most {_MAX_LENGTH} are supported")
    return np.ascontiguousarray(seq), k


def lz76_phrases(symbols: Any) -> int:
    """Kaspar-Schuster (LZ76) complexity: the number of phrases of the Lempel-Ziv 1976
    parse of a symbol sequence.

    Each phrase is the longest stretch that also starts somewhere earlier (copies may
    overlap the phrase) plus one new symbol; the last phrase may be a bare copy. Equal to
    ``antropy.lziv_complexity(symbols, normalize=False)``, in linear time.

    Parameters
    ----------
    symbols : array_like of int
        A non-empty 1-D sequence of integers (any values: only equality matters).

    Returns
    -------
    int
        The phrase count, from 1 to ``len(symbols)``.

    Raises
    ------
    TypeError
        If ``symbols`` is not integer (``bool`` and floats are refused: binarize or
        symbolize weights first, or call :func:`lz76_bits`).
    ValueError
        If ``symbols`` is empty or not 1-D.

    Examples
    --------
    >>> lz76_phrases([1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0])  # 1|0|01|1110|1100|0010
    6
    """
    return int(_k.lz76_phrases(_labels(symbols, "symbols")))


def lz76_bits(w: Any, symbols: int | None = None, method: str = "uniform") -> float:
    """LZ76 complexity of the weights in bits: ``c * log2(n)`` for ``c`` phrases of ``n``
    symbols (see the module notes: about ``n log2 k`` for random symbols; no upper bound).

    Parameters
    ----------
    w : array_like or torch.Tensor
        Real weights of any shape, read flattened.
    symbols : int, optional
        ``None``: the signs (``w > 0``). An integer ``k`` in [2, 256]:
        ``kcomplex.symbolize(w, k, method)``.
    method : {"uniform", "quantile"}
        Binning of :func:`kcomplex.symbolize`, when ``symbols`` is given.

    Returns
    -------
    float
        Bits; 0 for a single weight.

    Raises
    ------
    TypeError
        If ``w`` is not real or ``symbols`` not an integer.
    ValueError
        If ``w`` is empty or holds NaN or Inf, or ``symbols`` is out of range.

    Examples
    --------
    >>> lz76_bits([1.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0])  # 1|0|101010: 3 phrases
    9.0
    """
    seq, _ = _sequence(w, symbols, method)
    return float(_k.lz76_phrases(seq) * math.log2(seq.size))


def lz78_phrases(symbols: Any) -> tuple[int, bool]:
    """The LZ78 parse of a symbol sequence: its number of whole phrases (a dictionary
    phrase plus one symbol) and whether a last partial phrase follows them.

    Parameters
    ----------
    symbols : array_like of int
        A non-empty 1-D sequence of integers.

    Returns
    -------
    tuple of (int, bool)

    Raises
    ------
    TypeError, ValueError
        As :func:`lz76_phrases`.

    Examples
    --------
    >>> lz78_phrases([0, 0, 1, 0, 1, 1, 0, 0])  # 0|01|011|00
    (4, False)
    """
    count, partial = _k.lz78_phrases(_labels(symbols, "symbols"))
    return int(count), bool(partial)


def _index_bits(m: int) -> int:
    """``sum(ceil(log2(j)) for j in 1..m)`` in closed form."""
    if m <= 1:
        return 0
    width = (m - 1).bit_length()  # ceil(log2 m)
    return m * width - (1 << width) + 1


def lz78_bits(w: Any, symbols: int | None = None, method: str = "uniform") -> float:
    """LZ78 code length of the weights' symbols in bits: an upper bound (see the module
    notes for the code).

    Parameters
    ----------
    w : array_like or torch.Tensor
        Real weights of any shape, read flattened.
    symbols : int, optional
        ``None``: the signs (``w > 0``), an alphabet of 2. An integer ``k`` in [2, 256]:
        ``kcomplex.symbolize(w, k, method)``, an alphabet of ``k``.
    method : {"uniform", "quantile"}
        Binning of :func:`kcomplex.symbolize`, when ``symbols`` is given.

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        As :func:`lz76_bits`.

    Examples
    --------
    >>> lz78_bits([-1.0, -1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0])  # 0|01|011|00
    9.0
    """
    seq, k = _sequence(w, symbols, method)
    count, partial = _k.lz78_phrases(seq)
    return float(_index_bits(int(count) + int(partial)) + int(count) * math.log2(k))
