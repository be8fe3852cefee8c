"""Conditional complexity and the normalized compression distance between weight sets.

For an estimator ``C`` of description length in bits (a compressor, or BDM of the signs):

- ``conditional(b, given=a) = C(a b) - C(a)``: the bits ``b`` costs once ``a`` is known;
- ``ncd(a, b) = (C(a b) - min(C(a), C(b))) / max(C(a), C(b))``, the normalized
  compression distance of Cilibrasi and Vitanyi (2005): near 0 when each explains the
  other, near 1 when they share nothing.

A weight set is anything :func:`kcomplex.load_weights` reads (an array, a tensor, a state
dict, a module, a file): its tensors flattened and concatenated in order as float32, the
weight vector :func:`kcomplex.analyze` measures in its ``(all)`` row. ``C(a)`` is then
that row's value for the same estimator.

``C(a b)`` is the joint description length:

- compressors (``"gzip"``, ``"bz2"``, ``"lzma"``, ``"zstd"``, at their default levels, on
  the float32 little-endian bytes): the length of one stream over ``a``'s bytes followed
  by ``b``'s, streamed without concatenating them. Each length is an upper bound on the
  complexity, so a difference of two is an estimate, not a bound: it can come out
  negative by a few bytes (a compressor that does better on ``a b`` than on ``a``), and is
  returned as measured, never clipped;
- ``"bdm"``: BDM of the merged block counts of ``a``'s and ``b``'s binarized weights
  (``w > 0``), each counted on its own block grid (1-D binary CTM, blocks of 12, the
  ``ignore`` partition). The merge is not BDM of the concatenated signs: that one would
  also count the blocks that straddle the seam, and drop fewer symbols at the ends.
  The two agree when ``a``'s length is a multiple of 12 and ``b``'s last symbols fill no
  block in either. BDM of counts only sees which blocks occur how often, not where: two
  sign patterns with the same block statistics are close under it, whatever their order.
  With it, ``conditional`` lies in ``[0, C(b)]`` and ``ncd`` in ``[0, 1]`` exactly, and
  ``conditional(b, given=b)`` is the number of distinct blocks of ``b`` (one bit each:
  their multiplicities double).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .bdm import BDM, BlockCounts
from .compressors import CODECS, compressed_bits_chunks
from .driver import prepare, progress_bar
from .io import load_weights
from .validation import check_choice

__all__ = ["DISTANCE_DEFAULT", "DISTANCE_ESTIMATORS", "conditional", "distance_matrix", "ncd"]

#: Estimators of the joint description length ``C(a b)``: the codecs, and BDM of merged
#: block counts.
DISTANCE_ESTIMATORS: tuple[str, ...] = (*CODECS, "bdm")
#: The estimator of :func:`conditional`, :func:`ncd` and :func:`distance_matrix` when none
#: is given.
DISTANCE_DEFAULT = "zstd"

# Pairs above which distance_matrix shows a progress bar (on a terminal).
_QUIET_PAIRS = 10


@dataclass(frozen=True)
class _Measured:
    """A weight set as float32 pieces of its vector, and its bits ``C(x)``; for BDM also
    its block counts, which the joint value merges."""

    chunks: tuple[np.ndarray, ...]
    bits: float
    counts: BlockCounts | None = None


def _vector(x: Any, what: str) -> tuple[np.ndarray, ...]:
    """The float32 pieces of `x`'s weight vector, checked as analyze checks them."""
    chunks = tuple(
        prepare(arr, f"tensor {name!r} of {what}", "raise")[0]
        for name, arr in load_weights(x).items()
    )
    if not sum(c.size for c in chunks):
        raise ValueError(f"{what} holds no weights: nothing to measure")
    return chunks


def _measure(x: Any, what: str, estimator: str) -> _Measured:
    chunks = _vector(x, what)
    if estimator != "bdm":
        return _Measured(chunks, compressed_bits_chunks(chunks, estimator))
    bdm = BDM()
    n = sum(c.size for c in chunks)
    if n < bdm.size:
        raise ValueError(
            f"{what} holds {n} weights, fewer than one BDM block ({bdm.size}): use a "
            "compressor (estimator='zstd') for so few weights"
        )
    signs = np.concatenate([(c > 0).view(np.uint8) for c in chunks])
    counts = bdm.count(signs, name=what)
    return _Measured(chunks, bdm.bdm_from_counts(counts), counts)


def _joint(first: _Measured, second: _Measured, estimator: str) -> float:
    """``C(first second)``: one stream over both, or BDM of the merged counts."""
    if estimator == "bdm":
        return BDM().bdm_from_counts(first.counts + second.counts)
    return compressed_bits_chunks((*first.chunks, *second.chunks), estimator)


def _ncd(a: _Measured, b: _Measured, joint: float) -> float:
    return (joint - min(a.bits, b.bits)) / max(a.bits, b.bits)


def _estimator(estimator: Any) -> str:
    return check_choice(estimator, "estimator", DISTANCE_ESTIMATORS)


def conditional(b: Any, given: Any, estimator: str = "zstd") -> float:
    """Conditional complexity of `b` given `given` in bits: ``C(given b) - C(given)``.

    Parameters
    ----------
    b, given : array, tensor, dict, nn.Module or path
        Weight sets, anything :func:`kcomplex.load_weights` reads; each is its tensors
        flattened and concatenated in order, as float32.
    estimator : {"zstd", "gzip", "bz2", "lzma", "bdm"}
        ``C``: a codec at its default level over the float32 bytes (``C(given b)`` is one
        stream over both), or ``"bdm"``, BDM of the binarized weights with the joint
        value from merged block counts (see the module documentation).

    Returns
    -------
    float
        An estimate in bits. For a codec it can be slightly negative, or exceed ``C(b)``
        by the stream's framing: it is the difference of two upper bounds and is returned
        as measured. For ``"bdm"`` it lies in ``[0, BDM(b)]``.

    Raises
    ------
    ValueError
        Unknown estimator; an input with no weights, with NaN/Inf, or (``"bdm"``) with
        fewer than 12 weights; the message names the input.
    TypeError
        As :func:`kcomplex.load_weights`, for inputs it cannot read.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.random.default_rng(0).normal(size=4096).astype(np.float32)
    >>> bool(conditional(w, given=w) < 0.02 * compressed_bits_chunks([w], "zstd"))
    True
    >>> conditional(w, given=w, estimator="bdm") == BDM().count(w > 0).n_distinct
    True
    """
    estimator = _estimator(estimator)
    a = _measure(given, "given", estimator)
    return _joint(a, _measure(b, "b", estimator), estimator) - a.bits


def ncd(a: Any, b: Any, estimator: str = "zstd") -> float:
    """Normalized compression distance ``(C(a b) - min(C(a), C(b))) / max(C(a), C(b))``.

    Parameters
    ----------
    a, b : array, tensor, dict, nn.Module or path
        Weight sets, as for :func:`conditional`.
    estimator : {"zstd", "gzip", "bz2", "lzma", "bdm"}
        As for :func:`conditional`.

    Returns
    -------
    float
        Near 0 for a set and itself (not exactly: a compressor spends bytes on the
        repeat, BDM one bit per distinct block), near 1 for unrelated sets. A codec's
        value may exceed 1 by its framing, and is not quite symmetric in `a` and `b`
        (``C(a b)`` is not ``C(b a)``); docs/distance.md gives the measured slack. For
        ``"bdm"`` it is symmetric and in ``[0, 1]``.

    Raises
    ------
    ValueError, TypeError
        As :func:`conditional`.

    Notes
    -----
    gzip's window is 32 KiB: beyond 8192 float32 weights it no longer sees ``a`` while
    compressing ``b``, and ``ncd(x, x, "gzip")`` approaches 1. Use zstd or lzma there.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> w, other = rng.normal(size=(2, 4096)).astype(np.float32)
    >>> bool(ncd(w, w) < 0.05), bool(ncd(w, other) > 0.9)
    (True, True)
    """
    estimator = _estimator(estimator)
    ma, mb = _measure(a, "a", estimator), _measure(b, "b", estimator)
    return _ncd(ma, mb, _joint(ma, mb, estimator))


def _named(items: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    """Items by name: a mapping's keys; in a sequence, a path's own name, else its place."""
    if isinstance(items, Mapping):
        bad = [k for k in items if not isinstance(k, str)]
        if bad:
            raise TypeError(f"item names must be strings, got {bad[0]!r}")
        named = dict(items)
    elif isinstance(items, Sequence) and not isinstance(items, (str, bytes)):
        names = [os.fspath(x) if isinstance(x, (str, os.PathLike)) else str(i)
                 for i, x in enumerate(items)]
        if len(set(names)) < len(names):
            raise ValueError(
                "items repeat a name (the same path twice?): pass a mapping {name: item}"
            )
        named = dict(zip(names, items))
    else:
        raise TypeError(
            "items must be a mapping {name: weights} or a sequence of weights, got "
            f"{type(items).__name__}"
        )
    if not named:
        raise ValueError("no items: distance_matrix needs at least one weight set")
    return named


def _pairs(n: int, symmetric: bool) -> Iterable[tuple[int, int]]:
    return ((i, j) for i in range(n) for j in range(i if symmetric else 0, n))


def distance_matrix(
    items: Mapping[str, Any] | Sequence[Any],
    estimator: str = "zstd",
    symmetric: bool = True,
    *,
    progress: bool | None = None,
) -> pd.DataFrame:
    """NCD between every two of `items`, each measured alone once.

    Parameters
    ----------
    items : mapping of str to weights, or sequence of weights
        Weight sets, as for :func:`ncd`: tensors of one model
        (``kcomplex.load_weights(model)``), one layer across models, or checkpoints
        (paths). A sequence names a path by itself and anything else by its place
        (``"0"``, ``"1"``, ...). All are loaded into memory.
    estimator : {"zstd", "gzip", "bz2", "lzma", "bdm"}
        As for :func:`ncd`.
    symmetric : bool
        Measure ``C(x y)`` once per pair, row before column, and mirror it; else measure
        both orders (twice the work; a codec's two orders differ by its slack).
    progress : bool, optional
        A progress bar on stderr; default: when stderr is a terminal and there are more
        than 10 joint values to measure.

    Returns
    -------
    pandas.DataFrame
        Square, `items`' names as index and columns; cell ``[x, y]`` is the NCD with
        ``C(x y)`` (``x`` first). The diagonal is measured, not set to 0. ``attrs`` holds
        ``"estimator"`` and ``"bits"``: ``C(x)`` per name.

    Raises
    ------
    TypeError
        `items` is neither a mapping with string keys nor a sequence; an item is not
        readable (see :func:`kcomplex.load_weights`).
    ValueError
        No items, repeated names, an unknown estimator, or an item as :func:`ncd`
        refuses it (the message names it).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> w = rng.normal(size=4096).astype(np.float32)
    >>> d = distance_matrix({"w": w, "copy": w.copy(), "other": rng.normal(size=4096)})
    >>> bool(d.loc["w", "copy"] < 0.05 < 0.9 < d.loc["w", "other"])
    True
    """
    estimator = _estimator(estimator)
    named = _named(items)
    names = list(named)
    measured = [_measure(x, f"item {name!r}", estimator) for name, x in named.items()]
    n = len(names)
    values = np.empty((n, n))
    todo = list(_pairs(n, symmetric))
    if progress is None and len(todo) <= _QUIET_PAIRS:
        progress = False
    with progress_bar(progress, len(todo), "distance") as bar:
        for i, j in todo:
            values[i, j] = _ncd(measured[i], measured[j],
                                _joint(measured[i], measured[j], estimator))
            if symmetric:
                values[j, i] = values[i, j]
            bar.update()
    frame = pd.DataFrame(values, index=pd.Index(names), columns=pd.Index(names))
    frame.attrs = {"estimator": estimator,
                   "bits": {name: m.bits for name, m in zip(names, measured)}}
    return frame
