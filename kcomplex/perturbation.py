"""Perturbation analysis: how much BDM (or block entropy) changes when one element changes.

The counterpart of pybdm's ``PerturbationExperiment``. Each change is computed exactly
from the blocks that contain the element, with the multiplicities of the whole array, so
it equals ``bdm(x_changed) - bdm(x)`` for every partition (pybdm's is wrong for the
correlated partition, where one element lies in several blocks).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from .bdm import BDM
from .validation import check_choice, check_int

__all__ = ["perturbation"]

_METRICS = ("bdm", "ent")


def _starts(e: int, origin: int, extent: int, size: int, step: int) -> range:
    """Block starts ``origin + k*step`` along one axis whose block covers index ``e``."""
    last = origin + (extent - size) // step * step if extent >= size else origin - 1
    lo = max(e - size + 1, origin)
    first = origin + -(-(lo - origin) // step) * step
    return range(first, min(e, last) + 1, step)


class _Blocks:
    """Raw block keys of an array under one decomposition, with their multiplicities."""

    def __init__(self, bdm: BDM, arr: np.ndarray) -> None:
        self.bdm, self.arr = bdm, arr
        self.regions = bdm.regions(arr.shape)
        counts = bdm.count(arr)
        self.counts = {
            (size, int(k)): int(n)
            for size, (keys, ns) in counts.groups.items()
            for k, n in zip(keys, ns)
        }
        self.total = counts.n_blocks
        self._ctm: dict[tuple[int, int], float] = {}
        self._weights = {}

    def ctm(self, size: int, key: int) -> float:
        if (size, key) not in self._ctm:
            value = self.bdm.table.lookup(size, np.array([key], dtype=np.int64))[0]
            self._ctm[size, key] = float(value)
        return self._ctm[size, key]

    def key(self, start: tuple[int, ...], size: int) -> int:
        block = self.arr[tuple(slice(s, s + size) for s in start)].ravel()
        if size not in self._weights:
            length = size**self.bdm.ndim
            bits = self.bdm.table.bits
            self._weights[size] = [1 << (bits * (length - 1 - j)) for j in range(length)]
        return sum(int(v) * w for v, w in zip(block, self._weights[size]))

    def containing(self, index: tuple[int, ...]):
        """(side, start) of every block that contains the element at ``index``."""
        for origin, extent, size, step in self.regions:
            axes = [
                _starts(e, o, x, size, step) for e, o, x in zip(index, origin, extent)
            ]
            for start in itertools.product(*axes):
                yield size, start

    def change(self, index: tuple[int, ...], new: int, metric: str) -> float:
        blocks = list(self.containing(index))
        net: dict[tuple[int, int], int] = {}
        for size, start in blocks:
            k = (size, self.key(start, size))
            net[k] = net.get(k, 0) - 1
        old = int(self.arr[index])
        self.arr[index] = new
        try:
            for size, start in blocks:
                k = (size, self.key(start, size))
                net[k] = net.get(k, 0) + 1
        finally:
            self.arr[index] = old
        delta = 0.0
        for k, d in net.items():
            if d == 0:
                continue
            n0 = self.counts.get(k, 0)
            n1 = n0 + d
            if metric == "bdm":
                delta += _bdm_term(self.ctm(*k), n1) - _bdm_term(self.ctm(*k), n0)
            else:
                delta -= (_nlogn(n1) - _nlogn(n0)) / self.total
        return delta


def _bdm_term(ctm: float, n: int) -> float:
    return ctm + math.log2(n) if n > 0 else 0.0


def _nlogn(n: int) -> float:
    return n * math.log2(n) if n > 0 else 0.0


def perturbation(
    x: Any,
    idx: Any = None,
    values: Any = None,
    *,
    bdm: BDM | None = None,
    metric: str = "bdm",
    seed: int | None = None,
) -> np.ndarray:
    """Change in BDM (or block entropy) when each selected element is changed alone.

    Parameters
    ----------
    x : array_like of int
        Symbols, as for :meth:`BDM.count`. Not modified.
    idx : array_like of int, optional
        Elements to perturb: shape ``(k, ndim)`` (or ``(k,)`` for 1-D). Default: every
        element, in C order.
    values : array_like of int, optional
        New value per element; ``-1`` (the default) means "another symbol": the flipped
        bit for binary data, else one drawn uniformly from the other symbols.
    bdm : BDM, optional
        The estimator and its partition; default ``BDM(ndim=x.ndim)``.
    metric : {"bdm", "ent"}
        Which value's change to report.
    seed : int, optional
        Seed of the draws for ``values == -1`` with more than two symbols.

    Returns
    -------
    np.ndarray
        ``float64`` of length ``k``: value after the change minus value before.

    Raises
    ------
    TypeError
        If ``bdm`` is not a :class:`BDM`, ``seed`` not an integer, or ``idx`` or
        ``values`` not integers (floats are not truncated, booleans not read as 0/1).
    ValueError
        Unknown metric, ``idx`` not of shape ``(k, ndim)``, an index out of bounds, a
        value outside the alphabet, or not one value per index.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones(30, dtype=int)
    >>> np.round(perturbation(x, [10, 20]), 6)
    array([26.91763 , 27.348237])
    """
    check_choice(metric, "metric", _METRICS)
    if seed is not None:
        seed = check_int(seed, "seed", minimum=0)
    if bdm is None:
        bdm = BDM(ndim=np.asarray(x).ndim)
    elif not isinstance(bdm, BDM):
        raise TypeError(f"bdm must be a kcomplex.BDM, got {type(bdm).__name__}")
    arr = bdm._symbols(x, "input").copy()
    blocks = _Blocks(bdm, arr)
    if idx is None:
        index = np.indices(arr.shape).reshape(arr.ndim, -1).T
    else:
        index = _integers(idx, "idx")
        if arr.ndim == 1 and index.ndim <= 1:
            index = index.reshape(-1, 1)
        if index.ndim != 2 or index.shape[1] != arr.ndim:
            raise ValueError(
                f"idx has shape {index.shape}; it must be (k, {arr.ndim}) for input of "
                f"shape {arr.shape}" + (" (or (k,))" if arr.ndim == 1 else "")
            )
        bad = np.any((index < 0) | (index >= np.array(arr.shape)), axis=1)
        if bad.any():
            raise ValueError(
                f"index {tuple(int(i) for i in index[bad][0])} is out of bounds for input "
                f"of shape {arr.shape}"
            )
        index = index.astype(np.int64)
    if values is None:
        new = np.full(len(index), -1, dtype=np.int64)
    else:
        new = _integers(values, "values").reshape(-1)
        if new.size != len(index):
            raise ValueError(f"got {new.size} values for {len(index)} indices")
        if np.any((new < -1) | (new >= bdm.n_symbols)):
            raise ValueError(f"values must be -1 or symbols in [0, {bdm.n_symbols})")
        new = new.astype(np.int64)
    rng = np.random.default_rng(seed)
    out = np.empty(len(index), dtype=np.float64)
    for i, (where, v) in enumerate(zip(map(tuple, index), new)):
        old = int(arr[where])
        if v < 0:
            v = 1 - old if bdm.n_symbols == 2 else _other(rng, old, bdm.n_symbols)
        out[i] = 0.0 if v == old else blocks.change(where, int(v), metric)
    return out


def _integers(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size == 0:  # an empty list is float64 to numpy, and selects nothing
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    return arr


def _other(rng: np.random.Generator, old: int, n_symbols: int) -> int:
    v = int(rng.integers(n_symbols - 1))
    return v + (v >= old)
