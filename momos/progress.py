"""The plain progress lines of training, for logs where there are no progress bars.

Its one job is those lines: :func:`epoch_printer` prints one per finished epoch,
:func:`run_line` one per finished run of ``reproduce``/``sweep``, and
:func:`progress_mode` reads the ``progress`` option that chooses between bars, lines and
silence.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .results import RunResult

__all__ = ["epoch_printer", "progress_mode", "run_line"]


def progress_mode(progress: bool | str | None) -> tuple[bool, bool]:
    """Whether to show progress bars and whether to print progress lines.

    Parameters
    ----------
    progress : bool, "lines" or None
        True: bars; ``"lines"``: lines; False: neither; None: bars when stderr is a
        terminal, else lines.

    Returns
    -------
    (bool, bool)
        ``(bars, lines)``.

    Raises
    ------
    ValueError
        ``progress`` is none of these.

    Examples
    --------
    >>> progress_mode("lines"), progress_mode(False)
    ((False, True), (False, False))
    """
    if progress is not None and progress not in (True, False, "lines"):
        raise ValueError(f"progress must be True, False, 'lines' or None, got {progress!r}")
    if progress is None:
        progress = True if sys.stderr.isatty() else "lines"
    return progress is True, progress == "lines"


def epoch_printer(label: str, epochs: int, stream: TextIO | None = None
                  ) -> Callable[[dict[str, Any]], None]:
    """A ``callback`` for :func:`momos.train.train` that prints one line per finished epoch.

    The plain progress report for when there are no progress bars (output to a file or a
    pipe, ``--no-progress``): each line is flushed as the epoch ends, so a log shows
    progress while the run goes on.

    Parameters
    ----------
    label : str
        What the run is, at the start of every line (``"momos s=2 c=0.05"``).
    epochs : int
        The run's number of epochs.
    stream : file, optional
        Where the lines go; default ``sys.stderr`` at the time of each line.

    Returns
    -------
    callable
        Takes an epoch's record (``epoch``, ``train_loss``, ``val_acc``, ...) and prints
        ``"<label> epoch 3/30: train_loss 0.412, val_acc 0.951, 1.2 s"``, the time being
        the wall time since the previous line (training and measuring).

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> show = epoch_printer("baseline", 30, out)
    >>> show({"epoch": 3, "train_loss": 0.4121, "val_acc": 0.95111})
    >>> out.getvalue().split(":")[0]
    'baseline epoch 3/30'
    """
    last = [time.perf_counter()]

    def show(record: dict[str, Any]) -> None:
        now = time.perf_counter()
        seconds, last[0] = now - last[0], now
        print(f"{label} epoch {record['epoch']}/{epochs}: train_loss "
              f"{record['train_loss']:.4f}, val_acc {record['val_acc']:.3f}, {seconds:.1f} s",
              file=stream if stream is not None else sys.stderr, flush=True)

    return show


def run_line(head: str, res: RunResult, stream: TextIO | None = None) -> None:
    """Print ``"<head>, test_acc 0.951, 30 epochs"`` for a finished run, flushed.

    Parameters
    ----------
    head : str
        What happened to the run (``"run 1/4 baseline: done in 3.2 s"``).
    res : RunResult
        The finished run.
    stream : file, optional
        Where the line goes; default ``sys.stderr`` at the time of the call.
    """
    print(f"{head}, test_acc {res.summary.test_acc:.3f}, {res.final.epoch} epochs",
          file=stream if stream is not None else sys.stderr, flush=True)
