"""One driver: a list of estimators over a source of tensors, on one of three executors.

Sources
-------
:class:`ArraySource` holds tensors in memory (a dict, a module, a torch file read whole),
checked and converted to float32 before any work starts. :class:`FileSource` names the
tensors of files (one file, a list, a sharded checkpoint's index) and reads them chunk by
chunk whenever a task needs them, so that memory stays bounded whatever their size.

Tasks
-----
Everything is the estimators' protocol (:class:`kcomplex.estimators.Estimator`):

- one task per tensor (per tensor and estimator, for an :class:`ArraySource`, whose reads
  cost nothing) gives the tensor's row, and, for a mergeable estimator, the tensor's
  state started at its offset in the weight vector;
- the ``(all)`` bits of a mergeable estimator merge those states in order (the offsets
  must be known before reading: a :class:`FileSource` that drops non-finite values does
  not know them, and then the estimator is treated as not mergeable);
- the ``(all)`` bits of any other estimator come from states fed the whole vector in
  order: one task per part on a Dask cluster, one task for all parts in this process
  (one part's values gathered at a time).

Executors
---------
In this process the tasks run on a thread pool of `workers` threads (the compressors and
numba kernels release the GIL); ``workers=1`` runs them one after the other. With a Dask
``client`` they run on the cluster, which reads files only. Every executor computes the
same states and merges them in the same order: the reports are equal to the last bit.
"""

from __future__ import annotations

import math
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .estimators import Estimator
from .io import INDEX_SUFFIX, iter_chunks, read_index, weight_shapes
from .symbols import describe_nonfinite, describe_overflow
from .validation import check_choice, check_int

__all__ = [
    "CHUNK",
    "NONFINITE",
    "ArraySource",
    "FileSource",
    "Measured",
    "default_workers",
    "file_tensors",
    "measure",
    "prepare",
    "progress_bar",
    "array_source",
    "check_paths",
    "reads_files",
]

#: Elements read at a time (64 MB of float32); tensors up to this size are read whole.
CHUNK = 1 << 24

#: What ``nonfinite=`` may be: NaN/Inf an error, or left out.
NONFINITE = ("raise", "drop")


def default_workers() -> int:
    """Threads of the in-process executor by default: one per CPU (``os.cpu_count()``)."""
    return os.cpu_count() or 1


def progress_bar(progress: bool | None, total: int, desc: str) -> tqdm:
    """A progress bar on stderr; `progress` None: only when stderr is a terminal."""
    if progress is None:
        progress = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not progress, file=sys.stderr, leave=False)


def prepare(
    arr: np.ndarray, label: str, nonfinite: str, *, first: int = 0, numel: int | None = None
) -> tuple[np.ndarray, int]:
    """`arr` as flat contiguous little-endian float32, the dtype every estimator measures,
    and the number of non-finite values dropped.

    NaN/Inf are an error or dropped (`nonfinite`); finite values beyond float32's range
    are always an error: they are not non-finite in the caller's data, and measuring them
    as Inf (or dropping them) would misreport the weights.

    Parameters
    ----------
    arr : numpy.ndarray
        A tensor, or a chunk of one (flat) starting at element `first` of a tensor of
        `numel` elements: messages then say where the chunk lies.
    label : str
        What `arr` is, to start messages (``"tensor 'w'"``).
    nonfinite : {"raise", "drop"}

    Returns
    -------
    (numpy.ndarray, int)

    Raises
    ------
    TypeError
        If `arr` is not floating.
    ValueError
        For values that overflow float32, and for NaN/Inf unless dropped.

    Examples
    --------
    >>> w, dropped = prepare(np.array([1.0, np.nan, 2.0]), "tensor 'w'", "drop")
    >>> w.tolist(), dropped
    ([1.0, 2.0], 1)
    """
    if arr.dtype.kind != "f":
        raise TypeError(f"{label} has dtype {arr.dtype}; weights must be floating")
    if numel is not None and (first or arr.size < numel):
        label = f"{label} (flat elements {first} to {first + arr.size - 1} of {numel})"
    with np.errstate(over="ignore"):  # overflow is reported below, by value
        w = np.ascontiguousarray(arr, dtype="<f4").reshape(-1)
    finite = np.isfinite(w)
    if finite.all():
        return w, 0
    overflow = describe_overflow(arr, label) if arr.dtype.itemsize > 4 else None
    if overflow is not None:
        raise ValueError(
            f"{overflow}; kcomplex measures weights as float32, whose largest magnitude is "
            f"{float(np.finfo(np.float32).max):.8g}: rescale the weights to measure them "
            "(nonfinite='drop' does not drop finite values)"
        )
    if nonfinite == "raise":
        raise ValueError(
            describe_nonfinite(arr, label) + "; pass nonfinite='drop' to leave them out"
        )
    return w[finite], w.size - int(finite.sum())


# --- sources ---------------------------------------------------------------------------


@dataclass
class _Seen:
    """What one read of a tensor found: weights kept, non-finite dropped."""

    kept: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class ArraySource:
    """Tensors in memory, already prepared (:func:`prepare`).

    Attributes
    ----------
    names, shapes : sequences of str
        Each tensor's name and shape (``"64x32"``).
    arrays : sequence of numpy.ndarray
        The prepared float32 values.
    dropped : sequence of int
        Non-finite values dropped from each.
    in_total : sequence of bool, optional
        Which tensors make up the ``(all)`` vector (default: all).
    """

    names: Sequence[str]
    shapes: Sequence[str]
    arrays: Sequence[np.ndarray]
    dropped: Sequence[int]
    in_total: Sequence[bool] | None = None

    cheap_reads = True

    def __len__(self) -> int:
        return len(self.names)

    def included(self, i: int) -> bool:
        return self.in_total is None or self.in_total[i]

    def offsets(self) -> list[int] | None:
        sizes = [a.size if self.included(i) else 0 for i, a in enumerate(self.arrays)]
        return np.cumsum([0, *sizes])[:-1].tolist()

    def known(self, i: int) -> _Seen | None:
        return _Seen(self.arrays[i].size, self.dropped[i])

    def chunks(self, i: int, seen: _Seen) -> Iterator[np.ndarray]:
        w = self.arrays[i]
        seen.kept, seen.dropped = w.size, self.dropped[i]
        if w.size:
            yield w


@dataclass(frozen=True)
class _File:
    """One tensor of a file: where it is, and what the header says."""

    path: str
    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class FileSource:
    """Tensors of files, read `chunk` elements at a time whenever a task needs them.

    Build one with :func:`file_tensors`. Picklable: Dask workers read the files
    themselves, under the same paths.
    """

    tensors: tuple[_File, ...]
    nonfinite: str
    chunk: int = CHUNK

    cheap_reads = False

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    @property
    def shapes(self) -> list[str]:
        return ["x".join(map(str, t.shape)) for t in self.tensors]

    def included(self, i: int) -> bool:
        return True

    def offsets(self) -> list[int] | None:
        # Known from the headers, unless weights may be dropped.
        if self.nonfinite == "drop":
            return None
        return np.cumsum([0, *(t.numel for t in self.tensors)])[:-1].tolist()

    def known(self, i: int) -> _Seen | None:
        return None if self.nonfinite == "drop" else _Seen(self.tensors[i].numel, 0)

    def chunks(self, i: int, seen: _Seen) -> Iterator[np.ndarray]:
        t = self.tensors[i]
        label = f"{t.path}: tensor {t.name!r}"
        first = 0
        for piece in iter_chunks(t.path, t.name, chunk=self.chunk):
            if first == 0 and piece.size == t.numel:
                piece = piece.reshape(t.shape)  # whole: indices in messages follow the shape
            w, dropped = prepare(piece, label, self.nonfinite, first=first, numel=t.numel)
            first += piece.size
            seen.kept += w.size
            seen.dropped += dropped
            if w.size:
                yield w


def check_paths(x: Any) -> list[str | os.PathLike]:
    """`x` as a list of paths: a path, or a non-empty list or tuple of paths.

    Raises
    ------
    TypeError
        For anything else, saying what to pass instead: a Dask cluster reads files only.

    Examples
    --------
    >>> check_paths("model.safetensors")
    ['model.safetensors']
    """
    if isinstance(x, (str, os.PathLike)):
        return [x]
    if isinstance(x, (list, tuple)) and x and all(isinstance(p, (str, os.PathLike)) for p in x):
        return list(x)
    raise TypeError(
        "a Dask cluster reads files, which each worker opens itself: pass a path, a "
        "non-empty list of paths, or a model.safetensors.index.json (got a "
        f"{type(x).__name__}). Arrays, tensors, modules and state dicts cannot be sent "
        "to the workers: save them and pass the path "
        "(safetensors.numpy.save_file(weights, 'model.safetensors') for a dict of "
        "arrays, safetensors.torch.save_file(module.state_dict(), 'model.safetensors') "
        "for a module), or analyze them in this process: kcomplex.analyze(x) without "
        "client"
    )


def file_tensors(x: Any, nonfinite: str = "raise", chunk: int = CHUNK) -> FileSource:
    """The tensors of a path, a list of paths or a sharded checkpoint's index, in the
    order of the weight vector (an index: its shards in the order of their names).

    Raises
    ------
    TypeError
        If `x` is not a path or a non-empty list of paths (:func:`check_paths`).
    ValueError
        If a tensor name is in two files.
    """
    paths = check_paths(x)
    check_choice(nonfinite, "nonfinite", NONFINITE)
    chunk = check_int(chunk, "chunk", minimum=1)
    tensors: list[_File] = []
    where: dict[str, Path] = {}
    for given in paths:
        path = Path(os.fsdecode(os.fspath(given))).absolute()
        for file in read_index(path) if path.suffix.lower() == INDEX_SUFFIX else [path]:
            for name, shape in weight_shapes(file).items():
                if name in where:
                    raise ValueError(f"tensor {name!r} is in both {where[name]} and {file}")
                where[name] = file
                tensors.append(_File(str(file), name, tuple(shape)))
    return FileSource(tuple(tensors), nonfinite, chunk)


Source = ArraySource | FileSource

# Formats read piece by piece; a torch file or an .npz is read whole by each read.
_CHUNKED = (".safetensors", ".npy", INDEX_SUFFIX)


def reads_files(x: Any) -> bool:
    """Whether the driver reads `x` from its files as it goes (a :class:`FileSource`):
    a ``.safetensors`` or ``.npy`` file, an index, or a list of paths. Anything else
    (arrays, modules, dicts, one torch or ``.npz`` file, read whole once) is loaded first.

    Examples
    --------
    >>> reads_files("model.safetensors"), reads_files("model.pt"), reads_files({})
    (True, False, False)
    """
    if isinstance(x, (str, os.PathLike)):
        return Path(os.fsdecode(os.fspath(x))).suffix.lower() in _CHUNKED
    return (isinstance(x, (list, tuple)) and bool(x)
            and all(isinstance(p, (str, os.PathLike)) for p in x))


def array_source(weights: dict[str, np.ndarray], nonfinite: str) -> ArraySource:
    """The tensors of `weights` prepared (:func:`prepare`) in order, errors raised here."""
    check_choice(nonfinite, "nonfinite", NONFINITE)
    prepared = [prepare(arr, f"tensor {name!r}", nonfinite) for name, arr in weights.items()]
    return ArraySource(
        list(weights), ["x".join(map(str, a.shape)) for a in weights.values()],
        [w for w, _ in prepared], [d for _, d in prepared],
    )


# --- tasks -----------------------------------------------------------------------------


def _bits(est: Estimator, states: Sequence[Any], notes: list[str]) -> float:
    try:
        return float(est.bits(states))
    except ValueError as err:
        # Too few weights for the estimate (one block, say): the cell is empty, says why.
        notes.append(f"{est.name}: {err}")
        return math.nan


@dataclass
class _TensorResult:
    """One tensor's task: weights kept and dropped, its bits and notes per estimator,
    and its finished states on the vector's grid (mergeable estimators)."""

    kept: int
    dropped: int
    bits: dict[str, float] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    pieces: dict[str, Any] = field(default_factory=dict)


def _tensor_task(
    source: Source, i: int, ests: tuple[Estimator, ...], per_tensor: bool,
    offset: int | None,
) -> _TensorResult:
    seen = _Seen()
    own = {e.name: e.start(0) for e in ests} if per_tensor else {}
    placed = {e.name: e.start(offset) for e in ests if e.mergeable and offset is not None}
    for w in source.chunks(i, seen):
        for e in ests:
            if e.name in own:
                own[e.name] = e.update(own[e.name], w)
            if e.name in placed:
                placed[e.name] = e.update(placed[e.name], w)
    out = _TensorResult(seen.kept, seen.dropped)
    if not seen.kept:
        return out
    for e in ests:
        if e.name in own:
            notes: list[str] = []
            out.bits[e.name] = _bits(e, [e.finish(own[e.name])], notes)
            out.notes[e.name] = notes
        if e.name in placed:
            out.pieces[e.name] = e.finish(placed[e.name])
    return out


def _total_task(source: Source, est: Estimator, parts: tuple[int, ...]) -> list[Any]:
    """Finished states of the given parts, each fed the whole vector in order."""
    out = []
    for part in parts:
        state = est.start(0, part, est.parts)
        for i in range(len(source)):
            if source.included(i):
                for w in source.chunks(i, _Seen()):
                    state = est.update(state, w)
        out.append(est.finish(state))
    return out


# --- executors -------------------------------------------------------------------------


# A task: the function, its arguments, and the tasks it waits for here (by index).
_Call = tuple[Callable[..., Any], tuple, tuple[int, ...]]


def _run_here(calls: list[_Call], workers: int, bar: tqdm) -> list[Any]:
    """Results of the calls, on `workers` threads, each call started once those it waits
    for are done; with one worker, in order (the waits are on earlier calls)."""
    if workers == 1 or len(calls) == 1:
        results = []
        for fn, args, _ in calls:
            results.append(fn(*args))
            bar.update()
        return results
    results: list[Any] = [None] * len(calls)
    waiting = {j: set(after) for j, (_, _, after) in enumerate(calls) if after}
    finished: set[int] = set()
    with ThreadPoolExecutor(workers, thread_name_prefix="kcomplex") as pool:
        running = {pool.submit(fn, *args): j
                   for j, (fn, args, after) in enumerate(calls) if not after}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            failed = sorted(running[f] for f in done if f.exception() is not None)
            if failed:
                for f in running:
                    f.cancel()
                wait(running)
                # The first failure in the order of the calls, as one after the other.
                failed = sorted(j for f, j in running.items()
                                if not f.cancelled() and f.exception() is not None)
                next(f for f, j in running.items() if j == failed[0]).result()
            for f in done:
                j = running.pop(f)
                results[j] = f.result()
                finished.add(j)
                bar.update()
            for j in sorted(k for k, after in waiting.items() if after <= finished):
                del waiting[j]
                fn, args, _ = calls[j]
                running[pool.submit(fn, *args)] = j
    return results


def _run_on(client: Any, calls: list[_Call], bar: tqdm) -> list[Any]:
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    futures = [
        client.submit(fn, *args, key=f"kcomplex-{fn.__name__.strip('_')}-{i}-{token}",
                      pure=False, priority=1 if fn is _total_task else 0)
        for i, (fn, args, _) in enumerate(calls)
    ]
    try:
        for _ in as_completed(futures):
            bar.update()
        return client.gather(futures)
    finally:
        client.cancel(futures)


# --- the driver ------------------------------------------------------------------------


@dataclass
class Measured:
    """What :func:`measure` found.

    Attributes
    ----------
    kept, dropped : list of int
        Weights measured and non-finite values dropped, per tensor.
    bits : list of dict
        Per tensor (``per_tensor``), bits by estimator name (NaN where undefined).
    notes : list of dict
        Per tensor, each estimator's notes by name (why a cell is empty).
    total : dict
        Bits of the ``(all)`` vector by estimator name (empty with ``total=False``).
    total_notes : dict
        The ``(all)`` notes by estimator name.
    """

    kept: list[int]
    dropped: list[int]
    bits: list[dict[str, float]]
    notes: list[dict[str, list[str]]]
    total: dict[str, float]
    total_notes: dict[str, list[str]]

    def row_notes(self, i: int) -> list[str]:
        """Tensor `i`'s notes: what was dropped or skipped, then each estimator's."""
        out = [f"dropped {self.dropped[i]} non-finite"] if self.dropped[i] else []
        out += [] if self.kept[i] else ["empty: skipped"]
        return out + [n for notes in self.notes[i].values() for n in notes]


def measure(
    source: Source,
    ests: Sequence[Estimator],
    *,
    per_tensor: bool = True,
    total: bool = True,
    workers: int | None = None,
    client: Any = None,
    bar: tqdm | None = None,
) -> Measured:
    """Every estimator over every tensor of `source` and over their concatenation.

    Parameters
    ----------
    source : ArraySource or FileSource
    ests : sequence of Estimator
    per_tensor : bool
        Bits of each tensor on its own (else only the ``(all)`` bits).
    total : bool
        Bits of the ``(all)`` vector: the tensors of `source` it includes, in order.
    workers : int, optional
        Threads here (default :func:`default_workers`; 1: one task after the other).
    client : dask.distributed.Client, optional
        Run the tasks on this cluster instead (`source` must be a :class:`FileSource`).
    bar : tqdm, optional
        Advanced once per task.

    Returns
    -------
    Measured

    Raises
    ------
    ValueError
        No weights in the ``(all)`` vector, and whatever reading the tensors raises.

    Examples
    --------
    >>> from kcomplex.estimators import resolve_estimators
    >>> w = np.linspace(-1, 1, 100, dtype=np.float32)
    >>> m = measure(ArraySource(["w"], ["100"], [w], [0]), resolve_estimators("paper"))
    >>> m.bits[0] == m.total
    True
    """
    workers = default_workers() if workers is None else check_int(workers, "workers",
                                                                  minimum=1)
    if client is not None and not isinstance(source, FileSource):
        raise TypeError("a Dask cluster reads files only: pass a FileSource")
    ests = tuple(ests)
    offsets = source.offsets() if total else None
    merged = tuple(e for e in ests if e.mergeable and offsets is not None)
    streamed = tuple(e for e in ests if total and e not in merged)
    # Long whole-vector streams first, so that they overlap the per-tensor work.
    calls: list[_Call] = []
    stream_of: dict[str, tuple[int, ...]] = {}
    for e in streamed:
        groups = [(p,) for p in range(e.parts)] if client else [tuple(range(e.parts))]
        stream_of[e.name] = tuple(range(len(calls), len(calls) + len(groups)))
        calls += [(_total_task, (source, e, g), ()) for g in groups]
    n_totals = len(calls)
    needed = ests if per_tensor else merged
    tensors = [i for i in range(len(source)) if needed or source.known(i) is None]
    # Tensors read from files: one task each, for every estimator (one read). In memory,
    # reads are free: one task per estimator and tensor, estimator after estimator; an
    # estimator's run after its whole-vector stream, whose state is the largest it keeps,
    # so that two of its large states are never held at once.
    groups = [(e,) for e in needed] if source.cheap_reads and needed else [needed]
    owner: list[int] = []  # the tensor of each call after the totals
    for g in groups:
        after = stream_of.get(g[0].name, ()) if len(g) == 1 else ()
        for i in tensors:
            offset = offsets[i] if offsets is not None and source.included(i) else None
            calls.append((_tensor_task, (source, i, g, per_tensor, offset), after))
            owner.append(i)
    if bar is not None:
        bar.total = (bar.total or 0) + len(calls)
        bar.refresh()
    quiet = bar if bar is not None else tqdm(disable=True)
    results = _run_on(client, calls, quiet) if client else _run_here(calls, workers, quiet)

    n = len(source)
    seen = [source.known(i) for i in range(n)]
    per: list[list[_TensorResult]] = [[] for _ in range(n)]
    for i, r in zip(owner, results[n_totals:]):
        per[i].append(r)
        seen[i] = _Seen(r.kept, r.dropped)
    kept = [s.kept for s in seen]
    dropped = [s.dropped for s in seen]
    bits: list[dict[str, float]] = []
    notes: list[dict[str, list[str]]] = []
    for i in range(n):
        got: dict[str, float] = {}
        for r in per[i]:
            got.update(r.bits)
        bits.append({e.name: got.get(e.name, math.nan) for e in ests} if per_tensor else {})
        notes.append({e.name: [note for r in per[i] for note in r.notes.get(e.name, [])]
                      for e in ests})
    totals: dict[str, float] = {}
    total_notes: dict[str, list[str]] = {}
    if total:
        if not sum(k for i, k in enumerate(kept) if source.included(i)):
            raise ValueError("no weights to analyze: every tensor is empty")
        streams = iter(results[:n_totals])
        for e in ests:
            total_notes[e.name] = []
            if e in merged:
                pieces = [r.pieces[e.name] for rs in per for r in rs if e.name in r.pieces]
                states = [reduce(e.merge, pieces)]
            else:
                states = [s for _ in range(e.parts if client else 1) for s in next(streams)]
            totals[e.name] = _bits(e, states, total_notes[e.name])
    return Measured(kept, dropped, bits, notes, totals, total_notes)
