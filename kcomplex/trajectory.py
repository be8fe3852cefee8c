"""How a model's complexity moves over training: every estimator per checkpoint.

:func:`trajectory` measures the whole weight vector of each checkpoint of a run (with
:func:`kcomplex.analyze`) and returns one row per checkpoint, in training order: the order
of the epoch or step number found in the file names, else the order given.
:func:`plot_trajectory` draws every estimator relative to the first checkpoint.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .analysis import analyze
from .io import INDEX_SUFFIX, read_index

__all__ = ["CHECKPOINT_SUFFIXES", "checkpoint_order", "plot_trajectory", "trajectory"]

#: The files :func:`trajectory` picks up in a directory (a sharded checkpoint by its
#: ``*.index.json``, the Hugging Face name; other ``.json`` files are not checkpoints).
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".npz", ".npy", ".index.json")

# "epoch12", "epoch_12", "step-300", "ckpt-5", "checkpoint_40": the number after the word.
_NAMED = re.compile(r"(?:epoch|step|iter|ckpt|checkpoint)[-_ ]?(\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"(\d+)")


def _number(path: Path) -> int | None:
    """The training position in a file name: after epoch/step/..., else its last number."""
    name = path.name.removesuffix(".index.json") if path.name.endswith(INDEX_SUFFIX) else path.stem
    found = _NAMED.findall(name) or _NUMBER.findall(name)
    return int(found[-1]) if found else None


def checkpoint_order(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The checkpoints in training order.

    Sorted by the number after ``epoch``, ``step``, ``iter``, ``ckpt`` or ``checkpoint`` in
    each file name (else its last number) when every name has one, and these numbers are
    distinct; otherwise in the order given.

    Examples
    --------
    >>> [p.name for p in checkpoint_order(["epoch10.pt", "epoch2.pt", "epoch0.pt"])]
    ['epoch0.pt', 'epoch2.pt', 'epoch10.pt']
    >>> [p.name for p in checkpoint_order(["init.pt", "final.pt"])]  # no numbers: as given
    ['init.pt', 'final.pt']
    """
    items = [Path(p) for p in paths]
    numbers = [_number(p) for p in items]
    if None in numbers or len(set(numbers)) != len(numbers):
        return items
    return [p for _, p in sorted(zip(numbers, items), key=lambda pair: pair[0])]


def _checkpoints(paths: Any) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    items = [Path(p) for p in paths]
    if len(items) == 1 and items[0].is_dir():
        folder = items[0]
        found = [p for p in sorted(folder.iterdir())
                 if p.is_file() and p.name.endswith(CHECKPOINT_SUFFIXES)]
        # A sharded checkpoint is measured through its index, not shard by shard.
        shards = {shard.resolve() for p in found if p.name.endswith(".index.json")
                  for shard in read_index(p)}
        items = [p for p in found if p.resolve() not in shards]
        if not items:
            raise ValueError(f"{folder} holds no checkpoint file (suffixes: "
                             f"{', '.join(CHECKPOINT_SUFFIXES)})")
    if not items:
        raise ValueError("no checkpoints given: pass files or one directory")
    return checkpoint_order(items)


def trajectory(
    paths: Any,
    estimators: str | Sequence[str] = "default",
    *,
    trainable_only: bool = True,
    progress: bool | None = None,
    workers: int | None = None,
) -> pd.DataFrame:
    """Every estimator's bits of each checkpoint's whole weight vector, in training order.

    Parameters
    ----------
    paths : path, sequence of paths, or a directory
        Checkpoint files (anything :func:`kcomplex.analyze` reads), or one directory:
        its files with a suffix of :data:`CHECKPOINT_SUFFIXES` (shards of a sharded
        checkpoint are measured through its index). Ordered by
        :func:`checkpoint_order`.
    estimators : str or sequence of str
        As for :func:`kcomplex.analyze`.
    trainable_only, progress, workers
        As for :func:`kcomplex.analyze`.

    Returns
    -------
    pandas.DataFrame
        Indexed by checkpoint file name: ``step`` (the number found in the name, or the
        position), ``numel``, and per estimator ``<name>_bits`` and ``<name>_rel`` (bits
        over the first checkpoint's).

    Raises
    ------
    ValueError
        No checkpoint, an empty directory, or what :func:`kcomplex.analyze` raises (naming
        the file).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> w = np.random.default_rng(0).normal(size=4096).astype(np.float32)
    >>> for epoch, x in ((0, w), (1, np.round(w, 1))):
    ...     np.save(os.path.join(d, f"epoch{epoch}.npy"), x)
    >>> t = trajectory(d, ["zstd"], progress=False)
    >>> list(t.index), bool(t.loc["epoch1.npy", "zstd_rel"] < 1)
    (['epoch0.npy', 'epoch1.npy'], True)
    """
    files = _checkpoints(paths)
    rows = []
    for position, path in enumerate(files):
        total = analyze(path, estimators, per_tensor=False, trainable_only=trainable_only,
                        progress=progress, workers=workers).total
        number = _number(path)
        row = {"checkpoint": path.name, "step": number if number is not None else position,
               "numel": int(total["numel"])}
        row.update({key: float(total[key]) for key in total.index if key.endswith("_bits")
                    and key != "raw_bits"})
        rows.append(row)
    table = pd.DataFrame(rows).set_index("checkpoint")
    for key in [k for k in table.columns if k.endswith("_bits")]:
        first = table[key].iloc[0]
        table[key.removesuffix("_bits") + "_rel"] = table[key] / first if first else float("nan")
    return table


def plot_trajectory(table: pd.DataFrame, path: str | os.PathLike | None = None):
    """Every estimator's bits relative to the first checkpoint, against ``step``.

    Returns the matplotlib figure (saved atomically to `path` if given).
    """
    from .plot import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key in [k for k in table.columns if k.endswith("_rel")]:
        ax.plot(table["step"], table[key], marker="o", label=key.removesuffix("_rel"))
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.set_xlabel("step (from the file names)")
    ax.set_ylabel("bits / first checkpoint's")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
