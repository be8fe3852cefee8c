"""``analyze()`` of checkpoint files on a Dask cluster, or streamed on one machine.

:func:`analyze` gives the same :class:`~kcomplex.analysis.Report` as
:func:`kcomplex.analyze`, number for number, for one weights file, several files taken
as one weight vector, or a sharded ``.safetensors`` checkpoint (its
``model.safetensors.index.json``), reading every tensor in chunks so that memory stays
bounded whatever the size of the checkpoint.

How the work is cut
-------------------
Tasks receive file paths and tensor names, never arrays: each worker reads its own
data, so the files must be reachable under the same path on every worker.

- One task per tensor gives that tensor's row: every estimator on the tensor, read whole
  when it has at most ``chunk`` elements, else streamed chunk by chunk. It also counts
  the tensor's BDM blocks on the grid of the whole weight vector (its offset there is
  known from the file headers): the counts, plus the few symbols before its first and
  after its last grid point, which the client joins into the blocks that straddle two
  tensors. Block counts merge exactly with ``+`` (:class:`~kcomplex.bdm.BlockCounts`),
  so the merged ``(all)`` BDM is the single-process value to the last bit.
- The compressors' ``(all)`` bits are one stream over the whole vector, which no merge
  of per-tensor streams reproduces: each codec's total is one task that reads every
  tensor itself, in order, and these tasks run beside the per-tensor ones.
- The entropy ``(all)`` row counts distinct float32 values over the whole vector in the
  buckets of :mod:`kcomplex.estimators` (values split by their low bits), summed in the
  same order: one task per group of buckets, each reading the files itself.
- With ``nonfinite="drop"`` the offsets of the tensors in the vector are unknown until
  every tensor is read, so the ``(all)`` BDM is then one streaming task too.

Memory
------
A task holds one chunk (``chunk`` elements, 64 MB of float32 by default) and what its
estimator keeps: block counts, a compressor's window, or, for the entropy, at most about
``chunk`` gathered values per pass (several passes over the data when a tensor or a
bucket holds more). Without a client, :func:`analyze` runs the same tasks one after the
other in this process: a checkpoint larger than memory is analyzed with bounded memory.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import _NONFINITE, ALL, Report, _progress, _report, _run
from .bdm import BlockCounts
from .estimators import (
    _BUCKET_BITS,
    Estimator,
    _bdm,
    _entropy_bits,
    resolve_estimators,
)
from .io import INDEX_SUFFIX, _iter_chunks, read_index, weight_shapes

__all__ = ["analyze", "connect"]

#: Elements read at a time (64 MB of float32), and the most values the entropy
#: estimator gathers in one pass.
CHUNK = 1 << 24

_CODECS = ("gzip", "bz2", "lzma", "zstd")

# Cells gathered in one pass of the entropy count, numbered in 16 bits; values keyed
# per slice of this many.
_MAX_CELLS = (1 << 15) - 1
_SLICE = 1 << 20


@dataclass(frozen=True)
class _Tensor:
    """One tensor of the weight vector: where it is, and what its header says."""

    path: str
    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


# --- which tensors ---------------------------------------------------------------------


def _tensors(x: Any) -> list[_Tensor]:
    """The tensors of a path, a list of paths or an index, in the weight vector's order."""
    if isinstance(x, (str, os.PathLike)):
        paths = [x]
    elif isinstance(x, Sequence) and x and all(isinstance(p, (str, os.PathLike)) for p in x):
        paths = list(x)
    else:
        raise TypeError(
            "kcomplex.distributed.analyze and kcomplex.analyze(client=...) read files, "
            "which each worker opens itself: pass a path, a non-empty list of paths, or a "
            f"model.safetensors.index.json (got a {type(x).__name__}). Arrays, tensors, "
            "modules and state dicts cannot be sent to the workers: save them and pass the "
            "path (safetensors.numpy.save_file(weights, 'model.safetensors') for a dict of "
            "arrays, safetensors.torch.save_file(module.state_dict(), 'model.safetensors') "
            "for a module), or analyze them in this process: kcomplex.analyze(x) without "
            "client"
        )
    tensors: list[_Tensor] = []
    where: dict[str, Path] = {}
    for given in paths:
        path = Path(os.fsdecode(os.fspath(given))).absolute()
        for file in read_index(path) if path.suffix.lower() == INDEX_SUFFIX else [path]:
            for name, shape in weight_shapes(file).items():
                if name in where:
                    raise ValueError(f"tensor {name!r} is in both {where[name]} and {file}")
                where[name] = file
                tensors.append(_Tensor(str(file), name, tuple(shape)))
    return tensors


# --- reading ---------------------------------------------------------------------------


@dataclass
class _Seen:
    """What one pass over a tensor found: weights kept, non-finite dropped."""

    kept: int = 0
    dropped: int = 0


def _prepared(
    t: _Tensor, nonfinite: str, chunk: int, seen: _Seen | None = None
) -> Iterator[np.ndarray]:
    """The tensor as 1-D little-endian float32 chunks, as ``analysis._prepare`` makes it."""
    first = 0
    for piece in _iter_chunks(t.path, t.name, chunk=chunk):
        if piece.dtype.kind != "f":
            raise TypeError(
                f"{t.path}: tensor {t.name!r} has dtype {piece.dtype}; weights must be floating"
            )
        with np.errstate(over="ignore"):
            w = np.ascontiguousarray(piece, dtype="<f4")
        finite = np.isfinite(w)
        if not finite.all():
            # Finite in the file's dtype but beyond float32's range: an error, never dropped.
            over = np.flatnonzero(np.isfinite(piece.reshape(-1)) & ~finite)
            if over.size:
                where = tuple(int(i) for i in np.unravel_index(first + int(over[0]), t.shape))
                raise ValueError(
                    f"{t.path}: tensor {t.name!r}: a value overflows float32 (first at index "
                    f"{where}: {piece.reshape(-1)[over[0]]:.6g}); kcomplex measures weights as "
                    "float32: rescale the weights to measure them (nonfinite='drop' does not "
                    "drop finite values)"
                )
            if nonfinite == "raise":
                bad = first + int(np.flatnonzero(~finite)[0])
                where = tuple(int(i) for i in np.unravel_index(bad, t.shape))
                raise ValueError(
                    f"{t.path}: tensor {t.name!r} contains non-finite values, first at "
                    f"index {where}; pass nonfinite='drop' to leave them out"
                )
            if seen is not None:
                seen.dropped += w.size - int(finite.sum())
            w = w[finite]
        if seen is not None:
            seen.kept += w.size
        first += piece.size
        yield w


def _vector(tensors: Sequence[_Tensor], nonfinite: str, chunk: int) -> Iterator[np.ndarray]:
    """The whole weight vector as chunks, tensor after tensor."""
    for t in tensors:
        yield from _prepared(t, nonfinite, chunk)


# --- BDM on a block grid ---------------------------------------------------------------


@dataclass
class _Piece:
    """A stretch of the binarized weight vector counted on the vector's block grid.

    ``head``: the symbols before the first grid point (all of them when ``crossed`` is
    false: the stretch lies inside one block); ``counts``: the whole blocks from there
    on (None if none); ``tail``: the symbols after the last grid point.
    """

    head: np.ndarray
    counts: BlockCounts | None
    tail: np.ndarray
    crossed: bool


class _Blocks:
    """Counts blocks of the BDM grid over symbols fed in order; the stream starts
    ``skip`` symbols before a grid point (0: on one)."""

    def __init__(self, skip: int = 0) -> None:
        self.bdm = _bdm()
        self.skip = skip
        self.head = np.empty(0, np.uint8)
        self.carry = np.empty(0, np.uint8)
        self.counts: BlockCounts | None = None

    def feed(self, w: np.ndarray) -> None:
        bits = (w > 0).view(np.uint8)
        if self.head.size < self.skip:
            take = self.skip - self.head.size
            self.head = np.concatenate([self.head, bits[:take]])
            bits = bits[take:]
        self.add(np.concatenate([self.carry, bits]) if self.carry.size else bits)

    def add(self, bits: np.ndarray) -> None:
        """Count the whole blocks of `bits` (starting on the grid); carry the rest."""
        cut = bits.size - bits.size % self.bdm.size
        if cut:
            part = self.bdm.count(bits[:cut])
            self.counts = part if self.counts is None else self.counts + part
        self.carry = bits[cut:].copy()

    def piece(self) -> _Piece:
        return _Piece(self.head, self.counts, self.carry, self.head.size == self.skip)


def _merge(pieces: Iterable[_Piece]) -> BlockCounts | None:
    """Block counts of consecutive pieces joined, in order: the blocks within each piece
    and those that straddle two or more."""
    joined = _Blocks()
    for p in pieces:
        pending = np.concatenate([joined.carry, p.head])
        if not p.crossed:
            joined.carry = pending
            continue
        # The pending symbols end on a grid point: zero or one whole block.
        joined.add(pending)
        if p.counts is not None:
            joined.counts = p.counts if joined.counts is None else joined.counts + p.counts
        joined.carry = p.tail
    return joined.counts


def _bdm_bits(counts: BlockCounts | None, message: str) -> float:
    if counts is None:
        raise ValueError(message)
    return _bdm().bdm_from_counts(counts)


# --- entropy, streamed -----------------------------------------------------------------


def _ranges(hist: np.ndarray, budget: int) -> list[tuple[int, int, bool]]:
    """Runs ``[lo, hi)`` of consecutive top-16-bit bins holding at most `budget` values,
    each with a flag: one bin holding more (then counted by its low 16 bits)."""
    out: list[tuple[int, int, bool]] = []
    lo, size = 0, 0
    for b in np.flatnonzero(hist):
        n = int(hist[b])
        if size and size + n > budget:
            out.append((lo, int(b), False))
            lo, size = int(b), 0
        if n > budget:
            out.append((int(b), int(b) + 1, True))
            lo, size = int(b) + 1, 0
            continue
        if not size:
            lo = int(b)
        size += n
    if size:
        out.append((lo, 1 << 16, False))
    return out


def _runs(values: np.ndarray) -> tuple[int, np.ndarray]:
    """Number of distinct values of `values`, and the lengths of the runs of equal values
    longer than 1 once sorted, in sorted order (sorts `values` in place).

    Works on masks of one byte per value: weights are mostly distinct, and index arrays
    over every run would take eight bytes per value.
    """
    if not values.size:
        return 0, np.empty(0, np.int64)
    values.sort()
    repeat = np.concatenate([[False], values[1:] == values[:-1], [False]])
    edges = np.flatnonzero(repeat[1:] != repeat[:-1])
    lengths = edges[1::2] - edges[::2] + 1
    return values.size - int(lengths.sum()) + lengths.size, lengths


def _entropy_parts(
    source: Callable[[], Iterable[np.ndarray]],
    bucket_bits: int,
    buckets: Sequence[int],
    budget: int,
) -> list[tuple[int, float]]:
    """``(distinct values, sum of c log2 c over their counts c)`` of each bucket of the
    float32 values ``source()`` yields (a bucket: the values whose low `bucket_bits` bits
    are its number), the sum taken value by value in increasing order of the bit
    patterns, as ``_kernels.sorted_runs`` takes it on the sorted bucket, so that the
    result is the same to the last bit.

    Memory: about `budget` values. The values are read once for a histogram of their
    top 16 bits, then once per group of bit-pattern ranges that holds `budget` values.
    """
    mask = np.uint32((1 << bucket_bits) - 1)
    n_keys = (len(buckets) + 1) << 16
    slot = np.full(1 << bucket_bits, len(buckets), np.uint32)  # bucket -> its place
    slot[list(buckets)] = np.arange(len(buckets))

    def keys() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # Slices keep the temporaries small whatever the chunk size.
        for w in source():
            for first in range(0, w.size, _SLICE):
                u = w[first : first + _SLICE].view(np.uint32)
                yield u, (slot[u & mask] << 16) | (u >> 16) if bucket_bits else u >> 16

    hist = np.zeros(n_keys, np.int64)
    for _, key in keys():
        hist += np.bincount(key, minlength=n_keys)
    cells = [
        (i, lo, hi, big)
        for i in range(len(buckets))
        for lo, hi, big in _ranges(hist[i << 16 : (i + 1) << 16], budget)
    ]
    parts = [(0, 0.0) for _ in buckets]
    while cells:
        # One pass gathers consecutive cells up to the budget (a big bin costs 65,536
        # counters, not its values).
        group, size = [], 0
        while cells and len(group) < _MAX_CELLS and (
            not group or size + _cell_size(hist, cells[0]) <= budget
        ):
            size += _cell_size(hist, cells[0])
            group.append(cells.pop(0))
        lut = np.full(n_keys, len(group), np.int16)
        for j, (i, lo, hi, _) in enumerate(group):
            lut[(i << 16) + lo : (i << 16) + hi] = j
        gathered: list[list[np.ndarray]] = [[] for _ in group]
        low = [np.zeros(1 << 16, np.int64) if big else None for *_, big in group]
        for u, key in keys():
            cell = lut[key]
            inside = cell < len(group)
            u, cell = u[inside], cell[inside]
            # 16-bit cell numbers: the stable argsort is a radix sort, O(n).
            order = np.argsort(cell, kind="stable") if len(group) > 1 else slice(None)
            u, ends = u[order], np.cumsum(np.bincount(cell, minlength=len(group)))
            for j in range(len(group)):
                values = u[ends[j - 1] if j else 0 : ends[j]]
                if low[j] is not None:
                    low[j] += np.bincount(values & 0xFFFF, minlength=1 << 16)
                elif values.size:
                    gathered[j].append(values)
        for j, (i, *_) in enumerate(group):
            if low[j] is not None:
                n_distinct, runs = int(np.count_nonzero(low[j])), low[j][low[j] > 1]
            else:
                n_distinct, runs = _runs(np.concatenate(gathered[j] or [np.empty(0, np.uint32)]))
            gathered[j] = []
            distinct, total = parts[i]
            parts[i] = (distinct + n_distinct, _accumulate(total, runs))
    return parts


def _accumulate(total: float, runs: np.ndarray) -> float:
    """``total + c log2 c`` for each run length c in turn, as ``sorted_runs`` adds them.

    Runs of length 1 are left out: they add 1 * log2(1) = 0 and leave the sum as it is.
    The terms are Python's ``c * math.log2(c)`` (the kernel's expression, the same
    libm), and ``np.add.accumulate`` adds them one after the other, in order, unlike
    ``np.sum``, which adds pairwise.
    """
    if not runs.size:
        return total
    lengths, where = np.unique(runs, return_inverse=True)
    terms = np.array([c * math.log2(c) for c in lengths.tolist()])[where]
    return float(np.add.accumulate(np.concatenate([[total], terms]))[-1])


def _cell_size(hist: np.ndarray, cell: tuple[int, int, int, bool]) -> int:
    i, lo, hi, big = cell
    return 0 if big else int(hist[(i << 16) + lo : (i << 16) + hi].sum())


# --- tasks (run on the workers) ----------------------------------------------------------


def _tensor_task(
    t: _Tensor,
    names: tuple[str, ...],
    per_tensor: bool,
    nonfinite: str,
    offset: int | None,
    chunk: int,
) -> dict[str, Any]:
    """One tensor's row (``per_tensor``) and, given its `offset` in the weight vector,
    its BDM piece on the vector's block grid."""
    chosen = resolve_estimators(list(names))
    seen = _Seen()
    bits: dict[str, float] = {}
    est_notes: list[str] = []
    piece = None
    size = _bdm().size
    if t.numel <= chunk:
        # Small enough to hold: the very calls analyze() makes.
        parts = list(_prepared(t, nonfinite, chunk, seen))
        w = parts[0] if parts else np.empty(0, "<f4")
        for est in chosen if per_tensor and w.size else ():
            bits[est.name] = _run(est, est.tensor, w, est_notes)
        if offset is not None and w.size:
            blocks = _Blocks((-offset) % size)
            blocks.feed(w)
            piece = blocks.piece()
    else:
        if nonfinite == "drop" or not (per_tensor or offset is not None):
            for _ in _prepared(t, nonfinite, chunk, seen):
                pass  # how many weights are kept decides what runs below
        else:
            seen.kept = t.numel
        stream = partial(_prepared, t, nonfinite, chunk)  # each pass reads the tensor again
        for est in chosen if per_tensor and seen.kept else ():
            if est.name == "bdm":
                local, glob = _Blocks(), _Blocks((-offset) % size if offset is not None else 0)
                for w in stream():
                    local.feed(w)
                    glob.feed(w)
                piece = glob.piece() if offset is not None else None
                message = f"fewer weights than one block ({size})"
                bits[est.name] = _run(est, lambda c: _bdm_bits(c, message), local.counts,
                                      est_notes)
            elif est.name == "entropy":
                (distinct, nlogn), = _entropy_parts(stream, 0, [0], _budget(chunk))
                bits[est.name] = _entropy_bits(seen.kept, distinct, nlogn)
            else:
                bits[est.name] = _run(est, est.total, stream(), est_notes)
        if offset is not None and piece is None and seen.kept:
            blocks = _Blocks((-offset) % size)
            for w in stream():
                blocks.feed(w)
            piece = blocks.piece()
    notes = [f"dropped {seen.dropped} non-finite"] if seen.dropped else []
    notes += [] if seen.kept else ["empty: skipped"]
    return {"numel": seen.kept, "dropped": seen.dropped, "bits": bits,
            "notes": notes + est_notes, "piece": piece}


def _total_task(
    tensors: tuple[_Tensor, ...], name: str, nonfinite: str, chunk: int
) -> tuple[float, list[str]]:
    """``(all)`` bits of one codec (or of BDM, when offsets are unknown): one stream over
    the whole vector, read from the files in order."""
    est, notes = resolve_estimators([name])[0], []
    if name == "bdm":
        blocks = _Blocks()
        for w in _vector(tensors, nonfinite, chunk):
            blocks.feed(w)
        message = f"fewer weights than one BDM block ({blocks.bdm.size})"
        return _run(est, lambda c: _bdm_bits(c, message), blocks.counts, notes), notes
    return _run(est, est.total, _vector(tensors, nonfinite, chunk), notes), notes


def _entropy_task(
    tensors: tuple[_Tensor, ...], buckets: tuple[int, ...], nonfinite: str, chunk: int
) -> list[tuple[int, float]]:
    """Distinct values and sum of c log2 c of some entropy buckets of the whole vector."""
    return _entropy_parts(lambda: _vector(tensors, nonfinite, chunk), _BUCKET_BITS,
                          buckets, _budget(chunk))


def _budget(chunk: int) -> int:
    # Each pass over the data costs a read: never gather fewer values than 2**20 (4 MB).
    return max(chunk, 1 << 20)


# --- the driver ------------------------------------------------------------------------


def _n_workers(client: Any) -> int:
    return max(1, sum(client.nthreads().values())) if client else 1


def _execute(client: Any, calls: list[tuple[Callable, tuple, bool]], bar: Any) -> list[Any]:
    """Results of ``fn(*args)`` for each call: on `client`, or here one after the other.
    Calls flagged ``first`` are scheduled ahead (the long whole-vector streams)."""
    if client is None:
        results = []
        for fn, args, _ in calls:
            results.append(fn(*args))
            bar.update()
        return results
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    futures = [
        client.submit(fn, *args, key=f"kcomplex-{fn.__name__.strip('_')}-{i}-{token}",
                      pure=False, priority=1 if first else 0)
        for i, (fn, args, first) in enumerate(calls)
    ]
    try:
        for _ in as_completed(futures):
            bar.update()
        return client.gather(futures)
    finally:
        client.cancel(futures)


def analyze(
    x: str | os.PathLike | Sequence[str | os.PathLike],
    estimators: str | Sequence[str] = "default",
    *,
    client: Any = None,
    per_tensor: bool = True,
    nonfinite: str = "raise",
    progress: bool | None = None,
    chunk: int = CHUNK,
) -> Report:
    """:func:`kcomplex.analyze` of weights files on a Dask cluster, or streamed here.

    Parameters
    ----------
    x : path or list of paths
        A file :func:`kcomplex.load_weights` reads, several (one weight vector: the
        files in the given order, each file's tensors in :func:`~kcomplex.load_weights`
        order), or a sharded checkpoint's ``*.safetensors.index.json`` (its shards in
        the order of their file names, as :func:`kcomplex.io.read_index` lists them and
        :func:`kcomplex.load_weights` reads them; the index may only name files in its
        own folder or below it, links there are followed). Every path must be readable
        on every worker.
    estimators : str or sequence of str
        As for :func:`kcomplex.analyze`.
    client : dask.distributed.Client, optional
        The cluster to run on (see :func:`connect`); None: the same tasks one after the
        other in this process, with memory bounded by `chunk`.
    per_tensor, nonfinite, progress
        As for :func:`kcomplex.analyze`.
    chunk : int
        Elements read at a time; tensors up to this size are read whole.

    Returns
    -------
    Report
        Equal to ``kcomplex.analyze`` of the same weights: same table, same numbers,
        same metadata.

    Raises
    ------
    FileNotFoundError
        A file, or a shard named by the index, does not exist (its path is named).
    ValueError
        Unknown estimator, NaN/Inf weights (unless dropped), a tensor name in two
        files, no weights at all; :class:`~kcomplex.io.WeightsFormatError` for a
        corrupt file or index, a path that is not a regular file (a FIFO, a device), or
        an index that names a shard outside its folder or a shard that is not a string.
    TypeError
        If `x` is not a path or a list of paths (an array, a module or a dict: save it
        and pass the path, or use :func:`kcomplex.analyze` without a client).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, kcomplex
    >>> from safetensors.numpy import save_file
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> save_file({"fc.weight": np.random.default_rng(0).normal(size=(64, 64))
    ...            .astype(np.float32)}, path)
    >>> streamed = analyze(path, ["bdm", "zstd"], chunk=1000)  # bounded memory, here
    >>> streamed.table.equals(kcomplex.analyze(path, ["bdm", "zstd"]).table)
    True
    >>> with connect(workers=2) as client:  # doctest: +SKIP
    ...     report = analyze(path, client=client)
    """
    if nonfinite not in _NONFINITE:
        raise ValueError(f"nonfinite must be one of {_NONFINITE}, got {nonfinite!r}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive number of elements, got {chunk!r}")
    chosen = resolve_estimators(estimators)
    names = tuple(e.name for e in chosen)
    tensors = tuple(_tensors(x))
    # Offsets in the vector are known from the headers unless weights may be dropped.
    offsets = np.cumsum([0, *(t.numel for t in tensors)])[:-1].tolist()
    merged_bdm = "bdm" in names and nonfinite == "raise"
    calls: list[tuple[Callable, tuple, bool]] = [
        (_total_task, (tensors, n, nonfinite, chunk), True)
        for n in names if n in _CODECS or (n == "bdm" and not merged_bdm)
    ]
    groups = []
    if "entropy" in names:
        n_groups = min(1 << _BUCKET_BITS, _n_workers(client))
        groups = [tuple(range(g, 1 << _BUCKET_BITS, n_groups)) for g in range(n_groups)]
        calls += [(_entropy_task, (tensors, g, nonfinite, chunk), True) for g in groups]
    n_totals = len(calls)
    calls += [
        (_tensor_task, (t, names, per_tensor, nonfinite, o if merged_bdm else None, chunk),
         False)
        for t, o in zip(tensors, offsets)
    ]
    with _progress(progress, len(calls), "analyze") as bar:
        results = _execute(client, calls, bar)
    totals, per = results[:n_totals], results[n_totals:]
    rows = []
    for t, r in zip(tensors, per):
        row: dict[str, Any] = {"tensor": t.name, "shape": "x".join(map(str, t.shape)),
                               "numel": r["numel"]}
        for est in chosen:
            row[f"{est.name}_bits"] = r["bits"].get(est.name, math.nan)
        row["notes"] = "; ".join(r["notes"])
        rows.append(row)
    numel = sum(r["numel"] for r in per)
    if not numel:
        raise ValueError("no weights to analyze: every tensor is empty")
    total = {"tensor": ALL, "shape": "", "numel": numel}
    notes: list[str] = []
    streams = iter(totals[: n_totals - len(groups)])
    entropy = [part for result in totals[n_totals - len(groups) :] for part in result]
    for est in chosen:
        total[f"{est.name}_bits"] = _total_bits(est, merged_bdm, streams, entropy, groups,
                                                per, numel, notes)
    total["notes"] = "; ".join(notes)
    rows = (rows if per_tensor else []) + [total]
    return _report(rows, chosen, nonfinite, sum(r["dropped"] for r in per), len(tensors))


def _total_bits(
    est: Estimator,
    merged_bdm: bool,
    streams: Iterator[tuple[float, list[str]]],
    entropy: list[tuple[int, float]],
    groups: list[tuple[int, ...]],
    per: list[dict[str, Any]],
    numel: int,
    notes: list[str],
) -> float:
    """The ``(all)`` cell of one estimator from the task results, as analyze() has it."""
    if est.name == "bdm" and merged_bdm:
        counts = _merge(r["piece"] for r in per if r["piece"] is not None)
        message = f"fewer weights than one BDM block ({_bdm().size})"
        return _run(est, lambda c: _bdm_bits(c, message), counts, notes)
    if est.name == "entropy":
        # Buckets were dealt round-robin to the groups; add them up in bucket order.
        by_bucket = dict(zip([b for g in groups for b in g], entropy))
        distinct, nlogn = 0, 0.0
        for bucket in range(1 << _BUCKET_BITS):
            d, s = by_bucket[bucket]
            distinct, nlogn = distinct + d, nlogn + s
        return _entropy_bits(numel, distinct, nlogn)
    bits, stream_notes = next(streams)
    notes.extend(stream_notes)
    return bits


@contextmanager
def connect(
    scheduler: str | None = None, *, workers: int | None = None, timeout: float | None = None
) -> Iterator[Any]:
    """A Dask client: of the scheduler at `scheduler`, or of a local cluster of `workers`
    processes (one thread each) that is shut down on exit.

    Parameters
    ----------
    scheduler : str, optional
        Address such as ``"tcp://10.0.0.5:8786"``.
    workers : int, optional
        Start a ``LocalCluster`` of this many worker processes instead.
    timeout : float, optional
        Seconds to wait for the scheduler; default Dask's
        ``distributed.comm.timeouts.connect`` setting (30 s unless configured).

    Returns
    -------
    context manager yielding a dask.distributed.Client

    Raises
    ------
    ValueError
        If not exactly one of `scheduler` and `workers` is given, or `workers` < 1.
    ConnectionError
        If the scheduler cannot be reached (its address is named).
    ModuleNotFoundError
        If dask.distributed is not installed (``pip install 'kcomplex[dist]'``).

    Examples
    --------
    >>> with connect(workers=2) as client:  # doctest: +SKIP
    ...     print(len(client.scheduler_info()["workers"]))
    2
    """
    if (scheduler is None) == (workers is None):
        raise ValueError("give either a scheduler address or a number of workers")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    try:
        from distributed import Client, LocalCluster
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "running on a Dask cluster needs dask.distributed, which is not installed "
            "(pip install 'kcomplex[dist]')", name="distributed",
        ) from exc
    if scheduler is not None:
        try:
            # Client's own default timeout is the configured one; None would mean forever.
            client = Client(scheduler, **({} if timeout is None else {"timeout": timeout}))
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConnectionError(
                f"cannot reach the Dask scheduler at {scheduler!r}: {exc}"
            ) from exc
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client
