"""Slow, obvious twins of the BDM kernels: the oracle the kcomplex tests compare against.

Independent of both ``kcomplex._kernels`` and pybdm's code: blocks are cut with plain
slicing following pybdm's partitions, keyed by their raw symbol tuple, relabelled in order
of first appearance, and looked up in the dicts read straight from pybdm's data files
(gzip-compressed pickles of ``{shape: {canonical key string: CTM bits}}``).
"""

from __future__ import annotations

import gzip
import heapq
import importlib.metadata
import itertools
import math
import pickle
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np

FILES = {
    (1, 2): "ctm-b2-d12.pkl.gz",
    (1, 4): "ctm-b4-d12.pkl.gz",
    (1, 5): "ctm-b5-d12.pkl.gz",
    (1, 6): "ctm-b6-d12.pkl.gz",
    (1, 9): "ctm-b9-d12.pkl.gz",
    (2, 2): "ctm-b2-d4x4.pkl.gz",
}


# -- CTM dicts --------------------------------------------------------------------------


def data_file(ndim: int, n_symbols: int) -> Path:
    """Path of pybdm's data file for a table, found without importing pybdm."""
    dist = importlib.metadata.distribution("pybdm")
    name = FILES[ndim, n_symbols]
    for file in dist.files or ():
        if file.name == name:
            return Path(dist.locate_file(file))
    raise FileNotFoundError(name)


@lru_cache(maxsize=None)
def ctm_dict(ndim: int, n_symbols: int) -> dict[tuple[int, ...], dict[str, float]]:
    """``{block shape: {canonical key string: CTM bits}}`` as pybdm ships it."""
    with gzip.open(data_file(ndim, n_symbols), "rb") as fh:
        return pickle.load(fh)


@lru_cache(maxsize=None)
def missing_value(ndim: int, n_symbols: int, shape: tuple[int, ...]) -> float:
    """Score of a block absent from the table: max CTM of its shape + 1."""
    return max(ctm_dict(ndim, n_symbols)[shape].values()) + 1.0


def canonical(symbols) -> str:
    """Relabel symbols in order of first appearance: ``(4, 0, 5, 2, 4) -> '01230'``."""
    labels: dict[int, int] = {}
    return "".join(str(labels.setdefault(int(s), len(labels))) for s in symbols)


def ctm(shape: tuple[int, ...], raw: tuple[int, ...], n_symbols: int) -> float:
    """CTM of a raw block (its symbols read row-major)."""
    table = ctm_dict(len(shape), n_symbols)[shape]
    value = table.get(canonical(raw))
    return missing_value(len(shape), n_symbols, shape) if value is None else value


# -- partitions (pybdm's slicing) -------------------------------------------------------


def _tiles(x: np.ndarray, side: int, step: int | None):
    """Slices of ``x`` with corners on a grid: non-overlapping (``step=None``, edge
    slices truncated) or a sliding window of pitch ``step`` (whole windows only)."""
    if step is None:
        starts = [range(0, n, side) for n in x.shape]
    else:
        starts = [range(0, max(n - side + 1, 0), step) for n in x.shape]
    for corner in itertools.product(*starts):
        yield x[tuple(slice(c, c + side) for c in corner)]


def blocks(x, size: int, partition: str = "ignore", min_length: int = 2, shift: int = 1):
    """The blocks of ``x`` in pybdm's order, as arrays."""
    x = np.asarray(x)
    if partition == "ignore":
        return [b for b in _tiles(x, size, None) if b.shape == (size,) * x.ndim]
    if partition == "correlated":
        return list(_tiles(x, size, shift))
    if partition == "recursive":
        out: list[np.ndarray] = []

        def recurse(part: np.ndarray, side: int) -> None:
            for b in _tiles(part, side, None):
                if b.shape == (side,) * part.ndim:
                    out.append(b)
                elif min(b.shape) >= min_length:
                    recurse(b, min(b.shape))

        recurse(x, size)
        return out
    raise ValueError(partition)


def count(x, size: int, **options) -> dict[tuple[int, ...], dict[tuple[int, ...], int]]:
    """``{block shape: {raw symbols: multiplicity}}``, both levels in order of first
    appearance."""
    out: dict[tuple[int, ...], dict[tuple[int, ...], int]] = {}
    for b in blocks(x, size, **options):
        group = out.setdefault(b.shape, {})
        raw = tuple(int(s) for s in b.flat)
        group[raw] = group.get(raw, 0) + 1
    return out


def bdm_of_counts(counts, n_symbols: int) -> float:
    """BDM of counts laid out as :func:`count` returns them."""
    total = 0.0
    for shape, group in counts.items():
        for raw, n in group.items():
            total += ctm(shape, raw, n_symbols) + math.log2(n)
    return total


def ent_of_counts(counts) -> float:
    """Shannon entropy (bits) of the distribution of raw blocks."""
    n = np.array([c for group in counts.values() for c in group.values()], dtype=float)
    p = n / n.sum()
    return float(-(p * np.log2(p)).sum())


def _default_size(x) -> int:
    return 12 if np.ndim(x) == 1 else 4


def bdm(x, n_symbols: int = 2, size: int | None = None, **options) -> float:
    """BDM: sum over distinct raw blocks of CTM + log2(multiplicity)."""
    return bdm_of_counts(count(x, size or _default_size(x), **options), n_symbols)


def ent(x, size: int | None = None, **options) -> float:
    """Block entropy of ``x`` in bits."""
    return ent_of_counts(count(x, size or _default_size(x), **options))


# -- normalization over the actual blocks ---------------------------------------------


@lru_cache(maxsize=None)
def raw_total(ndim: int, n_symbols: int, shape: tuple[int, ...]) -> int:
    """Raw blocks the canonical keys of a shape stand for: n!/(n-j)! for j labels."""
    labels = Counter(max(key) for key in ctm_dict(ndim, n_symbols)[shape])
    return sum(math.perm(n_symbols, int(j) + 1) * c for j, c in labels.items())


def max_bdm(ndim: int, n_symbols: int, shape: tuple[int, ...], n: int) -> float:
    """BDM of pybdm's most complex arrangement of ``n`` blocks of ``shape``: canonical
    blocks by CTM descending, each repeated once per raw block it stands for, drawn
    round-robin, so that item i of that sequence is drawn c_i times."""
    table = ctm_dict(ndim, n_symbols)[shape]
    q, r = divmod(n, raw_total(ndim, n_symbols, shape))
    if q == 0:  # only the first r items are drawn: the r largest canonical blocks do
        items = heapq.nlargest(r, table.items(), key=lambda kv: kv[1])
    else:
        items = sorted(table.items(), key=lambda kv: -kv[1])
    total, position = 0.0, 0
    for key, value in items:
        for _ in range(math.perm(n_symbols, len(set(key)))):
            c = q + 1 if position < r else q
            if c == 0:
                return total
            total += value + math.log2(c)
            position += 1
    return total


def nbdm(x, n_symbols: int = 2, size: int | None = None, **options) -> float:
    """BDM scaled between the least and most complex objects with the same blocks per
    shape as ``x`` (pybdm's construction, applied to the blocks actually there)."""
    counts = count(x, size or _default_size(x), **options)
    lo = hi = 0.0
    for shape, group in counts.items():
        n = sum(group.values())
        lo += min(ctm_dict(len(shape), n_symbols)[shape].values()) + math.log2(n)
        hi += max_bdm(len(shape), n_symbols, shape, n)
    return (bdm_of_counts(counts, n_symbols) - lo) / (hi - lo)


def nent(x, n_symbols: int = 2, size: int | None = None, **options) -> float:
    """Entropy scaled between the least entropic object (one block per shape) and the
    most entropic one (every block distinct, as far as the raw blocks of a shape go)."""
    counts = count(x, size or _default_size(x), **options)
    per_shape = {shape: sum(group.values()) for shape, group in counts.items()}
    lo = ent_of_counts({s: {(): n} for s, n in per_shape.items()})
    distinct = sum(
        min(n, raw_total(len(s), n_symbols, s)) for s, n in per_shape.items()
    )
    return (ent_of_counts(counts) - lo) / (math.log2(distinct) - lo)


# -- kcomplex's key encoding, for comparing counts ----------------------------------------


def bits_per_symbol(n_symbols: int) -> int:
    return max(1, math.ceil(math.log2(n_symbols)))


def encode(raw: tuple[int, ...], n_symbols: int) -> int:
    """Integer key of a raw block: ``bits`` bits a symbol, first symbol most significant."""
    key = 0
    for s in raw:
        key = key * 2 ** bits_per_symbol(n_symbols) + s
    return key


def decode(key: int, length: int, n_symbols: int) -> tuple[int, ...]:
    base = 2 ** bits_per_symbol(n_symbols)
    out = []
    for _ in range(length):
        key, s = divmod(int(key), base)
        out.append(s)
    return tuple(reversed(out))


def as_naive(counts) -> dict[tuple[int, ...], dict[tuple[int, ...], int]]:
    """A kcomplex ``BlockCounts`` in the layout of :func:`count`."""
    out = {}
    for side, (keys, mult) in counts.groups.items():
        shape = (side,) * counts.ndim
        length = side**counts.ndim
        out[shape] = {
            decode(k, length, counts.n_symbols): int(n) for k, n in zip(keys, mult)
        }
    return out


# -- test inputs ------------------------------------------------------------------------

KINDS = ("uniform", "constant", "sparse", "periodic", "runs", "few")


def symbols(rng: np.random.Generator, shape, n_symbols: int, kind: str) -> np.ndarray:
    """Random symbol arrays with structure, so that repeated blocks occur."""
    shape = tuple(shape)
    size = math.prod(shape)
    if kind == "uniform":
        return rng.integers(0, n_symbols, shape)
    if kind == "constant":
        return np.full(shape, rng.integers(0, n_symbols))
    if kind == "sparse":  # mostly constant with a few other symbols
        x = np.full(size, rng.integers(0, n_symbols))
        flips = rng.random(size) < 0.03
        x[flips] = rng.integers(0, n_symbols, int(flips.sum()))
        return x.reshape(shape)
    if kind == "periodic":  # a random motif repeated along the last axis (rows for 2-D)
        period = int(rng.integers(1, 8))
        motif = rng.integers(0, n_symbols, period)
        x = np.resize(motif, size).reshape(shape)
        if len(shape) == 2 and rng.random() < 0.5:
            x = np.resize(rng.integers(0, n_symbols, (period, shape[1])), shape)
        return x
    if kind == "runs":  # piecewise constant with geometric run lengths
        out = np.empty(size, dtype=np.int64)
        i = 0
        while i < size:
            run = int(rng.geometric(0.08))
            out[i : i + run] = rng.integers(0, n_symbols)
            i += run
        return out.reshape(shape)
    if kind == "few":  # uniform over a sub-alphabet of two symbols
        pair = rng.choice(n_symbols, 2, replace=False)
        return pair[rng.integers(0, 2, shape)]
    raise ValueError(kind)
