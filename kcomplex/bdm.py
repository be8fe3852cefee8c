"""Block decomposition method (BDM), block entropy and their normalized variants.

BDM(X) = sum over distinct blocks b of [CTM(b) + log2(n_b)], where the blocks come from
a partition of X and CTM values from the tables of :mod:`kcomplex.ctm`. Values are those
of pybdm 0.1.0 (see ``docs/bdm.md`` for the few places where pybdm is wrong and we are
not), computed by the numba kernels of :mod:`kcomplex._kernels`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np

from . import _kernels as _k
from .ctm import CTMTable, bits_per_symbol, load_table
from .symbols import to_numpy
from .validation import check_int, is_int

__all__ = ["BDM", "BlockCounts", "bdm", "PARTITIONS"]

#: Partition names: how the edges that do not fill a whole block are treated.
PARTITIONS = {
    "ignore": "tile from the origin, drop incomplete edge blocks",
    "recursive": "tile incomplete edges again with smaller squares, down to min_length",
    "correlated": "sliding window with step `shift`",
}


# Most blocks one BlockCounts may hold: the sum of two stays below 2**63, so merged counts
# and the entropy's total never overflow int64.
_MAX_BLOCKS = 1 << 62


@dataclass(frozen=True, eq=False)
class BlockCounts:
    """Multiplicities of the distinct blocks of a decomposition.

    Counts of pieces cut on the block grid add up with ``+`` to the counts of the whole,
    so BDM of a merge equals BDM of the whole; pieces added in order give the same
    value to the last bit.

    Made by :meth:`BDM.count`; built by hand, every field is checked (see Raises) and
    the arrays are copied into read-only ``int64`` arrays, so counts that exist are valid.

    Attributes
    ----------
    ndim, n_symbols : int
        Dimension and alphabet of the blocks; a CTM table must exist for them.
    groups : Mapping[int, tuple[np.ndarray, np.ndarray]]
        Block side -> (raw block keys in order of first appearance, counts), read-only.
        A key holds the block's symbols read row-major, first symbol most significant,
        ``bits_per_symbol(n_symbols)`` bits each.

    Raises
    ------
    TypeError
        If ``ndim``, ``n_symbols`` or a side is not an integer, ``groups`` is not a
        mapping of sides to ``(keys, counts)`` pairs, or keys or counts are not integer
        arrays.
    ValueError
        If there is no CTM table for ``ndim`` and ``n_symbols``, a side is not in it,
        keys and counts are not 1-D of equal non-zero length, a key is not a block of
        that side over the alphabet or appears twice, a count is below 1, or there are
        2**62 blocks or more.
    """

    ndim: int
    n_symbols: int
    groups: Mapping[int, tuple[np.ndarray, np.ndarray]]

    def __post_init__(self) -> None:
        ndim = check_int(self.ndim, "BlockCounts ndim")
        n_symbols = check_int(self.n_symbols, "BlockCounts n_symbols")
        sides = load_table(ndim, n_symbols).sizes
        if not isinstance(self.groups, Mapping):
            raise TypeError(
                "BlockCounts groups must be a mapping {block side: (keys, counts)}, got "
                f"{type(self.groups).__name__}"
            )
        groups, total = {}, 0
        for side, pair in self.groups.items():
            side = check_int(side, "BlockCounts block side")
            if side not in sides:
                raise ValueError(
                    f"BlockCounts has a group of block side {side}; the CTM table for "
                    f"ndim={ndim}, n_symbols={n_symbols} has sides {sides}"
                )
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise TypeError(
                    f"BlockCounts group of side {side} must be a (keys, counts) tuple, "
                    f"got {type(pair).__name__}"
                )
            keys = _checked_keys(pair[0], side, ndim, n_symbols)
            counts = _checked_counts(pair[1], side, keys.size)
            # Summed in int64 only where that cannot overflow (so for all real counts).
            small = int(counts.max()) < _MAX_BLOCKS // counts.size
            total += int(counts.sum()) if small else sum(map(int, counts))
            if total >= _MAX_BLOCKS:
                raise ValueError(f"BlockCounts hold 2**62 blocks or more ({total})")
            groups[side] = (keys, counts)
        _freeze(self, ndim, n_symbols, groups)

    @classmethod
    def _of_counter(cls, ndim: int, n_symbols: int,
                    groups: dict[int, tuple[np.ndarray, np.ndarray]]) -> BlockCounts:
        """Counts made by an ``_Accumulator``, valid by construction (their keys come
        from checked symbols or from valid counts): not checked again."""
        counts = object.__new__(cls)
        _freeze(counts, ndim, n_symbols, groups)
        return counts

    def __reduce__(self) -> tuple:
        # Unpickled counts go through the checks, like counts built by hand.
        return (BlockCounts, (self.ndim, self.n_symbols, dict(self.groups)))

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
        if self.n_blocks + other.n_blocks >= _MAX_BLOCKS:
            raise ValueError(
                f"cannot merge counts of {self.n_blocks} and {other.n_blocks} blocks: "
                "BlockCounts hold fewer than 2**62 blocks"
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


def _freeze(counts: BlockCounts, ndim: int, n_symbols: int,
            groups: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    """Set the fields of ``counts``, arrays read-only: valid counts stay valid."""
    for keys, n in groups.values():
        keys.setflags(write=False)
        n.setflags(write=False)
    object.__setattr__(counts, "ndim", ndim)
    object.__setattr__(counts, "n_symbols", n_symbols)
    object.__setattr__(counts, "groups", MappingProxyType(groups))


def _integer_array(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what} is empty: leave the group out")
    return arr


def _checked_keys(values: Any, side: int, ndim: int, n_symbols: int) -> np.ndarray:
    """Block keys of ``side`` as a fresh ``int64`` array, checked: every symbol field below
    ``n_symbols``, no key twice."""
    what = f"BlockCounts keys of side {side}"
    keys = _integer_array(values, what)
    bits, cells = bits_per_symbol(n_symbols), side**ndim
    if keys.min() < 0 or keys.max() >= 1 << (bits * cells):
        bad = keys[(keys < 0) | (keys >= 1 << (bits * cells))][0]
        raise ValueError(
            f"{what}: key {bad} is not a block of {cells} symbols of {bits} bits "
            f"(keys lie in [0, 2**{bits * cells}))"
        )
    keys = keys.astype(np.int64)  # a copy: the caller's array may change later
    if n_symbols != 1 << bits:  # symbol fields of bits bits can hold values >= n_symbols
        mask = (1 << bits) - 1
        for field in range(cells):
            symbol = (keys >> (bits * field)) & mask
            if (symbol >= n_symbols).any():
                bad = keys[symbol >= n_symbols][0]
                raise ValueError(
                    f"{what}: key {bad} holds a symbol of "
                    f"{int(symbol[symbol >= n_symbols][0])}, outside [0, {n_symbols})"
                )
    if np.unique(keys).size != keys.size:
        raise ValueError(f"{what} repeat a key: each distinct block appears once")
    return keys


def _checked_counts(values: Any, side: int, n_keys: int) -> np.ndarray:
    what = f"BlockCounts counts of side {side}"
    counts = _integer_array(values, what)
    if counts.size != n_keys:
        raise ValueError(f"{what}: {counts.size} counts for {n_keys} keys")
    if counts.min() < 1 or counts.max() >= _MAX_BLOCKS:
        raise ValueError(f"{what} must lie in [1, 2**62), got {counts.min()}..{counts.max()}")
    return counts.astype(np.int64)


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
        return BlockCounts._of_counter(self.ndim, self.n_symbols, groups)


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
    TypeError
        If ``ndim``, ``n_symbols``, ``min_length``, ``shift`` or a side of ``shape`` is
        not an integer (``2.0`` and ``True`` are not).
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
        # Every option is checked before the table is loaded (load_table caches).
        ndim, n_symbols = check_int(ndim, "ndim"), check_int(n_symbols, "n_symbols")
        if not isinstance(partition, str) or partition not in PARTITIONS:
            raise ValueError(
                f"unknown partition {partition!r}; valid: {', '.join(PARTITIONS)}"
            )
        sides = _block_sides(shape, ndim)
        self.min_length = check_int(min_length, "min_length", minimum=1)
        self.shift = check_int(shift, "shift", minimum=1)
        self.table = load_table(ndim, n_symbols)
        self.ndim = ndim
        self.n_symbols = n_symbols
        self.partition = partition
        size = self.table.sizes[-1] if sides is None else sides[0]
        if size not in self.table.sizes:
            raise ValueError(
                f"block side {size} is not in the CTM table; available: {self.table.sizes}"
            )
        self.size = size

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
        if not isinstance(counts, BlockCounts):
            raise TypeError(
                f"counts must be kcomplex.BlockCounts (from BDM.count), got "
                f"{type(counts).__name__}"
            )
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


def _block_sides(shape: Any, ndim: int) -> tuple[int, ...] | None:
    """The sides of a ``shape`` option (an integer or a sequence of equal integers), or
    None for the table's largest."""
    if shape is None:
        return None
    if is_int(shape):
        sides: Sequence[Any] = (shape,)
    elif isinstance(shape, (Sequence, np.ndarray)) and not isinstance(shape, (str, bytes)):
        sides = list(shape)
    else:
        raise TypeError(
            f"shape must be an integer or a sequence of integers, got {shape!r} "
            f"({type(shape).__name__})"
        )
    sides = tuple(check_int(side, "shape", minimum=1) for side in sides)
    if len(sides) not in (1, ndim) or len(set(sides)) != 1:
        raise ValueError(f"block shape {shape} must be square with {ndim} axes")
    return sides


def bdm(x: Any, **options: Any) -> float:
    """BDM of a symbol array in bits; ``options`` are those of :class:`BDM`.

    Examples
    --------
    >>> import numpy as np
    >>> round(bdm(np.ones(100, dtype=int), partition="recursive"), 6)
    36.541242
    """
    # No instance cache: a BDM holds nothing costly (its table is cached per process).
    return BDM(**options).bdm(x)
