"""The estimators that :func:`kcomplex.analyze` runs, by name, in one registry.

Every estimator defines its whole-vector computation once, as a state over pieces of the
weight vector (the paper's: every tensor flattened and concatenated, as float32)::

    state = est.start(offset, part, parts)   # a piece starting `offset` weights in
    state = est.update(state, chunk)         # float32 1-D chunks, in order
    state = est.finish(state)                # closed: small, picklable
    state = est.merge(a, b)                  # a's piece directly followed by b's
    bits = est.bits([state_0, ..., state_k]) # one finished state per part, in order

`mergeable` says whether states of consecutive pieces, each started at its offset, may
be merged (BDM: block counts, plus the symbols around the block grid's seams). A codec's
stream cannot be merged: its whole-vector bits come from one state fed every chunk in
order. `parts` is the number of independent passes the whole-vector computation splits
into: the entropy counts the distinct values of each of 8 buckets of values on its own,
which bounds the memory of one pass to about an eighth of the values. One tensor is
measured by the same protocol, in one part: :meth:`Estimator.tensor`.
:mod:`kcomplex.driver` runs the protocol over a model in-process, streamed or on Dask;
nothing outside this module knows an estimator by name.

An estimator with :attr:`Estimator.keys` can be configured, in Python and on the command
line alike, as ``"name:key=value,key=value"`` (``"bdm:n_symbols=4,method=quantile"``,
``"zstd:level=19,long=1"``). Its canonical name lists the keys in declared order and
leaves out those at their default, so ``"zstd:level=3"`` is ``"zstd"`` itself; the report
column is ``<canonical name>_bits``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from . import _kernels as _k
from .bdm import BDM, BlockCounts
from .compressors import CODECS
from .ctm import TABLES
from .lz import lz76_bits, lz78_bits
from .symbols import symbolize
from .validation import check_choice, check_int

__all__ = [
    "Estimator",
    "Key",
    "ESTIMATORS",
    "PRESETS",
    "resolve_estimators",
    "spelling_help",
]

# Values an entropy state gathers before it compacts them into distinct values and
# counts (64 MB of uint32).
_BUDGET = 1 << 24

# Values gathered, or scanned for runs once sorted, at a time: what is allocated beside
# the values stays small whatever the size of a chunk.
_SLICE = 1 << 20


# A key's integer value as spelled: decimal digits, a sign allowed.
_INTEGER = re.compile(r"[+-]?[0-9]+")

# How a bool key's value may be spelled (in any case); the canonical spelling is 0 or 1.
_BOOLS = ("0", "1", "false", "true")


@dataclass(frozen=True)
class Key:
    """One key of an estimator's configured spelling, ``name:key=value``.

    Attributes
    ----------
    name : str
        The key as spelled.
    default : int, bool or str
        Its value when not given, whose type is the type of its values.
    valid : range or tuple
        Its valid values: a range or a tuple of integers, a tuple of strings; a bool key
        takes ``0``/``1`` or ``false``/``true``.

    Examples
    --------
    >>> key = Key("level", 3, range(1, 23))
    >>> key.parse("19"), key.describe()
    (19, 'level: integer in [1, 22], default 3')
    """

    name: str
    default: Any
    valid: range | tuple = ()

    def parse(self, text: str) -> Any:
        """The value spelled `text`.

        Raises
        ------
        ValueError
            If `text` does not spell a valid value, naming the valid ones.
        """
        if isinstance(self.default, bool):
            return check_choice(text.lower(), self.name, _BOOLS) in ("1", "true")
        if isinstance(self.default, int):
            if not _INTEGER.fullmatch(text):
                raise ValueError(f"{self.name} must be an integer, got {text!r}")
            if isinstance(self.valid, range):
                return check_int(int(text), self.name, minimum=self.valid[0],
                                 maximum=self.valid[-1])
            return check_choice(int(text), self.name, self.valid)
        return check_choice(text, self.name, self.valid)

    def spell(self, value: Any) -> str:
        """`value` as the canonical name spells it (a bool as 0 or 1)."""
        return str(int(value)) if isinstance(value, bool) else str(value)

    def describe(self) -> str:
        """``"<name>: <valid values>, default <value>"``, for messages and ``--help``."""
        if isinstance(self.default, bool):
            valid = "0 or 1 (false or true)"
        elif isinstance(self.valid, range):
            valid = f"integer in [{self.valid[0]}, {self.valid[-1]}]"
        else:
            valid = "one of " + ", ".join(map(str, self.valid))
        return f"{self.name}: {valid}, default {self.spell(self.default)}"


class Estimator:
    """A complexity estimator in bits, as a mergeable state over pieces of the weights.

    Attributes
    ----------
    name : str
        Registry name, or canonical configured name (``"zstd:level=19"``); the report
        column is ``<name>_bits``.
    description : str
        One line for ``--help`` and the docs.
    keys : tuple of Key
        What a configured spelling may set, in the canonical name's order (none: the
        estimator takes no keys).
    mergeable : bool
        States of consecutive pieces merge exactly (:meth:`merge`); else the driver
        feeds one state every chunk of the vector in order.
    parts : int
        Independent passes the whole-vector computation splits into (1 but for the
        entropy); :meth:`bits` takes one finished state per part.

    Examples
    --------
    >>> import numpy as np
    >>> est = ESTIMATORS["bdm"]
    >>> w = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    >>> a = est.finish(est.update(est.start(0), w[:500]))
    >>> b = est.finish(est.update(est.start(500), w[500:]))
    >>> est.bits([est.merge(a, b)]) == est.tensor(w)
    True
    """

    name: str = ""
    description: str = ""
    mergeable: bool = False
    parts: int = 1
    keys: tuple[Key, ...] = ()

    def start(self, offset: int = 0, part: int = 0, parts: int = 1) -> Any:
        """An empty state for the piece that starts `offset` weights into the vector,
        counting part `part` of `parts` (see :attr:`parts`)."""
        raise NotImplementedError

    def update(self, state: Any, chunk: np.ndarray) -> Any:
        """`state` after the next `chunk` (contiguous little-endian float32, 1-D)."""
        raise NotImplementedError

    def finish(self, state: Any) -> Any:
        """`state` closed to further chunks: small and picklable."""
        return state

    def merge(self, a: Any, b: Any) -> Any:
        """The finished state of a's piece directly followed by b's (mergeable only)."""
        raise TypeError(
            f"estimator {self.name!r} cannot merge states: feed one state every chunk in "
            "order"
        )

    def bits(self, states: Sequence[Any]) -> float:
        """Bits from one finished state per part, in part order.

        Raises
        ------
        ValueError
            Where the estimate is undefined (fewer weights than one BDM block).
        """
        raise NotImplementedError

    def fold(self, chunks: Any, offset: int = 0, part: int = 0, parts: int = 1) -> Any:
        """The finished state of `chunks` (an iterable of float32 1-D arrays), in order."""
        state = self.start(offset, part, parts)
        for chunk in chunks:
            state = self.update(state, chunk)
        return self.finish(state)

    def tensor(self, w: np.ndarray) -> float:
        """Bits of one float32 1-D array: the protocol in one part."""
        return self.bits([self.fold([w])])

    def total(self, arrays: Sequence[np.ndarray]) -> float:
        """Bits of the concatenation of float32 1-D arrays, as the driver computes them."""
        return self.bits([self.fold(arrays, 0, p, self.parts) for p in range(self.parts)])

    def configure(self, name: str, values: dict[str, Any]) -> Estimator:
        """The estimator named `name` (canonical) with every key of :attr:`keys` set in
        `values`, checked; the registry entry itself when all are at their defaults.

        Raises
        ------
        ValueError
            For values valid one by one that do not go together.
        """
        return self

    def __repr__(self) -> str:
        return f"<estimator {self.name!r}>"

    def __eq__(self, other: object) -> bool:
        # The canonical name says everything: configured twice, it is the same estimator.
        return type(other) is type(self) and other.name == self.name

    def __hash__(self) -> int:
        return hash((type(self), self.name))

    def __reduce__(self) -> tuple:
        # Estimators travel to Dask workers by their canonical name, resolved again there.
        return (_registered, (self.name,))


def _registered(name: str) -> Estimator:
    return _configured(name)


# --- BDM -------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _bdm(n_symbols: int = 2) -> BDM:
    return BDM(n_symbols=n_symbols)


# Alphabets with a 1-D CTM table.
_ALPHABETS = tuple(n for ndim, n in TABLES if ndim == 1)

# How bdm maps weights to symbols: by sign (2 symbols), or kcomplex.symbolize's bins.
_METHODS = ("sign", "uniform", "quantile")


@dataclass
class _Piece:
    """A stretch of the binarized vector on the vector's block grid: `head`, the symbols
    before its first grid point (all of them while `crossed` is false: the stretch lies
    inside one block); `counts`, the whole blocks from there on (None if none); `tail`,
    the symbols after its last grid point."""

    skip: int
    head: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint8))
    counts: BlockCounts | None = None
    tail: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint8))

    @property
    def crossed(self) -> bool:
        return self.head.size == self.skip

    def add(self, bits: np.ndarray) -> None:
        """Count the whole blocks of `bits`, which start on the grid; keep the rest."""
        bdm = _bdm(2)
        cut = bits.size - bits.size % bdm.size
        if cut:
            part = bdm.count(bits[:cut])
            self.counts = part if self.counts is None else self.counts + part
        self.tail = bits[cut:].copy()


class _BDMEstimator(Estimator):
    name = "bdm"
    description = "BDM of the binarized weights (w > 0), 1-D binary CTM, blocks of 12, ignore"
    mergeable = True
    keys = (Key("n_symbols", 2, _ALPHABETS), Key("method", "sign", _METHODS))

    def configure(self, name: str, values: dict[str, Any]) -> Estimator:
        n_symbols, method = values["n_symbols"], values["method"]
        if method == "sign" and n_symbols != 2:
            raise ValueError(
                f"method 'sign' (the default) makes 2 symbols: with n_symbols={n_symbols} "
                "give method=uniform or method=quantile"
            )
        if method == "sign":
            return self
        return _SymbolBDMEstimator(name, n_symbols, method)

    def start(self, offset: int = 0, part: int = 0, parts: int = 1) -> _Piece:
        return _Piece((-offset) % _bdm(2).size)

    def update(self, state: _Piece, chunk: np.ndarray) -> _Piece:
        bits = (chunk > 0).view(np.uint8)
        if not state.crossed:
            take = state.skip - state.head.size
            state.head = np.concatenate([state.head, bits[:take]])
            bits = bits[take:]
            if not state.crossed:
                return state
        state.add(np.concatenate([state.tail, bits]) if state.tail.size else bits)
        return state

    def merge(self, a: _Piece, b: _Piece) -> _Piece:
        if not a.crossed:
            # a lies inside one block, so b starts where a's head stops: b's head goes on.
            return _Piece(a.skip, np.concatenate([a.head, b.head]), b.counts, b.tail)
        out = _Piece(a.skip, a.head, a.counts)
        pending = np.concatenate([a.tail, b.head])
        if not b.crossed:
            out.tail = pending
            return out
        out.add(pending)  # ends on a grid point: no block, or exactly one
        if b.counts is not None:
            out.counts = b.counts if out.counts is None else out.counts + b.counts
        out.tail = b.tail
        return out

    def bits(self, states: Sequence[_Piece]) -> float:
        (state,) = states
        if state.skip or state.counts is None:
            raise ValueError(f"fewer weights than one block ({_bdm(2).size})")
        return _bdm(2).bdm_from_counts(state.counts)


class _SymbolBDMEstimator(Estimator):
    """BDM of the weights symbolized as :func:`kcomplex.symbolize` does over the whole
    vector: the bins follow from every weight (their range, or their quantiles), so no
    piece can be symbolized, and its blocks counted, before the last weight is in.

    The state gathers the float32 weights, 4 bytes each; :meth:`finish` symbolizes them
    and counts their blocks, so that a finished state is small (the block counts).
    Symbolizing works in float64: for a moment some 21 (quantile) to 31 (uniform) bytes a
    weight in all.
    """

    mergeable = False

    def __init__(self, name: str, n_symbols: int, method: str) -> None:
        self.name, self.n_symbols, self.method = name, n_symbols, method
        self.description = (f"BDM of the weights in {n_symbols} symbols ({method} bins over "
                            "the whole vector), 1-D CTM, blocks of 12, ignore")

    def start(self, offset: int = 0, part: int = 0, parts: int = 1) -> list[np.ndarray]:
        return []

    def update(self, state: list[np.ndarray], chunk: np.ndarray) -> list[np.ndarray]:
        state.append(chunk.copy())
        return state

    def finish(self, state: list[np.ndarray]) -> BlockCounts | None:
        """The block counts of the symbols, or None for fewer weights than one block."""
        values = state[0] if len(state) == 1 else np.concatenate(state or [np.empty(0, "<f4")])
        state.clear()  # the chunks go as soon as they are joined
        bdm = _bdm(self.n_symbols)
        if values.size < bdm.size:
            return None
        return bdm.count(symbolize(values, self.n_symbols, self.method))

    def bits(self, states: Sequence[BlockCounts | None]) -> float:
        (counts,) = states
        bdm = _bdm(self.n_symbols)
        if counts is None:
            raise ValueError(f"fewer weights than one block ({bdm.size})")
        return bdm.bdm_from_counts(counts)


# --- entropy ---------------------------------------------------------------------------


def _entropy_bits(n: int, distinct: int, nlogn: float) -> float:
    """Bits of the entropy estimator from the counts of `n` float32 values.

    The cheaper of two codes, after one flag bit that says which::

        1 + min(32 * distinct + n log2 n - sum c log2 c,  32 * n)

    The first is a two-part code: the table of the distinct values (32 bits each), then
    the sequence of table indices at its empirical order-0 entropy n*H. The second is the
    raw float32 bits. Mostly distinct values (trained weights) make the table cost more
    than the raw bits, and the flag keeps the estimate at most 32 bits a weight plus one.
    """
    two_part = 32.0 * distinct + n * math.log2(n) - nlogn
    return 1.0 + min(two_part, 32.0 * n)


@dataclass
class _Distinct:
    """The float32 bit patterns of one part of the values (those whose low bits are
    `part` under `mask`): gathered into one buffer, and compacted to distinct values and
    their counts whenever more than `limit` are gathered."""

    mask: int
    part: int
    limit: int
    n: int = 0
    buffer: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint32))
    fill: int = 0
    values: np.ndarray | None = None
    counts: np.ndarray | None = None

    def gather(self, u: np.ndarray) -> None:
        if not self.mask and not self.fill:
            # A tensor's values, most often in one chunk: one allocation of their size.
            self.buffer, self.fill = u.copy(), u.size
            self.n += u.size
            if self.fill > self.limit:
                self.compact()
            return
        for first in range(0, u.size, _SLICE):
            piece = u[first : first + _SLICE]
            if not self.buffer.size:
                # Reserved, not touched: a block this large is mapped on its own, and
                # only the pages written are resident.
                self.buffer = np.empty(max(_BUDGET, piece.size), np.uint32)
            elif self.buffer.size < self.fill + piece.size:
                # In place (realloc: a mapped block is remapped, not copied), so the
                # values are never held twice; room for one slice at most is unused.
                self.buffer.resize(self.fill + piece.size, refcheck=False)
            if self.mask:
                end = _k.gather_bucket(piece, np.uint32(self.mask), np.uint32(self.part),
                                       self.buffer, self.fill)
            else:
                end = self.fill + piece.size
                self.buffer[self.fill : end] = piece
            self.n += end - self.fill
            self.fill = end
            if self.fill > self.limit:
                self.compact()

    def compact(self) -> None:
        new, counts = np.unique(self.buffer[: self.fill], return_counts=True)
        self.buffer, self.fill = np.empty(0, np.uint32), 0
        if self.values is not None:
            new = np.concatenate([self.values, new])
            counts = np.concatenate([self.counts, counts])
            order = np.argsort(new, kind="stable")
            new, counts = new[order], counts[order]
            starts = np.flatnonzero(np.concatenate([[True], new[1:] != new[:-1]]))
            new, counts = new[starts], np.add.reduceat(counts, starts)
        self.values, self.counts = new, counts
        # Mostly distinct values do not shrink: compact again only after as many more.
        self.limit = max(self.limit, 2 * new.size)


def _distinct(values: np.ndarray) -> tuple[int, float]:
    """Distinct values of sorted `values` and ``sum c log2 c`` over their run lengths c,
    added run after run in order (as ``_kernels.sorted_runs`` adds them), slice by slice."""
    n = values.size
    repeats, total, carry = 0, 0.0, 0
    for first in range(0, max(n - 1, 0), _SLICE):
        last = min(first + _SLICE, n - 1)
        # same[i]: value first+i equals the one after it; stretches of True are runs.
        same = values[first + 1 : last + 1] == values[first:last]
        edges = np.flatnonzero(np.diff(np.concatenate([[False], same, [False]]).view(np.int8)))
        stretch = edges[1::2] - edges[::2]
        if carry and stretch.size and same[0]:
            stretch[0] += carry  # the run that crossed into this slice
        elif carry:
            total = _accumulate(total, np.array([carry + 1]))
        carry = int(stretch[-1]) if same[-1] else 0
        repeats += int(np.count_nonzero(same))
        total = _accumulate(total, (stretch[:-1] if carry else stretch) + 1)
    if carry:
        total = _accumulate(total, np.array([carry + 1]))
    return n - repeats, total


def _accumulate(total: float, runs: np.ndarray) -> float:
    """``total + c log2 c`` for each run length c in turn, as ``_kernels.sorted_runs``
    adds them.

    Runs of length 1 are left out: they add 1 * log2(1) = 0 and leave the sum as it is.
    The terms are Python's ``c * math.log2(c)`` (the kernel's expression, the same
    libm), and ``np.add.accumulate`` adds them one after the other, in order, unlike
    ``np.sum``, which adds pairwise.
    """
    if not runs.size:
        return total
    longest = int(runs.max())
    if longest <= _TERMS:
        # Run lengths are mostly small: one table lookup each, no sort.
        terms = _terms(longest)[runs]
    else:
        lengths, where = np.unique(runs, return_inverse=True)
        terms = np.array([c * math.log2(c) for c in lengths.tolist()])[where]
    return float(np.add.accumulate(np.concatenate([[total], terms]))[-1])


# Run lengths up to this are looked up in a table of c log2 c.
_TERMS = 1 << 16


@lru_cache(maxsize=1)
def _term_table() -> np.ndarray:
    return np.array([0.0] + [c * math.log2(c) for c in range(1, _TERMS + 1)])


def _terms(longest: int) -> np.ndarray:
    return _term_table()[: longest + 1]


class _EntropyEstimator(Estimator):
    name = "entropy"
    description = (
        "order-0 two-part code (table of distinct float32 values + n*H) or the raw 32 "
        "bits per weight, whichever is shorter, + 1 flag bit"
    )
    # Exact merges would hold a part's values from every piece at once: the driver
    # instead feeds each part's state the whole vector, 1/8 of the values gathered.
    mergeable = False
    parts = 8

    def start(self, offset: int = 0, part: int = 0, parts: int = 1) -> _Distinct:
        if parts & (parts - 1) or not 0 <= part < parts:
            raise ValueError(f"parts must be a power of 2 above part, got {part} of {parts}")
        return _Distinct(parts - 1, part, _BUDGET)

    def update(self, state: _Distinct, chunk: np.ndarray) -> _Distinct:
        # Bit patterns, not values: -0.0 and 0.0 are two entries of a lossless table.
        # Equal values share their low bits, so the parts split the distinct values.
        state.gather(chunk.view(np.uint32))
        return state

    def finish(self, state: _Distinct) -> tuple[int, int, float]:
        """``(values, distinct values, sum of c log2 c over their counts c)``, the sum
        taken in increasing order of the bit patterns, however the values came."""
        if state.values is None:
            values = state.buffer[: state.fill]
            values.sort()
            distinct, nlogn = _distinct(values)
            return state.n, distinct, nlogn
        if state.fill:
            state.compact()
        counts = state.counts
        return state.n, int(counts.size), _accumulate(0.0, counts[counts > 1])

    def bits(self, states: Sequence[tuple[int, int, float]]) -> float:
        n, distinct, nlogn = 0, 0, 0.0
        for size, d, s in states:
            n, distinct, nlogn = n + size, distinct + d, nlogn + s
        if not n:
            raise ValueError("no weights")
        return _entropy_bits(n, distinct, nlogn)


# --- compressors -----------------------------------------------------------------------

# Bytes given to a compressor at a time.
_PIECE = 1 << 20


@dataclass
class _Stream:
    """A compressor's stream and the bytes it has put out."""

    stream: Any
    size: int = 0


class _CodecEstimator(Estimator):
    """A codec at a level (its default, the level :func:`kcomplex.compressed_bits` uses,
    unless configured) and, for zstd, with long-range matching: the length of one stream
    over the float32 little-endian bytes, which no merge of two streams reproduces."""

    def __init__(self, codec: str, note: str, name: str | None = None,
                 level: int | None = None, long: bool = False) -> None:
        c = CODECS[codec]
        self.codec, self.name = codec, codec if name is None else name
        self.level = c.default_level if level is None else level
        self.long = long
        self.keys = (Key("level", c.default_level, c.levels),)
        if codec == "zstd":
            self.keys += (Key("long", False),)
        setting = f"preset {self.level}" if codec == "lzma" else f"level {self.level}"
        if long:
            setting += " with long-range matching (a 128 MiB window, as zstd --long)"
        self.description = (f"{codec} {setting}{note} of the float32 little-endian bytes: "
                            "the stream's length, an upper bound")

    def configure(self, name: str, values: dict[str, Any]) -> Estimator:
        if name == self.codec:
            return self
        return _CodecEstimator(self.codec, "", name, values["level"], values.get("long", False))

    def start(self, offset: int = 0, part: int = 0, parts: int = 1) -> _Stream:
        stream = CODECS[self.codec].stream
        return _Stream(stream(self.level, long=True) if self.long else stream(self.level))

    def update(self, state: _Stream, chunk: np.ndarray) -> _Stream:
        raw = chunk.view(np.uint8)
        # A stream's bytes do not depend on how its input is cut: small pieces keep each
        # piece of output (as long as its input, for weights) small.
        for first in range(0, raw.size, _PIECE):
            state.size += len(state.stream.compress(raw[first : first + _PIECE]))
        return state

    def finish(self, state: _Stream) -> int:
        return state.size + len(state.stream.flush())

    def bits(self, states: Sequence[int]) -> float:
        (size,) = states
        return float(8 * size)


class _SignParseEstimator(Estimator):
    """A Lempel-Ziv parse of the sign sequence (``w > 0``), which no summary of a piece can
    resume: the state gathers the signs, one byte per weight, and the parse runs once over
    all of them."""

    def __init__(self, name: str, bits_of: Any, description: str) -> None:
        self.name, self._bits_of, self.description = name, bits_of, description

    def start(self, offset: int = 0, part: int = 0, parts: int = 1) -> list[np.ndarray]:
        return []

    def update(self, state: list[np.ndarray], chunk: np.ndarray) -> list[np.ndarray]:
        state.append((chunk > 0).view(np.uint8).copy())
        return state

    def finish(self, state: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(state) if state else np.empty(0, dtype=np.uint8)

    def bits(self, states: Sequence[np.ndarray]) -> float:
        (signs,) = states
        return float(self._bits_of(signs))


#: Every estimator by name. The codecs run at their default levels: 9 for the paper's
#: gzip, bz2 and lzma, 3 for zstd (fast enough for 10^8 weights).
ESTIMATORS: dict[str, Estimator] = {
    "bdm": _BDMEstimator(),
    "entropy": _EntropyEstimator(),
    "gzip": _CodecEstimator("gzip", " (the paper's)"),
    "bz2": _CodecEstimator("bz2", " (the paper's)"),
    "lzma": _CodecEstimator("lzma", " (the paper's)"),
    "zstd": _CodecEstimator("zstd", ""),
    "lz76": _SignParseEstimator(
        "lz76", lz76_bits, "Lempel-Ziv 76 (Kaspar-Schuster) phrases c of the signs (w > 0), "
        "as c log2 n bits: an estimate, not a code length"),
    "lz78": _SignParseEstimator(
        "lz78", lz78_bits, "LZ78 code length of the signs (w > 0): an upper bound"),
}

#: Named sets of estimators.
PRESETS: dict[str, tuple[str, ...]] = {
    "default": ("bdm", "zstd", "entropy"),
    "paper": ("bdm", "gzip", "bz2", "lzma"),
    "all": tuple(ESTIMATORS),
}


def spelling_help() -> str:
    """How to configure an estimator, with examples: the ``--help`` epilog's last lines.

    Examples
    --------
    >>> spelling_help().splitlines()[0]
    'Configure an estimator as NAME:KEY=VALUE,KEY=VALUE, for example'
    """
    return (
        "Configure an estimator as NAME:KEY=VALUE,KEY=VALUE, for example\n"
        "  -e bdm 'bdm:n_symbols=4,method=quantile' zstd 'zstd:level=19,long=1'\n"
        "Integers in decimal, bools as 0/1 or false/true. bdm's method sign (w > 0) makes 2 "
        "symbols;\nuniform and quantile bin the whole vector (kcomplex.symbolize), which "
        "holds 4 bytes a weight.\nColumns are named <name>_bits after the canonical name: "
        "keys in the order above, those at\ntheir default left out (zstd:level=3 is zstd).\n"
    )


def _valid() -> str:
    return f"valid: {', '.join(ESTIMATORS)}; presets: {', '.join(PRESETS)}"


def _keys_of(est: Estimator) -> str:
    if not est.keys:
        return f"{est.name!r} takes no keys"
    return f"keys of {est.name!r}: " + "; ".join(k.describe() for k in est.keys)


def _configured(spec: str) -> Estimator:
    """The estimator `spec` spells, ``"name"`` or ``"name:key=value,..."``, whose name is
    a registry entry's: the entry itself when every key is at its default."""
    name, colon, rest = spec.partition(":")
    base = ESTIMATORS[name.strip()]
    values = {k.name: k.default for k in base.keys}
    try:
        if colon:
            _set_keys(base, rest, values)
        canonical = ",".join(f"{k.name}={k.spell(values[k.name])}" for k in base.keys
                             if values[k.name] != k.default)
        return base.configure(f"{base.name}:{canonical}" if canonical else base.name, values)
    except ValueError as err:
        raise ValueError(
            f"estimator {spec!r}: {err}; {_keys_of(base)}. Spell one as "
            f"'name:key=value,key=value'; {_valid()}"
        ) from None


def _set_keys(base: Estimator, text: str, values: dict[str, Any]) -> None:
    """Set in `values` the keys `text` spells, ``key=value,key=value``, each once."""
    if not text.strip():
        raise ValueError("no key=value after ':'")
    keys = {k.name: k for k in base.keys}
    given: set[str] = set()
    for item in text.split(","):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals:
            raise ValueError(f"expected key=value, got {item.strip()!r}")
        if key not in keys:
            raise ValueError(f"unknown key {key!r}")
        if key in given:
            raise ValueError(f"key {key!r} given twice")
        given.add(key)
        values[key] = keys[key].parse(value)


def resolve_estimators(estimators: str | Sequence[str]) -> list[Estimator]:
    """Estimators from a preset name, one estimator, or a list of estimators.

    An estimator is spelled by its name, or configured as ``"name:key=value,key=value"``
    with the keys of its :attr:`Estimator.keys` (``"bdm:n_symbols=4,method=quantile"``,
    ``"zstd:level=19,long=1"``). Integer values are decimal integers; bool values are
    ``0``/``1`` or ``false``/``true``. The estimator's name is canonical: its keys in
    declared order, those at their default left out (``"zstd:level=3"`` is ``"zstd"``, the
    registry's entry), bools as 0 or 1.

    Parameters
    ----------
    estimators : str or sequence of str
        A preset of :data:`PRESETS` or an estimator, or a non-empty list (or tuple) of
        estimators with distinct canonical names, in the order of the report's columns.

    Returns
    -------
    list of Estimator

    Raises
    ------
    TypeError
        If `estimators` is not a string or a sequence of strings (None, a number, a set).
    ValueError
        For an unknown name, a preset inside a list, an empty list, an estimator given
        twice (two spellings of one canonical name count twice), an unknown key, a key
        given twice or a bad value. Every message lists the valid estimators and presets;
        a bad key or value, the estimator's keys and their valid values.

    Examples
    --------
    >>> [e.name for e in resolve_estimators("paper")]
    ['bdm', 'gzip', 'bz2', 'lzma']
    >>> [e.name for e in resolve_estimators(["zstd", "bdm"])]
    ['zstd', 'bdm']
    >>> [e.name for e in resolve_estimators(["zstd:level=3", "zstd:long=true,level=19"])]
    ['zstd', 'zstd:level=19,long=1']
    """
    if isinstance(estimators, str):
        if estimators in PRESETS:
            return [ESTIMATORS[n] for n in PRESETS[estimators]]
        specs: list[Any] = [estimators]
    elif isinstance(estimators, Sequence) and not isinstance(estimators, (bytes, bytearray)):
        specs = list(estimators)
    else:
        raise TypeError(
            "estimators must be a preset name or a list of estimator names, got "
            f"{type(estimators).__name__} {estimators!r}; {_valid()}"
        )
    if not specs:
        raise ValueError(f"no estimators given; {_valid()}")
    for spec in specs:
        if not isinstance(spec, str):
            raise TypeError(
                f"estimator names must be strings, got {type(spec).__name__} {spec!r}; "
                f"{_valid()}"
            )
    presets = [n for n in specs if n in PRESETS]
    if presets:
        raise ValueError(
            f"preset {presets[0]!r} inside a list of estimators: give a preset alone "
            f"(estimators={presets[0]!r}) or list estimator names; {_valid()}"
        )
    unknown = [n for n in specs if n.partition(":")[0].strip() not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator(s) {unknown}; {_valid()}")
    chosen = [_configured(spec) for spec in specs]
    names = [e.name for e in chosen]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        spelled = [s for s, n in zip(specs, names) if n in twice]
        raise ValueError(
            f"estimator(s) {twice} given more than once (as {spelled}): each is one "
            f"column of the report; {_valid()}"
        )
    return chosen
