"""Figures of reports: bits per parameter per tensor and estimator; init vs trained; a
distance matrix as a heatmap.

matplotlib is imported when a figure is drawn, never at ``import kcomplex``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .files import write_atomic

if TYPE_CHECKING:
    import pandas as pd

    from .analysis import Comparison, Report

__all__ = ["plot_report", "plot_comparison", "plot_distance_matrix"]

# Matrices up to this many items get their values written in the cells.
_ANNOTATE_ITEMS = 12


def pyplot():
    """``matplotlib.pyplot``, imported on first use, on the Agg backend when there is no display.

    Returns
    -------
    module
        ``matplotlib.pyplot``.

    Raises
    ------
    ImportError
        When matplotlib is not installed; the message names the extra to install.
    """
    try:
        import matplotlib

        if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plots need matplotlib: pip install 'kcomplex[plot]'"
        ) from None
    return plt


def save_figure(fig: Any, path: str | os.PathLike | None) -> Any:
    """Save ``fig`` to ``path`` atomically (format from the suffix, PNG without one).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to save.
    path : path or None
        Where to write it; ``None`` saves nothing.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig``, so that plotting functions can end with ``return save_figure(fig, path)``.
    """
    if path is not None:
        buf = io.BytesIO()
        fig.savefig(buf, dpi=120, bbox_inches="tight", format=Path(path).suffix[1:] or "png")
        write_atomic(path, buf.getvalue())
    return fig


def _bars(ax, labels: list[str], series: dict[str, np.ndarray], ylabel: str) -> None:
    width = 0.8 / max(1, len(series))
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.axhline(32, color="grey", lw=0.8, ls="--")
    ax.annotate("raw float32", (x[-1] + 0.4, 32), fontsize=7, color="grey", va="bottom",
                ha="right")
    ax.legend(fontsize=8)


def plot_report(report: Report, path: str | os.PathLike | None = None, ax: Any = None):
    """Bar chart of bits per parameter, one group per tensor, one bar per estimator.

    Parameters
    ----------
    report : Report
        From :func:`kcomplex.analyze`.
    path : path, optional
        Save the figure there (atomically; format from the suffix).
    ax : matplotlib Axes, optional
        Draw into it instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(report.table) + 3), 4))
    else:
        fig = ax.figure
    table = report.table
    series = {e: table[f"{e}_bpp"].to_numpy(float) for e in report.estimators}
    _bars(ax, list(table["tensor"]), series, "bits per parameter")
    ax.set_title("Complexity per tensor")
    return save_figure(fig, path)


def plot_comparison(cmp: Comparison, path: str | os.PathLike | None = None, ax: Any = None):
    """Bits of the two weight sets side by side per estimator, for the whole vector, and
    the ratio b/a per tensor.

    Parameters
    ----------
    cmp : Comparison
        From :func:`kcomplex.compare`.
    path : path, optional
        Save the figure there.
    ax : sequence of two matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    else:
        fig = ax[0].figure
    table = cmp.table
    total = table[table["tensor"] == "(all)"]
    x = np.arange(len(total))
    ax[0].bar(x - 0.2, total["bits_a"], 0.4, label="a (init)")
    ax[0].bar(x + 0.2, total["bits_b"], 0.4, label="b (trained)")
    ax[0].set_xticks(x, list(total["estimator"]))
    ax[0].set_ylabel("bits, whole weight vector")
    if not cmp.not_compared.empty:
        ax[0].set_title(f"(all): the {cmp.meta['n_compared']} of {len(cmp.tensors)} tensors "
                        "with the same name and shape", fontsize=9)
    ax[0].legend(fontsize=8)
    per = table[table["tensor"] != "(all)"]
    tensors = list(dict.fromkeys(per["tensor"]))
    series = {
        e: per[per["estimator"] == e].set_index("tensor").loc[tensors, "ratio"].to_numpy(float)
        for e in dict.fromkeys(per["estimator"])
    }
    width = 0.8 / max(1, len(series))
    xs = np.arange(len(tensors))
    for i, (name, values) in enumerate(series.items()):
        ax[1].bar(xs + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax[1].axhline(1, color="grey", lw=0.8, ls="--")
    ax[1].set_xticks(xs, tensors, rotation=45, ha="right", fontsize=8)
    ax[1].set_ylabel("ratio b / a")
    ax[1].legend(fontsize=8)
    fig.suptitle("Init vs trained")
    return save_figure(fig, path)


def plot_distance_matrix(
    df: pd.DataFrame, path: str | os.PathLike | None = None, ax: Any = None
):
    """Heatmap of a distance matrix, values written in the cells up to 12 items.

    Parameters
    ----------
    df : pandas.DataFrame
        Square, as :func:`kcomplex.distance.distance_matrix` returns: rows and columns
        named alike; its ``attrs["estimator"]``, when present, titles the figure.
    path : path, optional
        Save the figure there (atomically; format from the suffix).
    ax : matplotlib Axes, optional
        Draw into it instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If `df` is not square.

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame([[0.01, 0.9], [0.9, 0.02]], index=["a", "b"], columns=["a", "b"])
    >>> len(plot_distance_matrix(d).axes[0].texts)
    4
    """
    if df.shape[0] != df.shape[1]:
        raise ValueError(f"a distance matrix is square; got {df.shape[0]}x{df.shape[1]}")
    plt = pyplot()
    n = len(df)
    if ax is None:
        side = max(4.0, 0.5 * n + 2)
        fig, ax = plt.subplots(figsize=(side + 1, side))
    else:
        fig = ax.figure
    values = df.to_numpy(float)
    # NCD lives in [0, 1] up to a codec's slack: a fixed scale keeps figures comparable.
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=max(1.0, float(np.nanmax(values))))
    fig.colorbar(image, ax=ax, label="NCD")
    ticks = np.arange(n)
    ax.set_xticks(ticks, [str(c) for c in df.columns], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, [str(i) for i in df.index], fontsize=8)
    if n <= _ANNOTATE_ITEMS:
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.5 else "black")
    estimator = df.attrs.get("estimator")
    ax.set_title(f"Normalized compression distance ({estimator})" if estimator
                 else "Normalized compression distance")
    return save_figure(fig, path)
