"""``analyze()`` of checkpoint files on a Dask cluster, or streamed on one machine.

:func:`analyze` gives the same :class:`~kcomplex.analysis.Report` as
:func:`kcomplex.analyze`, number for number, for one weights file, several files taken
as one weight vector, or a sharded ``.safetensors`` checkpoint (its
``model.safetensors.index.json``), reading every tensor in chunks so that memory stays
bounded whatever the size of the checkpoint. Both run :mod:`kcomplex.driver`.

How the work is cut
-------------------
Tasks receive file paths and tensor names, never arrays: each worker reads its own
data, so the files must be reachable under the same path on every worker.

- One task per tensor gives that tensor's row: every estimator's state fed the tensor
  chunk by chunk. For an estimator whose states merge (see
  :class:`kcomplex.estimators.Estimator`), the task also feeds a state started at the
  tensor's offset in the weight vector (known from the file headers), and the client
  merges these in order into the ``(all)`` bits, exactly the single-process value.
- An estimator whose states do not merge (a compressor's stream) gets its ``(all)`` bits
  from one task per part (most estimators have one) that reads every tensor itself, in
  order. These tasks run beside the per-tensor ones.
- With ``nonfinite="drop"`` the offsets of the tensors in the vector are unknown until
  every tensor is read, so every ``(all)`` is then computed that way.

Memory
------
A task holds one chunk (``chunk`` elements, 64 MB of float32 by default) and its
estimators' states (see :mod:`kcomplex.estimators` for what each keeps). Without a
client, :func:`analyze` runs the same tasks in this process on ``workers`` threads,
each holding one chunk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .analysis import Report
from .analysis import analyze as _analyze
from .driver import CHUNK, check_paths

__all__ = ["analyze", "connect", "CHUNK"]


def analyze(
    x: str | os.PathLike | Sequence[str | os.PathLike],
    estimators: str | Sequence[str] = "default",
    *,
    client: Any = None,
    per_tensor: bool = True,
    nonfinite: str = "raise",
    progress: bool | None = None,
    chunk: int = CHUNK,
    workers: int | None = None,
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
        The cluster to run on (see :func:`connect`); None: the same tasks in this
        process, on `workers` threads, with memory bounded by `chunk` per thread.
    per_tensor, nonfinite, progress
        As for :func:`kcomplex.analyze`.
    chunk : int
        Elements read at a time; tensors up to this size are read whole.
    workers : int, optional
        Threads in this process, as for :func:`kcomplex.analyze`.

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
    >>> streamed = analyze(path, chunk=1000)  # bounded memory, here
    >>> streamed.table.equals(kcomplex.analyze(path, workers=1).table)
    True
    >>> with connect(workers=2) as client:  # doctest: +SKIP
    ...     report = analyze(path, client=client)
    """
    check_paths(x)
    return _analyze(x, estimators, per_tensor=per_tensor, nonfinite=nonfinite,
                    progress=progress, client=client, workers=workers, chunk=chunk)


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
