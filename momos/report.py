"""Figures and the Markdown report of an experiment (``momos reproduce`` / ``momos sweep``).

matplotlib is imported only when a figure is drawn (through :mod:`kcomplex.plot`, which
also writes figures atomically); text files are written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kcomplex.files import write_atomic
from kcomplex.plot import pyplot, save_figure

from .results import RunResult
from .tables import markdown_table

__all__ = ["plot_accuracy_vs_bits", "plot_complexity", "plot_motif_usage", "usage_share",
           "write_report", "write_seed_report"]


def usage_share(counts: Any, fraction: float = 0.5) -> float:
    """Share of blocks that use the least-used ``fraction`` of the motifs.

    The paper reports 10-13 % for the least-used half after training; uniform usage gives
    ``fraction``.

    Examples
    --------
    >>> usage_share([1, 1, 1, 1])
    0.5
    >>> usage_share([0, 1, 3, 6])
    0.1
    """
    counts = np.sort(np.asarray(counts, dtype=np.float64))
    if counts.size == 0 or counts.sum() == 0:
        return math.nan
    return float(counts[: int(fraction * counts.size)].sum() / counts.sum())


def _typed(runs: Mapping[str, RunResult | Mapping[str, Any]]) -> dict[str, RunResult]:
    """Run name -> :class:`~momos.results.RunResult`, from results objects or dicts."""
    return {name: RunResult.of(res) for name, res in runs.items()}


def plot_complexity(runs: Mapping[str, RunResult | Mapping[str, Any]],
                    path: str | os.PathLike | None = None):
    """Validation accuracy and every estimator's bits relative to epoch 0, over epochs.

    One panel per quantity, one line per run (a :class:`~momos.results.RunResult` or a
    results dict). Returns the matplotlib figure.
    """
    runs = _typed(runs)
    plt = pyplot()
    measured = {k for r in runs.values() for k in r.epochs[0].complexity}
    # The paper's order first, then any other estimator by name.
    order = [f"{e}_bits" for e in ("bdm", "gzip", "bz2", "lzma", "zstd")]
    estimators = [k for k in order if k in measured] + sorted(measured - set(order))
    panels = ["val_acc"] + estimators
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        for name, res in runs.items():
            ep = [e.epoch for e in res.epochs]
            if key == "val_acc":
                y = [e.val_acc for e in res.epochs]
            else:
                base = res.epochs[0].complexity.get(key)
                y = [e.complexity.get(key, math.nan) / base if base else math.nan
                     for e in res.epochs]
            ax.plot(ep, y, label=name, lw=1.4)
        ax.set_xlabel("epoch")
        ax.set_title("validation accuracy" if key == "val_acc"
                     else f"{key[:-5]} bits / bits at init", fontsize=10)
        if key != "val_acc":
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_motif_usage(runs: Mapping[str, RunResult | Mapping[str, Any]],
                     path: str | os.PathLike | None = None):
    """Motif usage of the MoMos runs after training.

    Left: histogram of how many blocks each used motif holds (log scales; the legend counts
    the unused ones). Right: the share of
    blocks covered by the least-used fraction of motifs (the diagonal is uniform usage).
    Returns the figure, or ``None`` when no run has motif counts.
    """
    momos_runs = {n: r.summary.motif_counts for n, r in _typed(runs).items()
                  if r.summary is not None and r.summary.motif_counts}
    if not momos_runs:
        return None
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, counts in momos_runs.items():
        counts = np.asarray(counts)
        top = max(int(counts.max()), 1)
        bins = np.unique(np.round(np.logspace(0, math.log10(top + 1), 40)).astype(int))
        unused = int((counts == 0).sum())
        left.hist(counts[counts > 0], bins=bins, histtype="step", lw=1.4,
                  label=f"{name} ({unused} motifs unused)")
        share = np.cumsum(np.sort(counts)) / counts.sum()
        right.plot(np.arange(1, counts.size + 1) / counts.size, share,
                   label=f"{name}: least-used half {usage_share(counts):.1%}")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("blocks per motif")
    left.set_ylabel("motifs")
    left.legend(fontsize=8)
    right.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    right.axvline(0.5, color="grey", lw=0.6, ls=":")
    right.set_xlabel("fraction of motifs (least used first)")
    right.set_ylabel("share of blocks")
    right.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_accuracy_vs_bits(table: pd.DataFrame, path: str | os.PathLike | None = None):
    """Test accuracy against description length: exact (filled), the paper's bound (open)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    markers = "osD^v<>ph*"
    for i, (name, row) in enumerate(table.iterrows()):
        # Distinct markers and sizes, drawn largest first: coinciding runs stay visible.
        color, marker = f"C{i % 10}", markers[i % len(markers)]
        size = 90 - 60 * i / max(len(table), 1)
        ax.scatter(row["exact_bits"], row["test_acc"], color=color, marker=marker, s=size,
                   alpha=0.75, label=name, zorder=3 + i)
        if row["bound_bits"] != row["exact_bits"]:
            ax.scatter(row["bound_bits"], row["test_acc"], facecolors="none", edgecolors=color,
                       marker=marker, s=size)
    trivial = table["trivial_bits"].max()
    ax.axvline(trivial, color="grey", lw=0.8, ls="--")
    ax.annotate("32 bits per weight", (trivial, ax.get_ylim()[1]), rotation=90, fontsize=7,
                color="grey", ha="right", va="top")
    ax.set_xscale("log")
    ax.set_xlabel("description length, bits (filled: exact code, open: paper's bound)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def _checks(table: pd.DataFrame, runs: dict[str, RunResult]) -> list[str]:
    """The paper's claims, read off this experiment, whatever they say."""
    lines = []
    momos_rows = table[table["method"].str.startswith("momos")]
    projected = [n for n in momos_rows.index
                 if runs[n].summary is not None and runs[n].summary.motif_counts]
    unprojected = [n for n in momos_rows.index if n not in projected]
    if unprojected:
        lines.append(f"- Not trained (epoch 0 only), so nothing to say about: "
                     f"{', '.join(f'`{n}`' for n in unprojected)}.")
    if "baseline" in table.index:
        base = table.loc["baseline", "test_acc"]
        for name in projected:
            gap = 100 * (base - table.loc[name, "test_acc"])
            side = "below" if gap >= 0 else "above"
            lines.append(f"- `{name}` test accuracy is {abs(gap):.1f} points {side} the baseline "
                         f"({'within' if gap <= 2 else 'not within'} the paper's 2 points).")
    if "bdm_ratio" in table.columns:
        for name in projected:
            ratio = table.loc[name, "bdm_ratio"]
            lines.append(f"- `{name}` BDM(trained)/BDM(init) = {ratio:.4f} "
                         f"({'below' if ratio < 1 else 'not below'} 1).")
        if "baseline" in table.index and projected:
            lines.append(f"- For comparison, the baseline's BDM(trained)/BDM(init) = "
                         f"{table.loc['baseline', 'bdm_ratio']:.4f}.")
    for name in projected:
        row = table.loc[name]
        rel = row["exact_bits"] / row["bound_bits"] - 1
        lines.append(f"- `{name}` exact code {row['exact_bits']:,.0f} bits is {abs(rel):.1%} "
                     f"{'below' if rel < 0 else 'above'} the paper's bound "
                     f"{row['bound_bits']:,.0f}; motif usage: the least-used half of the "
                     f"motifs covers {usage_share(runs[name].summary.motif_counts):.1%} "
                     "of the blocks (the paper: 10-13 %).")
    return lines


def write_report(outdir: str | os.PathLike, runs: Mapping[str, RunResult | Mapping[str, Any]],
                 table: pd.DataFrame, *, title: str, plots: bool = True) -> Path:
    """Write ``summary.csv``, ``report.md`` and (with ``plots``) the figures into ``outdir``.

    Returns
    -------
    pathlib.Path
        The report's path.
    """
    outdir = Path(outdir)
    runs = _typed(runs)
    write_atomic(outdir / "summary.csv", table.to_csv().encode("utf-8"))
    first = next(iter(runs.values())).config
    figures = []
    if plots:
        plot_complexity(runs, outdir / "complexity.png")
        figures.append(("Complexity over epochs, relative to the initialization",
                        "complexity.png"))
        if plot_motif_usage(runs, outdir / "motif_usage.png") is not None:
            figures.append(("Motif usage after training", "motif_usage.png"))
        plot_accuracy_vs_bits(table, outdir / "accuracy_vs_bits.png")
        figures.append(("Test accuracy vs description length", "accuracy_vs_bits.png"))
        import matplotlib.pyplot as plt

        plt.close("all")
    parts = [
        f"# {title}", "",
        f"Model `{first['model']}`, dataset `{first['dataset']}`, "
        f"{max(r.final.epoch for r in runs.values())} epochs, seed {first['seed']}, "
        f"batch {first['batch_size']}, {first['optimizer']} lr {first['lr']:g} "
        f"({first['schedule']}). Each run's `results.json` is in its own folder.", "",
        markdown_table(table), "",
        "Columns: *BDM tr/init* is BDM of the binarized weights (w > 0) after training over "
        "at initialization; *gzip/bz2/lzma init, tr* are compression rates (raw float32 "
        "bits / compressed bits); *exact bits* is the length of the run's `final.momos`, "
        "which decodes back bit-exactly (MoMos: bank and mosaic; others: each tensor's "
        "shortest exact code); *bound bits* "
        "is the paper's `k*s*q + m*ceil(log2 k)` (`n*q` without MoMos); "
        "RAC = 32 n / bits.", "",
        "## What this run says about the paper's claims", "",
        *_checks(table, runs), "",
    ]
    for caption, name in figures:
        parts += [f"## {caption}", "", f"![{caption}]({name})", ""]
    path = outdir / "report.md"
    write_atomic(path, "\n".join(parts).encode("utf-8"))
    return path


def _seed_checks(tables: dict[int, pd.DataFrame]) -> list[str]:
    """The paper's claims, counted over seeds."""
    n = len(tables)
    first = next(iter(tables.values()))
    lines = []
    if "baseline" in first.index and "bdm_ratio" in first.columns:
        below = sum(t.loc["baseline", "bdm_ratio"] < 1 for t in tables.values())
        lines.append(f"- For comparison, `baseline`: BDM(trained)/BDM(init) < 1 in {below}/{n} "
                     "seeds.")
    for name in first.index[first["method"].str.startswith("momos")]:
        if "baseline" in first.index:
            gaps = [100 * (t.loc["baseline", "test_acc"] - t.loc[name, "test_acc"])
                    for t in tables.values()]
            within = sum(g <= 2 for g in gaps)
            lines.append(f"- `{name}`: test accuracy within 2 points of the baseline in "
                         f"{within}/{n} seeds (gap {np.mean(gaps):+.1f} ± "
                         f"{np.std(gaps, ddof=1):.1f} points; positive = below the baseline).")
        if "bdm_ratio" in first.columns:
            below = sum(t.loc[name, "bdm_ratio"] < 1 for t in tables.values())
            lines.append(f"- `{name}`: BDM(trained)/BDM(init) < 1 in {below}/{n} seeds.")
        shorter = sum(t.loc[name, "exact_bits"] < t.loc[name, "bound_bits"]
                      for t in tables.values())
        lines.append(f"- `{name}`: exact code shorter than the paper's bound in {shorter}/{n} "
                     "seeds.")
    return lines


def write_seed_report(outdir: str | os.PathLike, tables: dict[int, pd.DataFrame],
                      table: pd.DataFrame, *, title: str) -> Path:
    """``summary.csv`` and ``report.md`` of a multi-seed experiment: mean ± standard
    deviation over seeds, the claims counted per seed, links to each seed's report."""
    outdir = Path(outdir)
    write_atomic(outdir / "summary.csv", table.to_csv().encode("utf-8"))
    parts = [f"# {title}", "", "Mean ± sample standard deviation over seeds.", "",
             markdown_table(table), "",
             "## What these runs say about the paper's claims", "", *_seed_checks(tables), "",
             "## Each seed", "",
             *(f"- [seed {s}](seed{s}/report.md)" for s in tables), ""]
    path = outdir / "report.md"
    write_atomic(path, "\n".join(parts).encode("utf-8"))
    return path
