"""How many torch CPU threads a training run uses.

Its one job is the thread count: :func:`resolve_threads` turns the ``threads`` option of
``momos train``/``reproduce``/``sweep`` (and of :func:`momos.experiment.reproduce`) into a
number, and :func:`cpu_threads` applies it for one block and restores torch's setting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from kcomplex.validation import check_int

__all__ = ["SINGLE_THREAD_MODELS", "cpu_threads", "resolve_threads"]

#: Models that ``threads="auto"`` trains on one CPU thread: their steps are a few small
#: matrix products (the digits MLP: 3-4 ms), which torch's one-thread-per-core default
#: splits so finely that, on cores other processes also use, OpenMP's waiting threads
#: made a step 100-185 ms instead of 6-8 ms. Convolutions and attention do enough work
#: per operation to gain from more threads on a quiet machine.
SINGLE_THREAD_MODELS = frozenset({"mlp"})


def resolve_threads(threads: int | str | None, model: str, device: str) -> int | None:
    """The number of torch CPU threads a run should use, or None for torch's setting.

    Parameters
    ----------
    threads : int, "auto" or None
        A positive number of threads; ``"auto"``: 1 for a model of
        :data:`SINGLE_THREAD_MODELS` on the CPU, else torch's setting; None: torch's setting.
    model : str
        The run's model name.
    device : {"auto", "cpu", "cuda"}
        The run's device; ``"auto"`` is the CPU when no CUDA device is available.

    Returns
    -------
    int or None
        Threads to set with :func:`torch.set_num_threads`, or None to leave them.

    Raises
    ------
    TypeError
        ``threads`` is neither an integer, ``"auto"`` nor None.
    ValueError
        ``threads`` is below 1.

    Examples
    --------
    >>> resolve_threads("auto", "mlp", "cpu"), resolve_threads("auto", "resnet20", "cpu")
    (1, None)
    >>> resolve_threads(3, "resnet20", "cuda"), resolve_threads(None, "mlp", "cpu")
    (3, None)
    """
    if threads is None:
        return None
    if threads == "auto":
        if model not in SINGLE_THREAD_MODELS or device == "cuda":
            return None
        if device == "auto":
            import torch

            if torch.cuda.is_available():
                return None
        return 1
    if isinstance(threads, str):
        raise TypeError(f"threads must be a positive integer or 'auto', got {threads!r}")
    return check_int(threads, "threads", minimum=1)


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads, then restore the previous number.

    Parameters
    ----------
    threads : int or None
        Threads for :func:`torch.set_num_threads` (see :func:`resolve_threads`); None
        leaves torch's setting alone.

    Notes
    -----
    Training is deterministic for a given seed and number of threads; another number of
    threads may change the last digits of the results (sums are split differently).

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with cpu_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(check_int(threads, "threads", minimum=1))
    try:
        yield
    finally:
        torch.set_num_threads(before)
