"""Block decomposition method (BDM), block entropy and their normalized variants.

BDM(X) = sum over distinct blocks b of [CTM(b) + log2(n_b)], where the blocks come from
a partition of X and CTM values from the tables of :mod:`kcomplex.ctm`. Values are those
of pybdm 0.1.0 (see ``docs/bdm.md`` for the few places where pybdm is wrong and we are
not), computed by the numba kernels of :mod:`kcomplex._kernels`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from . import _kernels as _k
from .ctm import CTMTable, bits_per_symbol, load_table
from .symbols import to_numpy

__all__ = ["BDM", "BlockCounts", "bdm", "PARTITIONS"]

#: Partition names: how the edges that do not fill a whole block are treated.
PARTITIONS = {
    "ignore": "tile from the origin, drop incomplete edge blocks",
    "recursive": "tile incomplete edges again with smaller squares, down to min_length",
    "correlated": "sliding window with step `shift`",
}


@dataclass(frozen=True, eq=False)
class BlockCounts:
    """Multiplicities of the distinct blocks of a decomposition.

    Counts of pieces cut on the block grid add up with ``+`` to the counts of the whole,
    so BDM of a merge equals BDM of the whole; pieces added in order give the same
    value to the last bit.

    Attributes
    ----------
    ndim, n_symbols : int
        Dimension and alphabet of the blocks.
    groups : dict[int, tuple[np.ndarray, np.ndarray]]
        Block side length -> (raw block keys in order of first appearance, counts).
    """

    ndim: int
    n_symbols: int
    groups: dict[int, tuple[np.ndarray, np.ndarray]]

    @property
    def n_blocks(self) -> int:
        """Total number of blocks."""
        return int(sum(int(c.sum()) for _, c in self.groups.values()))

    @property
    def n_distinct(self) -> int:
        """Number of distinct blocks."""
        return int(sum(k.size for k, _ in self.groups.values()))

    def __add__(self, other: BlockCounts) -> BlockCounts:
        if not isinstance(other, BlockCounts):
            return NotImplemented
        if (self.ndim, self.n_symbols) != (other.ndim, other.n_symbols):
            raise ValueError(
                f"cannot merge counts of ndim={self.ndim}, n_symbols={self.n_symbols} "
                f"with counts of ndim={other.ndim}, n_symbols={other.n_symbols}"
            )
        acc = _Accumulator(self.ndim, self.n_symbols)
        for part in (self, other):
            for size, (keys, counts) in part.groups.items():
                acc.add_counts(size, keys, counts)
        return acc.result()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BlockCounts):
            return NotImplemented
        return (
            (self.ndim, self.n_symbols) == (other.ndim, other.n_symbols)
            and list(self.groups) == list(other.groups)
            and all(
                np.array_equal(self.groups[s][0], other.groups[s][0])
                and np.array_equal(self.groups[s][1], other.groups[s][1])
                for s in self.groups
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}: {k.size} distinct" for s, (k, _) in self.groups.items())
        return (
            f"BlockCounts(ndim={self.ndim}, n_symbols={self.n_symbols}, "
            f"n_blocks={self.n_blocks}, groups={{{sizes}}})"
        )


# Key spaces up to this many bits are counted in direct-address arrays (binary 1-D and
# 2-D blocks: 4,096 and 65,536 keys; the 2-D table is binary, so 2-D is always dense);
# up to _SEEN_BITS in first-seen bitmaps (4 symbols, blocks of 11 and 12: 2 MB), where
# a key seen before goes to a hash counter; larger ones by partitioned hashing of the
# keys of up to _CHUNK blocks at a time.
_DENSE_BITS = 20
_SEEN_BITS = 24
_CHUNK = 1 << 22


class _Accumulator:
    """Block counters per block side, in order of first appearance of each side."""

    def __init__(self, ndim: int, n_symbols: int) -> None:
        self.ndim, self.n_symbols = ndim, n_symbols
        self.bits = bits_per_symbol(n_symbols)
        self._dense: dict[int, list] = {}
        # size -> [seen, multi, firsts, n, hash state of repeats (slots, order, n_rep)]
        self._seen: dict[int, list] = {}
        self._sparse: dict[int, list] = {}  # size -> [single piece or None, hash state or None]
        self._order: list[int] = []

    def _key_bits(self, size: int) -> int:
        return self.bits * size**self.ndim

    def _kind(self, size: int) -> dict[int, list]:
        """The counter of blocks of ``size`` (created on first use): ``self._dense``,
        ``self._seen`` or ``self._sparse``."""
        if size not in self._order:
            self._order.append(size)
            key_bits = self._key_bits(size)
            if key_bits <= _DENSE_BITS:
                self._dense[size] = [
                    np.zeros(1 << key_bits, dtype=np.int64),
                    np.zeros(1 << key_bits, dtype=np.int64),
                    0,
                ]
            elif key_bits <= _SEEN_BITS:
                n_bytes = 1 << (key_bits - 3)
                self._seen[size] = [np.zeros(n_bytes, dtype=np.uint8),
                                    np.zeros(n_bytes, dtype=np.uint8),
                                    np.empty(0, dtype=np.int64), 0, _k.new_table(0)]
            else:
                self._sparse[size] = [None, None]
        return next(kind for kind in (self._dense, self._seen, self._sparse) if size in kind)

    def _seen_room(self, size: int, more: int) -> list:
        """The first-seen state of ``size`` with room for ``more`` new keys."""
        entry = self._seen[size]
        need = min(entry[3] + more, 1 << self._key_bits(size))
        if entry[2].size < need:
            firsts = np.empty(max(need, 2 * entry[2].size), dtype=np.int64)
            firsts[: entry[3]] = entry[2][: entry[3]]
            entry[2] = firsts
        return entry

    def _add_piece(self, size: int, keys: np.ndarray, counts: np.ndarray) -> None:
        """Counts of the next piece, merged in order (a hash table only from the second
        piece on: one piece, the usual case, needs no merging)."""
        entry = self._sparse[size]
        if entry[0] is None and entry[1] is None:
            entry[0] = (keys, counts)
            return
        if entry[1] is None:
            first_keys, first_counts = entry[0]
            entry[1] = _k.merge_counts(first_keys, first_counts, *_k.new_table(first_keys.size))
            entry[0] = None
        entry[1] = _k.merge_counts(keys, counts, *entry[1])

    def add_1d(self, x: np.ndarray, start: int, stop: int, size: int, step: int) -> None:
        kind = self._kind(size)
        n_windows = max(0, (stop - start - size) // step + 1)
        if kind is self._dense:
            d = self._dense[size]
            d[2] = _k.dense_1d(x, start, stop, size, step, self.bits, d[0], d[1], d[2])
        elif kind is self._seen:
            e = self._seen_room(size, n_windows)
            e[3], *rep = _k.seen_1d(x, start, stop, size, step, self.bits, *e[:4], *e[4])
            e[4] = tuple(rep)
        else:
            for first in range(0, n_windows, _CHUNK):
                last = min(n_windows, first + _CHUNK)
                lo = start + first * step
                keys = _k.block_keys_1d(x, lo, lo + (last - first - 1) * step + size, size,
                                        step, self.bits)
                self._add_piece(size, *_k.count_keys(keys, self._key_bits(size)))

    def add_2d(self, x, r0: int, c0: int, height: int, width: int, size: int, step: int):
        self._kind(size)
        d = self._dense[size]
        d[2] = _k.dense_2d(x, r0, c0, height, width, size, step, self.bits, *d)

    def add_counts(self, size: int, keys: np.ndarray, counts: np.ndarray) -> None:
        kind = self._kind(size)
        if kind is self._dense:
            d = self._dense[size]
            new = keys[d[0][keys] == 0]
            d[1][new] = d[2] + np.arange(new.size)
            d[2] += new.size
            d[0][keys] += counts
        elif kind is self._seen:
            e = self._seen_room(size, keys.size)
            e[3], *rep = _k.seen_counts(keys, counts, *e[:4], *e[4])
            e[4] = tuple(rep)
        else:
            self._add_piece(size, keys, counts)

    def result(self) -> BlockCounts:
        groups = {}
        for size in self._order:
            if size in self._dense:
                counts, first, _ = self._dense[size]
                keys = np.flatnonzero(counts)
                keys = keys[np.argsort(first[keys], kind="stable")]
                groups[size] = (keys, counts[keys])
            elif size in self._seen:
                _, multi, firsts, n, (slots, _, _) = self._seen[size]
                keys = firsts[:n] if 2 * n > firsts.size else firsts[:n].copy()
                groups[size] = (keys, _k.seen_result(multi, firsts, n, slots))
            else:
                piece, state = self._sparse[size]
                if state is not None:
                    slots, order, n = state
                    piece = (order[:n].copy(), _k.table_counts(slots, n))
                if piece is None:
                    continue
                groups[size] = piece
            if groups[size][0].size == 0:
                del groups[size]
        return BlockCounts(ndim=self.ndim, n_symbols=self.n_symbols, groups=groups)


@lru_cache(maxsize=None)
def _descending(table: CTMTable, size: int) -> tuple[np.ndarray, np.ndarray]:
    """CTM values of one shape sorted descending, with the number of raw blocks of each.

    A canonical block with j distinct symbols stands for n!/(n-j)! raw blocks; this is
    the sequence pybdm's normalization draws its most complex arrangement from.
    """
    values, labels = table.values[size], table.labels[size]
    present = np.flatnonzero(~np.isnan(values))
    n = table.n_symbols
    perms = np.array([math.perm(n, j) for j in range(n + 1)], dtype=np.int64)
    order = present[np.argsort(-values[present], kind="stable")]
    return values[order], perms[labels[order]]


class BDM:
    """Block decomposition method on a CTM table.

    Parameters
    ----------
    ndim : int
        1 for sequences, 2 for matrices.
    n_symbols : int
        Alphabet size: 2, 4, 5, 6 or 9 for ``ndim=1``; 2 for ``ndim=2``.
    shape : int or tuple of int, optional
        Block side (a square for ``ndim=2``). Defaults to the table's largest: 12, or
        4x4. Any smaller side the table has is allowed.
    partition : {"ignore", "recursive", "correlated"}
        How edges that do not fill a whole block are treated (see ``PARTITIONS``).
    min_length : int
        Smallest block side the recursive partition goes down to.
    shift : int
        Step of the sliding window of the correlated partition.

    Raises
    ------
    ValueError
        For a table that does not exist, an unknown partition, a block side the table
        lacks, or ``min_length`` / ``shift`` below 1.

    Examples
    --------
    >>> import numpy as np
    >>> b = BDM()
    >>> round(b.bdm(np.zeros(24, dtype=np.uint8)), 6)
    26.610414
    >>> b.ent(np.r_[np.zeros(12, dtype=int), np.ones(12, dtype=int)])
    1.0
    """

    def __init__(
        self,
        ndim: int = 1,
        n_symbols: int = 2,
        shape: int | tuple[int, ...] | None = None,
        partition: str = "ignore",
        min_length: int = 2,
        shift: int = 1,
    ) -> None:
        self.table = load_table(ndim, n_symbols)
        self.ndim = ndim
        self.n_symbols = n_symbols
        if partition not in PARTITIONS:
            raise ValueError(
                f"unknown partition {partition!r}; valid: {', '.join(PARTITIONS)}"
            )
        self.partition = partition
        if shape is None:
            size = self.table.sizes[-1]
        else:
            sides = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
            if len(sides) not in (1, ndim) or len(set(sides)) != 1:
                raise ValueError(f"block shape {shape} must be square with {ndim} axes")
            size = int(sides[0])
        if size not in self.table.sizes:
            raise ValueError(
                f"block side {size} is not in the CTM table; available: {self.table.sizes}"
            )
        self.size = size
        if int(min_length) < 1 or int(shift) < 1:
            raise ValueError(f"min_length ({min_length}) and shift ({shift}) must be >= 1")
        self.min_length = int(min_length)
        self.shift = int(shift)

    @property
    def shape(self) -> tuple[int, ...]:
        """Block shape."""
        return (self.size,) * self.ndim

    def __repr__(self) -> str:
        extra = {"recursive": f", min_length={self.min_length}",
                 "correlated": f", shift={self.shift}"}.get(self.partition, "")
        return (
            f"BDM(ndim={self.ndim}, n_symbols={self.n_symbols}, shape={self.shape}, "
            f"partition={self.partition!r}{extra})"
        )

    # -- input ------------------------------------------------------------------------

    def _symbols(self, x: Any, name: str) -> np.ndarray:
        arr = to_numpy(x)
        if arr.dtype == np.bool_:
            arr = arr.view(np.uint8)
        elif not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(
                f"{name} has dtype {arr.dtype}; BDM needs integer symbols in "
                f"[0, {self.n_symbols}): binarize or symbolize first "
                "(kcomplex.binarize(w) or kcomplex.symbolize(w, n_symbols))"
            )
        if arr.ndim != self.ndim:
            raise ValueError(
                f"{name} has ndim={arr.ndim} (shape {arr.shape}); this BDM has "
                f"ndim={self.ndim}"
            )
        if arr.size:
            lo, hi = arr.min(), arr.max()
            if lo < 0 or hi >= self.n_symbols:
                bad = np.flatnonzero((arr < 0) | (arr >= self.n_symbols))
                where = np.unravel_index(bad[0], arr.shape)
                raise ValueError(
                    f"{name} has {bad.size} symbols out of range [0, {self.n_symbols}), "
                    f"first {arr[where]} at index {tuple(int(i) for i in where)}"
                )
        return np.ascontiguousarray(arr, dtype=np.uint8)

    # -- decomposition ------------------------------------------------------------------

    def count(self, x: Any, *, name: str = "input") -> BlockCounts:
        """Count the distinct blocks of ``x``.

        Parameters
        ----------
        x : array_like of int
            Symbols in ``[0, n_symbols)`` with ``ndim`` axes (numpy, array-like, torch,
            or a ``uint8`` ``np.memmap`` for data beyond RAM: it is read in place, and the
            counts take memory in the distinct blocks and 2**22 blocks at a time).
        name : str
            Name used in error messages.

        Returns
        -------
        BlockCounts

        Raises
        ------
        TypeError
            If ``x`` is not integer (floats must be binarized or symbolized first).
        ValueError
            Wrong ndim, symbols out of range, or too short for one block.
        """
        arr = self._symbols(x, name)
        acc = _Accumulator(self.ndim, self.n_symbols)
        for origin, extent, size, step in self.regions(arr.shape):
            if self.ndim == 1:
                acc.add_1d(arr, origin[0], origin[0] + extent[0], size, step)
            else:
                acc.add_2d(arr, *origin, *extent, size, step)
        counts = acc.result()
        if counts.n_blocks == 0:
            raise ValueError(
                f"{name} of shape {arr.shape} is too short for one block of shape "
                f"{self.shape} under partition={self.partition!r}: use a smaller block "
                "(shape=...) or partition='recursive'"
            )
        return counts

    def regions(self, shape: tuple[int, ...]) -> list[tuple[tuple, tuple, int, int]]:
        """The decomposition of an array of ``shape`` as ``(origin, extent, side, step)``
        regions: blocks of ``side`` start at ``origin + k * step`` along each axis and
        lie within ``extent``; regions are listed in the order pybdm visits them.
        """
        b = self.size
        whole = ((0,) * self.ndim, tuple(shape))
        if self.partition == "correlated":
            return [(*whole, b, self.shift)]
        if self.partition == "ignore":
            return [(*whole, b, b)]
        out: list[tuple[tuple, tuple, int, int]] = []
        self._recurse(out, *whole, b)
        return out

    def _recurse(self, out: list, origin: tuple, extent: tuple, d: int) -> None:
        """pybdm's recursive partition: whole d-tiles, then each incomplete edge slice
        tiled again with squares of its shorter side, down to ``min_length``."""
        out.append((origin, extent, d, d))
        full = tuple(e - e % d for e in extent)
        if self.ndim == 1:
            edges = [((origin[0] + full[0],), (extent[0] - full[0],))] if extent != full else []
        else:
            (r0, c0), (h, w), (fh, fw) = origin, extent, full
            edges = [((r, c0 + fw), (d, w - fw)) for r in range(r0, r0 + fh, d)] if w > fw else []
            if h > fh:
                edges += [((r0 + fh, c), (h - fh, d)) for c in range(c0, c0 + fw, d)]
                if w > fw:
                    edges.append(((r0 + fh, c0 + fw), (h - fh, w - fw)))
        for edge_origin, edge_extent in edges:
            side = min(edge_extent)
            if side >= self.min_length:
                self._recurse(out, edge_origin, edge_extent, side)

    # -- values -------------------------------------------------------------------------

    def _check_counts(self, counts: BlockCounts) -> None:
        if (counts.ndim, counts.n_symbols) != (self.ndim, self.n_symbols):
            raise ValueError(
                f"counts are for ndim={counts.ndim}, n_symbols={counts.n_symbols}; this "
                f"BDM has ndim={self.ndim}, n_symbols={self.n_symbols}"
            )
        if counts.n_blocks == 0:
            raise ValueError("counts hold no block")

    def bdm_from_counts(self, counts: BlockCounts) -> float:
        """BDM in bits of counted blocks."""
        self._check_counts(counts)
        total = 0.0
        for size, (keys, n) in counts.groups.items():  # one sum, in order, over the sides
            total = _k.bdm_sum(self.table.lookup(size, keys), n, total)
        return float(total)

    def ent_from_counts(self, counts: BlockCounts) -> float:
        """Shannon entropy in bits of the distribution of counted blocks."""
        self._check_counts(counts)
        return float(_k.ent_sum(np.concatenate([n for _, n in counts.groups.values()])))

    def bdm(self, x: Any) -> float:
        """BDM of ``x`` in bits (see :meth:`count` for accepted input)."""
        return self.bdm_from_counts(self.count(x))

    def ent(self, x: Any) -> float:
        """Block entropy of ``x`` in bits."""
        return self.ent_from_counts(self.count(x))

    def _shape_counts(self, counts: BlockCounts) -> list[tuple[int, int]]:
        if self.partition == "correlated":
            raise NotImplementedError(
                "normalized BDM and entropy are not defined for the correlated partition"
            )
        return [(size, int(n.sum())) for size, (_, n) in counts.groups.items()]

    def nbdm(self, x: Any) -> float:
        """BDM of ``x`` scaled to [0, 1] between the least and most complex objects of
        the same size, as pybdm builds them from the table."""
        counts = self.count(x)
        value = self.bdm_from_counts(counts)
        lo = hi = 0.0
        for size, n in self._shape_counts(counts):
            lo += float(_descending(self.table, size)[0][-1]) + math.log2(n)
            hi = _k.sorted_prefix_bdm(*_descending(self.table, size), n, hi)
        return _normalize(value, lo, hi, "BDM")

    def nent(self, x: Any) -> float:
        """Block entropy of ``x`` scaled to [0, 1] between the least and most entropic
        objects of the same size."""
        counts = self.count(x)
        value = self.ent_from_counts(counts)
        shapes = self._shape_counts(counts)
        lo = _k.ent_sum(np.array([n for _, n in shapes], dtype=np.int64))
        # pybdm's most entropic object: every block distinct, as far as the raw blocks
        # of each shape go (counted once each, as pybdm counts them).
        distinct = sum(min(n, int(_descending(self.table, s)[1].sum())) for s, n in shapes)
        hi = math.log2(distinct)
        return _normalize(value, lo, hi, "entropy")


def _normalize(value: float, lo: float, hi: float, what: str) -> float:
    if hi == lo:
        raise ValueError(
            f"normalized {what} is undefined here: the least and most complex objects of "
            "this size coincide (too few blocks); use the unnormalized value"
        )
    return (value - lo) / (hi - lo)


@lru_cache(maxsize=32)
def _cached_bdm(**options: Any) -> BDM:
    return BDM(**options)


def bdm(x: Any, **options: Any) -> float:
    """BDM of a symbol array in bits; ``options`` are those of :class:`BDM`.

    Examples
    --------
    >>> import numpy as np
    >>> round(bdm(np.ones(100, dtype=int), partition="recursive"), 6)
    36.541242
    """
    shape = options.get("shape")
    if shape is not None:
        # Any sequence is a shape for BDM; the instance cache needs a hashable one.
        options["shape"] = tuple(int(s) for s in np.atleast_1d(shape))
    return _cached_bdm(**options).bdm(x)
