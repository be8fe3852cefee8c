"""Accuracy against exact bits for every method: ``momos frontier``.

:func:`frontier` trains a grid of methods on one dataset (:data:`FRONTIER_RUNS`: the
baseline, post-training quantization, QAT, MoMos over block sizes and motif counts,
MoMos with a quantized or k-means-refined bank, MoMos + QAT), codes each run's final
weights exactly (the length of its ``final.momos``, which decodes to the weights the
network computes with), and puts them in one table: test accuracy, exact bits, bits per
weight, both relative to the baseline, and which runs are on the Pareto front (no other
run is at least as accurate with fewer bits). :func:`plot_frontier` draws accuracy
against exact bits, one marker per method family.

Every run is an ordinary :func:`momos.train` run in its own subdirectory (resumable).
Frontier runs measure no kcomplex estimator per epoch by default (the exact code is the
quantity compared; pass ``estimators`` to add them).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kcomplex.files import write_atomic

from .config import TrainConfig
from .experiment import QUICK_EPOCHS, aggregate, run_all
from .progress import progress_mode
from .results import RunResult
from .tables import markdown_table
from .threads import resolve_threads

__all__ = ["FAMILIES", "FRONTIER_RUNS", "frontier", "frontier_table", "pareto_front",
           "plot_frontier"]

#: The default grid: run name -> fields of :class:`~momos.config.TrainConfig`.
FRONTIER_RUNS: dict[str, dict[str, Any]] = {
    "baseline": {"method": "baseline"},
    "ptq-u8": {"method": "ptq", "q": 8},
    "ptq-u6": {"method": "ptq", "q": 6},
    "ptq-u4": {"method": "ptq", "q": 4},
    "ptq-k4": {"method": "ptq", "q": 4, "levels": "kmeans"},
    "ptq-k3": {"method": "ptq", "q": 3, "levels": "kmeans"},
    "ptq-k2": {"method": "ptq", "q": 2, "levels": "kmeans"},
    "qat-q8": {"method": "qat", "q": 8},
    "qat-q4": {"method": "qat", "q": 4},
    "qat-q3": {"method": "qat", "q": 3},
    "qat-q2": {"method": "qat", "q": 2},
    "momos-s2-c0.05": {"method": "momos", "s": 2, "capacity": 0.05},
    "momos-s4-c0.01": {"method": "momos", "s": 4, "capacity": 0.01},
    "momos-s2-k256": {"method": "momos", "s": 2, "k": 256},
    "momos-s2-k64": {"method": "momos", "s": 2, "k": 64},
    "momos-s4-k256": {"method": "momos", "s": 4, "k": 256},
    "momos-s2-c0.05-b8": {"method": "momos", "s": 2, "capacity": 0.05, "bank_q": 8},
    "momos-s2-k256-b8-km": {"method": "momos", "s": 2, "k": 256, "bank_q": 8,
                            "kmeans_iters": 5},
    "momos-s2-k1024-b8-km": {"method": "momos", "s": 2, "k": 1024, "bank_q": 8,
                             "kmeans_iters": 5},
    "momos-s2-c0.05-ft10": {"method": "momos", "s": 2, "capacity": 0.05, "finetune_epochs": 10},
    "momos-s2-k256-ft10": {"method": "momos", "s": 2, "k": 256, "finetune_epochs": 10},
    "momos-s2-c0.05-b8-ft10": {"method": "momos", "s": 2, "capacity": 0.05, "bank_q": 8,
                               "finetune_epochs": 10},
    "momos-s2-k1024-b8-km-ft10": {"method": "momos", "s": 2, "k": 1024, "bank_q": 8,
                                  "kmeans_iters": 5, "finetune_epochs": 10},
    "momos+qat-s2-c0.05-q8": {"method": "momos+qat", "s": 2, "capacity": 0.05, "q": 8},
    "momos+qat-s2-c0.05-q4": {"method": "momos+qat", "s": 2, "capacity": 0.05, "q": 4},
    "momos+qat-s2-k256-q4": {"method": "momos+qat", "s": 2, "k": 256, "q": 4},
}

#: Marker per method family in :func:`plot_frontier`.
FAMILIES = {"baseline": "*", "ptq": "v", "qat": "s", "momos": "o", "momos+qat": "D"}

_COLUMNS = ("method", "test_acc", "exact_bits", "bits_per_weight", "acc_vs_baseline",
            "bits_vs_baseline", "on_front")


def pareto_front(bits: Sequence[float], acc: Sequence[float]) -> np.ndarray:
    """Which points no other point dominates (fewer or equal bits and higher or equal
    accuracy, one of them strictly).

    Parameters
    ----------
    bits, acc : sequence of float
        The cost and the quality of each point; NaN accuracy is never on the front.

    Returns
    -------
    numpy.ndarray of bool

    Examples
    --------
    >>> pareto_front([1, 2, 3, 4], [0.5, 0.7, 0.6, 0.9]).tolist()
    [True, True, False, True]
    """
    b, a = np.asarray(bits, dtype=np.float64), np.asarray(acc, dtype=np.float64)
    if b.shape != a.shape or b.ndim != 1:
        raise ValueError(f"bits and acc must be 1-D of one length, got {b.shape} and {a.shape}")
    front = ~np.isnan(a) & ~np.isnan(b)
    for i in np.flatnonzero(front):
        better = (b <= b[i]) & (a >= a[i]) & ((b < b[i]) | (a > a[i]))
        front[i] = not better.any()
    return front


def frontier_table(runs: Mapping[str, RunResult | Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: method, test accuracy, exact bits, bits per weight, accuracy in
    points and bits as a ratio relative to the ``baseline`` run (NaN without one), and
    ``on_front`` (:func:`pareto_front` over all runs).

    Parameters
    ----------
    runs : dict
        Run name -> finished :class:`~momos.results.RunResult` (or its dict).

    Returns
    -------
    pandas.DataFrame
        Indexed by run name, in the order given.

    Raises
    ------
    ValueError
        If a run has not finished.
    """
    rows = []
    for name, value in runs.items():
        res = RunResult.of(value)
        if res.summary is None:
            raise ValueError(f"run {name!r} has not finished: resume it first")
        bits = res.summary.description_length["total_bits"]
        rows.append({"run": name, "method": res.config["method"],
                     "test_acc": res.summary.test_acc, "exact_bits": float(bits),
                     "bits_per_weight": bits / res.model.n_params})
    table = pd.DataFrame(rows).set_index("run")
    base = table.loc["baseline"] if "baseline" in table.index else None
    table["acc_vs_baseline"] = (_points(table["test_acc"] - base["test_acc"])
                                if base is not None else np.nan)
    table["bits_vs_baseline"] = (table["exact_bits"] / base["exact_bits"]
                                 if base is not None else np.nan)
    table["on_front"] = pareto_front(table["exact_bits"], table["test_acc"])
    return table[list(_COLUMNS)]


def _seed_table(tables: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Mean and std over seeds; the front and the relative columns from the means."""
    table = aggregate({seed: t.drop(columns=["on_front"]) for seed, t in tables.items()})
    if "baseline" in table.index:
        base = table.loc["baseline"]
        table["acc_vs_baseline"] = _points(table["test_acc"] - base["test_acc"])
        table["bits_vs_baseline"] = table["exact_bits"] / base["exact_bits"]
    table["on_front"] = pareto_front(table["exact_bits"], table["test_acc"])
    return table


def _points(diff: pd.Series) -> pd.Series:
    """Accuracy differences in points, the float noise of averaging rounded off (so
    that equal accuracies read +0.00, not -0.00)."""
    return (100 * diff).round(9) + 0.0


def best_within(table: pd.DataFrame, points: float = 1.0) -> str | None:
    """The run with the fewest exact bits among those within `points` accuracy points of
    the baseline (None without a baseline or such a run).

    Examples
    --------
    >>> t = pd.DataFrame({"test_acc": [0.9, 0.895, 0.85], "exact_bits": [100., 30., 10.]},
    ...                  index=["baseline", "a", "b"])
    >>> best_within(t)
    'a'
    """
    if "baseline" not in table.index:
        return None
    near = table[table["test_acc"] >= table.loc["baseline", "test_acc"] - points / 100]
    return None if near.empty else str(near["exact_bits"].idxmin())


def plot_frontier(table: pd.DataFrame, path: str | os.PathLike | None = None):
    """Test accuracy against exact bits (log x axis), one marker per method family, the
    Pareto front ringed, error bars over seeds where the table has ``_std`` columns.

    Two panels: every run, and the runs within 5 accuracy points of the baseline (when
    the table has a ``baseline`` row), where the comparison that matters is.
    Returns the matplotlib figure (saved atomically to `path` if given).
    """
    from kcomplex.plot import pyplot, save_figure

    plt = pyplot()
    panels = [("every run", table)]
    if "baseline" in table.index:
        floor = table.loc["baseline", "test_acc"] - 0.05
        panels.append(("within 5 points of the baseline", table[table["test_acc"] >= floor]))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.8), squeeze=False)
    for ax, (title, part) in zip(axes[0], panels):
        _draw(ax, part, annotate=len(panels) == 1 or title != "every run")
        ax.set_title(title)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def _draw(ax, table: pd.DataFrame, annotate: bool) -> None:
    for family, marker in FAMILIES.items():
        part = table[table["method"] == family]
        if part.empty:
            continue
        ax.errorbar(part["exact_bits"], part["test_acc"],
                    xerr=part.get("exact_bits_std"), yerr=part.get("test_acc_std"),
                    fmt=marker, ms=7, capsize=2, label=family)
        if annotate:
            for name, row in part.iterrows():
                ax.annotate(name, (row["exact_bits"], row["test_acc"]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
    front = table[table["on_front"]]
    ax.scatter(front["exact_bits"], front["test_acc"], s=220, facecolors="none",
               edgecolors="black", linewidths=1.2, label="Pareto front", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("exact description length (bits, log scale)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)


def frontier(
    out: str | Path | None = "momos-frontier",
    *,
    dataset: str = "digits",
    model: str = "mlp",
    runs: Mapping[str, Mapping[str, Any]] | Sequence[str] | None = None,
    seed: int | Sequence[int] = 0,
    epochs: int | None = None,
    quick: bool = False,
    data_dir: str | None = None,
    device: str = "auto",
    estimators: Sequence[str] = (),
    resume: bool = False,
    plots: bool = True,
    progress: bool | str | None = None,
    threads: int | str | None = "auto",
) -> pd.DataFrame:
    """Train a grid of methods and compare their accuracy with their exact bits.

    Parameters
    ----------
    out : str or Path, optional
        Output directory: one subdirectory per run (``seed<N>/<run>`` for several seeds),
        ``frontier.csv``, ``report.md`` and, with ``plots``, ``frontier.png``. None writes
        nothing.
    dataset, model, data_dir, device : str
        As in :class:`~momos.config.TrainConfig`.
    runs : dict or sequence of str, optional
        The grid: run name -> TrainConfig fields, or names of :data:`FRONTIER_RUNS`.
        Default: all of :data:`FRONTIER_RUNS`. Relative columns need a ``baseline`` run.
    seed : int or sequence of int
        Seeds; several give mean and standard deviation per run (:func:`aggregate`), the
        front drawn from the means.
    epochs : int, optional
        Training epochs per run; default 30, or 3 with ``quick``.
    estimators : sequence of str
        kcomplex estimators measured every epoch; none by default.
    resume, plots, progress, threads
        As in :func:`momos.reproduce`.

    Returns
    -------
    pandas.DataFrame
        :func:`frontier_table` (one seed) or its mean and std over seeds, with
        ``on_front``.

    Raises
    ------
    ValueError
        An unknown run name, repeated or no seeds, a bad ``progress`` or ``threads``.

    Examples
    --------
    >>> t = frontier(None, runs=["baseline", "ptq-u4"], epochs=1, plots=False,
    ...              progress=False)
    >>> list(t.columns)[:3], bool(t.loc["ptq-u4", "exact_bits"] < t.loc["baseline", "exact_bits"])
    (['method', 'test_acc', 'exact_bits'], True)
    """
    grid = _grid(runs)
    seeds = [seed] if isinstance(seed, int) else list(seed)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    progress_mode(progress)
    resolve_threads(threads, model, device)
    if epochs is None:
        epochs = QUICK_EPOCHS if quick else 30
    outdir = Path(out) if out is not None else None
    tables = {}
    for one in seeds:
        base = TrainConfig(model=model, dataset=dataset, epochs=epochs, seed=one,
                           data_dir=data_dir, device=device, estimators=tuple(estimators))
        # A grid run sized by k drops the default capacity (TrainConfig takes one of them).
        configs = {name: dataclasses.replace(base, **({"capacity": None} if "k" in fields
                                                      else {}), **fields)
                   for name, fields in grid.items()}
        where = outdir if outdir is None or len(seeds) == 1 else outdir / f"seed{one}"
        tables[one] = frontier_table(run_all(configs, where, resume, progress, threads))
    table = tables[seeds[0]] if len(seeds) == 1 else _seed_table(tables)
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)
        write_atomic(outdir / "frontier.csv", table.to_csv().encode())
        title = (f"momos frontier: {model} on {dataset}, {epochs} epochs, "
                 f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
        write_atomic(outdir / "report.md", _report(table, title, plots).encode())
        if plots:
            plot_frontier(table, outdir / "frontier.png")
    return table


def _grid(runs) -> dict[str, Mapping[str, Any]]:
    if runs is None:
        return dict(FRONTIER_RUNS)
    if isinstance(runs, Mapping):
        if not runs:
            raise ValueError("the frontier grid is empty: give at least one run")
        return dict(runs)
    names = list(runs)
    unknown = [n for n in names if n not in FRONTIER_RUNS]
    if unknown or not names:
        raise ValueError(f"unknown frontier runs {unknown}; valid: {', '.join(FRONTIER_RUNS)}"
                         if unknown else "the frontier grid is empty: give at least one run")
    return {n: FRONTIER_RUNS[n] for n in names}


def _report(table: pd.DataFrame, title: str, plots: bool) -> str:
    lines = [f"# {title}", "",
             "Exact bits: the length of each run's `final.momos`, which decodes bit for bit "
             "to the weights the network computes with. `on_front`: no other run is at "
             "least as accurate with fewer bits.", "", markdown_table(table), ""]
    pick = best_within(table)
    if pick is not None:
        row = table.loc[pick]
        lines.append(f"Fewest bits within 1 point of the baseline's accuracy: **{pick}**, "
                     f"{row['exact_bits']:,.0f} bits ({row['bits_per_weight']:.3f} bits per "
                     f"weight, {row['bits_vs_baseline']:.3f} x the baseline), accuracy "
                     f"{row['acc_vs_baseline']:+.2f} points.")
        lines.append("")
    if plots:
        lines += ["![accuracy against exact bits](frontier.png)", ""]
    return "\n".join(lines)
