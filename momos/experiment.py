"""The paper's experiments as commands: ``reproduce`` (four runs, one table) and ``sweep``.

:func:`reproduce` trains the MLP four ways on one dataset (the embedded digits by default):
the baseline, QAT at 8 bits, MoMos s=2 c=0.05 and MoMos s=4 c=0.01, and compares their
test accuracy, complexity trained vs initialization, and exact description length against
the paper's bound and the trivial 32 bits per weight. :func:`sweep` trains MoMos over an
``s x c`` grid. Both write every run into its own subdirectory (resumable), a summary table
as CSV and Markdown, and plots (:mod:`momos.report`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from .config import TrainConfig
from .progress import epoch_printer, progress_mode, run_line
from .results import RunResult

# Re-exported: the tables and thread helpers are part of this module's documented API
# (docs/tutorial-reproduce.md, the ``threads`` parameter below).
from .tables import format_table, markdown_table
from .threads import cpu_threads, resolve_threads
from .train import train

__all__ = ["PAPER_CAPACITIES", "PAPER_S", "REPRODUCE_RUNS", "aggregate", "cpu_threads",
           "epoch_printer", "format_table", "markdown_table", "reproduce", "resolve_threads",
           "run_all", "summarize", "sweep"]

#: The four runs of :func:`reproduce`: name -> fields of :class:`~momos.train.TrainConfig`.
REPRODUCE_RUNS: dict[str, dict[str, Any]] = {
    "baseline": {"method": "baseline"},
    "qat-q8": {"method": "qat", "q": 8},
    "momos-s2-c0.05": {"method": "momos", "s": 2, "capacity": 0.05},
    "momos-s4-c0.01": {"method": "momos", "s": 4, "capacity": 0.01},
}

#: The paper's sweep grid.
PAPER_S = (2, 4, 8, 16, 32, 64, 128)
PAPER_CAPACITIES = (0.01, 0.05, 0.1, 0.2, 0.3)

#: Epochs of ``quick=True``: enough to exercise every step, not to learn much.
QUICK_EPOCHS = 3


def summarize(runs: Mapping[str, RunResult | Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: accuracy, complexity trained vs init, description lengths.

    Parameters
    ----------
    runs : dict
        Run name -> result: a :class:`~momos.results.RunResult`, as
        :func:`momos.train.train` and :func:`momos.train.load_results` return, or the
        content of a ``results.json`` (``RunResult.to_dict()``).

    Returns
    -------
    pandas.DataFrame
        Indexed by run name. Columns: ``method``, ``s``, ``capacity``, ``k``, ``q``,
        ``test_acc``, ``best_test_acc``, ``bdm_ratio`` (BDM trained / BDM init) and one
        ``<estimator>_ratio`` per measured estimator, ``<compressor>_rate_init`` and
        ``_rate_trained`` (raw float32 bits / compressed bits), ``exact_bits``,
        ``bound_bits``, ``trivial_bits``, ``rac_exact``, ``rac_bound``. A ratio is missing
        (NaN) where the run did not measure that estimator.
    """
    rows = []
    for name, value in runs.items():
        res = RunResult.of(value)
        cfg, summary = res.config, res.summary
        first, last = res.epochs[0], res.final
        momos = cfg["method"].startswith("momos")
        row = {
            "run": name, "method": cfg["method"],
            "s": cfg["s"] if momos else None,
            "capacity": (cfg["capacity"] if momos else None),
            "k": res.model.k,
            "q": cfg["q"] if cfg["method"].endswith("qat") else 32,
            "epochs": last.epoch,
            "test_acc": summary.test_acc, "best_test_acc": summary.best_test_acc,
        }
        dl = summary.description_length
        trivial = dl["trivial_bits"]
        for key, ratio in summary.complexity_ratio.items():
            row[f"{key}_ratio"] = ratio
        for key in ("gzip", "bz2", "lzma", "zstd"):
            if f"{key}_bits" in first.complexity:
                row[f"{key}_rate_init"] = trivial / first.complexity[f"{key}_bits"]
                row[f"{key}_rate_trained"] = trivial / last.complexity[f"{key}_bits"]
        row.update(exact_bits=dl["total_bits"], bound_bits=dl["bound_bits"],
                   trivial_bits=trivial, rac_exact=dl["rac_exact"], rac_bound=dl["rac_bound"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def run_all(configs: dict[str, TrainConfig], out: Path | None, resume: bool,
             progress: bool | str | None, threads: int | str | None
             ) -> dict[str, RunResult]:
    """Train every config (skipping finished runs when resuming); results by name.

    Each run goes to ``out/<name>`` (nothing is written when ``out`` is None), with
    ``threads`` torch CPU threads (:func:`resolve_threads`).

    ``progress``: True bars, False nothing, ``"lines"`` one line per epoch and per run on
    stderr, None bars when stderr is a terminal and lines otherwise.
    """
    bars, lines = progress_mode(progress)
    results = {}
    for i, (name, cfg) in enumerate(tqdm(configs.items(), desc="runs", disable=not bars,
                                         leave=False), 1):
        label = f"run {i}/{len(configs)} {name}"
        rundir = out / name if out is not None else None
        if resume and rundir is not None and (rundir / "results.json").exists():
            stored = RunResult.load(rundir)
            if stored.status == "finished" and stored.config == cfg.resolved():
                results[name] = stored
                if lines:
                    run_line(f"{label}: finished earlier, kept", stored)
                continue
        t0 = time.perf_counter()
        callback = epoch_printer(label, cfg.total_epochs) if lines else None
        with cpu_threads(resolve_threads(threads, cfg.model, cfg.device)):
            results[name] = train(cfg, rundir, resume=resume, progress=bars,
                                  callback=callback)
        if lines:
            run_line(f"{label}: done in {time.perf_counter() - t0:.1f} s", results[name])
    return results


def reproduce(
    dataset: str = "digits",
    out: str | Path | None = "momos-reproduce",
    *,
    model: str = "mlp",
    epochs: int | None = None,
    quick: bool = False,
    seed: int | Sequence[int] = 0,
    data_dir: str | None = None,
    device: str = "auto",
    estimators: Sequence[str] = TrainConfig.estimators,
    resume: bool = False,
    plots: bool = True,
    progress: bool | str | None = None,
    threads: int | str | None = None,
) -> pd.DataFrame:
    """Train the four runs of :data:`REPRODUCE_RUNS` and compare them in one table.

    Parameters
    ----------
    dataset, model : str
        Dataset and model names (``momos.DATASETS``, ``momos.MODELS``).
    out : str or Path, optional
        Output directory: one subdirectory per run, ``summary.csv``, ``report.md`` and,
        with ``plots``, ``complexity.png``, ``motif_usage.png``, ``accuracy_vs_bits.png``.
        ``None`` writes nothing.
    epochs : int, optional
        Training epochs per run; default 30, or 3 with ``quick``.
    quick : bool
        A fast smoke run (3 epochs) that exercises every step.
    seed : int or sequence of int
        Seed of every run. Several seeds: the four runs per seed go to ``out/seed<N>/``
        (each with its own report) and ``out`` gets the :func:`aggregate` table (mean and
        standard deviation over seeds) in ``summary.csv`` and ``report.md``.
    data_dir, device : str
        As in :class:`~momos.train.TrainConfig`.
    estimators : sequence of str
        kcomplex estimators measured every epoch (default: the paper's bdm, gzip, bz2, lzma).
    resume : bool
        Keep finished runs found in ``out`` and resume unfinished ones.
    plots : bool
        Draw the figures (needs matplotlib).
    progress : bool or "lines", optional
        True: progress bars; ``"lines"``: one plain line per finished epoch and per
        finished run on stderr, flushed (for logs); False: nothing. Default: bars when
        stderr is a terminal, else lines.
    threads : int or "auto", optional
        torch CPU threads while training (:func:`resolve_threads`; ``momos reproduce``
        passes ``"auto"``); restored afterwards. Default: torch's current setting.

    Returns
    -------
    pandas.DataFrame
        :func:`summarize` of the four runs; for several seeds, their :func:`aggregate`.

    Raises
    ------
    ValueError
        Repeated or no seeds, a bad ``progress`` or ``threads``.

    Examples
    --------
    Epoch 0 only measures the initialization (a real run trains 30 epochs):

    >>> table = reproduce(out=None, epochs=0, plots=False, progress=False)
    >>> list(table.index)
    ['baseline', 'qat-q8', 'momos-s2-c0.05', 'momos-s4-c0.01']
    >>> float(table.loc["baseline", "bdm_ratio"])
    1.0
    """
    if epochs is None:
        epochs = QUICK_EPOCHS if quick else 30
    seeds = [seed] if isinstance(seed, int) else list(seed)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    progress_mode(progress)  # bad values fail before any run starts
    resolve_threads(threads, model, device)
    outdir = _prepare(out)
    title = f"momos reproduce: {model} on {dataset}"
    tables = {}
    for one in seeds:
        base = TrainConfig(model=model, dataset=dataset, epochs=epochs, seed=one,
                           data_dir=data_dir, device=device, estimators=tuple(estimators))
        configs = {name: dataclasses.replace(base, **fields)
                   for name, fields in REPRODUCE_RUNS.items()}
        where = outdir if outdir is None or len(seeds) == 1 else outdir / f"seed{one}"
        results = run_all(configs, where, resume, progress, threads)
        tables[one] = summarize(results)
        if where is not None:
            from .report import write_report

            where.mkdir(parents=True, exist_ok=True)
            write_report(where, results, tables[one], title=title, plots=plots)
    if len(seeds) == 1:
        return tables[seeds[0]]
    table = aggregate(tables)
    if outdir is not None:
        from .report import write_seed_report

        write_seed_report(outdir, tables, table, title=f"{title}, seeds {seeds}")
    return table


def aggregate(tables: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds of every numeric column.

    Parameters
    ----------
    tables : dict
        Seed -> :func:`summarize` table, all with the same runs.

    Returns
    -------
    pandas.DataFrame
        The runs as rows; each numeric column holds the mean over seeds and gets a
        ``<column>_std`` companion (``ddof=1``; NaN for one seed); ``n_seeds``; the
        non-numeric columns (``method``) of the first table.

    Examples
    --------
    >>> a = pd.DataFrame({"method": ["m"], "test_acc": [0.9]}, index=["r"])
    >>> b = pd.DataFrame({"method": ["m"], "test_acc": [0.8]}, index=["r"])
    >>> t = aggregate({0: a, 1: b})
    >>> round(float(t.loc["r", "test_acc"]), 3), round(float(t.loc["r", "test_acc_std"]), 4)
    (0.85, 0.0707)
    """
    frames = list(tables.values())
    first = frames[0]
    stacked = pd.concat(frames, keys=list(tables))
    numeric = [c for c in first.columns if pd.api.types.is_numeric_dtype(first[c])
               and not first[c].isna().all()]
    grouped = stacked[numeric].astype(float).groupby(level=1, sort=False)
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = first.drop(columns=numeric).join(mean)
    for c in numeric:
        out[f"{c}_std"] = std[c]
    out["n_seeds"] = len(frames)
    return out.loc[first.index]


def sweep(
    s_values: Iterable[int] = PAPER_S,
    capacities: Iterable[float] = PAPER_CAPACITIES,
    out: str | Path | None = "momos-sweep",
    *,
    dataset: str = "digits",
    model: str = "mlp",
    method: str = "momos",
    epochs: int | None = None,
    quick: bool = False,
    seed: int = 0,
    data_dir: str | None = None,
    device: str = "auto",
    estimators: Sequence[str] = TrainConfig.estimators,
    baseline: bool = True,
    resume: bool = False,
    plots: bool = True,
    progress: bool | str | None = None,
    threads: int | str | None = None,
) -> pd.DataFrame:
    """Train MoMos over an ``s x capacity`` grid (the paper's by default), plus a baseline.

    Parameters
    ----------
    s_values, capacities : iterable
        Block sizes and capacities of the grid.
    method : {"momos", "momos+qat"}
        The MoMos variant of every grid run.
    baseline : bool
        Also train the unconstrained baseline (row ``baseline``) for reference.
    Other parameters
        As in :func:`reproduce`.

    Returns
    -------
    pandas.DataFrame
        :func:`summarize` of every run, grid runs named ``s{s}-c{capacity}``.

    Raises
    ------
    ValueError
        An empty grid, a method that is not a MoMos method, a bad ``progress`` or
        ``threads``.
    """
    s_values, capacities = list(s_values), list(capacities)
    if not s_values or not capacities:
        raise ValueError("the sweep grid is empty: give at least one s and one capacity")
    if not method.startswith("momos"):
        raise ValueError(f"sweep trains MoMos runs: method must be 'momos' or 'momos+qat', "
                         f"got {method!r}")
    progress_mode(progress)  # bad values fail before any run starts
    resolve_threads(threads, model, device)
    if epochs is None:
        epochs = QUICK_EPOCHS if quick else 30
    base = TrainConfig(model=model, dataset=dataset, epochs=epochs, seed=seed,
                       data_dir=data_dir, device=device, estimators=tuple(estimators))
    configs = {"baseline": base} if baseline else {}
    for s in s_values:
        for c in capacities:
            configs[f"s{s}-c{c:g}"] = dataclasses.replace(base, method=method, s=int(s),
                                                          capacity=float(c))
    outdir = _prepare(out)
    results = run_all(configs, outdir, resume, progress, threads)
    table = summarize(results)
    if outdir is not None:
        from .report import write_report

        write_report(outdir, results, table, plots=plots,
                     title=f"momos sweep: {model} on {dataset}, s x c = "
                           f"{len(s_values)} x {len(capacities)}")
    return table


def _prepare(out: str | Path | None) -> Path | None:
    if out is None:
        return None
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    return outdir
