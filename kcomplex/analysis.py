"""``analyze()`` and ``compare()``: every estimator over every tensor and the whole model.

The whole model is the paper's weight vector: every tensor flattened and concatenated in
order, as float32. Results are pandas tables in bits, with bits per parameter beside.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .files import write_atomic
from .estimators import Estimator, resolve_estimators
from .io import load_weights
from .symbols import _describe_non_finite

__all__ = ["Report", "Comparison", "analyze", "compare", "ALL"]

#: Name of the row holding the whole weight vector.
ALL = "(all)"

_NONFINITE = ("raise", "drop")


class _Table:
    """JSON / CSV output shared by reports."""

    table: pd.DataFrame
    meta: dict

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The table and its metadata as JSON; written atomically to ``path`` if given."""
        text = json.dumps(
            {"meta": self.meta, "rows": json.loads(self.table.to_json(orient="records"))},
            indent=2,
        )
        if path is not None:
            write_atomic(path, text)
        return text

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """The table as CSV; written atomically to ``path`` if given."""
        text = self.table.to_csv(index=False)
        if path is not None:
            write_atomic(path, text)
        return text

    def __str__(self) -> str:
        shown = self.table.drop(columns="notes")
        text = shown.to_string(index=False, float_format=lambda v: f"{v:,.4g}")
        notes = [f"  {r.tensor}: {r.notes}" for r in self.table.itertuples() if r.notes]
        return text + ("\nnotes:\n" + "\n".join(dict.fromkeys(notes)) if notes else "")


@dataclass
class Report(_Table):
    """Bits per tensor and of the whole weight vector.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per tensor and a last row ``tensor == "(all)"``; columns ``tensor``,
        ``shape``, ``numel``, ``raw_bits`` (32 per weight), ``<estimator>_bits`` and
        ``<estimator>_bpp`` (bits per parameter) per estimator, ``notes``.
    meta : dict
        Estimators, their descriptions, options, dropped non-finite values.
    """

    table: pd.DataFrame
    meta: dict = field(default_factory=dict)

    @property
    def estimators(self) -> list[str]:
        """Names of the estimators in the table."""
        return list(self.meta["estimators"])

    @property
    def total(self) -> pd.Series:
        """The ``(all)`` row."""
        return self.table.iloc[-1]

    def plot(self, path: str | os.PathLike | None = None, **kwargs: Any):
        """Bits per parameter per tensor and estimator (see :func:`kcomplex.plot.plot_report`)."""
        from .plot import plot_report

        return plot_report(self, path=path, **kwargs)


@dataclass
class Comparison(_Table):
    """Two weight sets side by side, per tensor and estimator.

    ``table`` columns: ``tensor``, ``estimator``, ``bits_a``, ``bits_b``, ``ratio``
    (b / a: the paper's r_BDM = BDM(trained) / BDM(init) is the ``(all)``, ``bdm`` row),
    ``delta_bits`` (bits of the difference b - a, a conditional view: what b costs
    given a), ``notes``.
    """

    table: pd.DataFrame
    meta: dict = field(default_factory=dict)

    def plot(self, path: str | os.PathLike | None = None, **kwargs: Any):
        """Init vs trained bits per parameter (see :func:`kcomplex.plot.plot_comparison`)."""
        from .plot import plot_comparison

        return plot_comparison(self, path=path, **kwargs)


def _prepare(name: str, arr: np.ndarray, nonfinite: str, notes: list[str]) -> np.ndarray:
    if arr.dtype.kind != "f":
        raise TypeError(f"tensor {name!r} has dtype {arr.dtype}; weights must be floating")
    w = np.ascontiguousarray(arr, dtype="<f4").reshape(-1)
    finite = np.isfinite(w)
    if not finite.all():
        if nonfinite == "raise":
            raise ValueError(
                _describe_non_finite(arr, f"tensor {name!r}")
                + "; pass nonfinite='drop' to leave them out"
            )
        notes.append(f"dropped {w.size - int(finite.sum())} non-finite")
        w = w[finite]
    return w


def _run(est: Estimator, fn, arg, notes: list[str]) -> float:
    try:
        return float(fn(arg))
    except ValueError as err:
        # Too short for one BDM block and the like: the cell is empty and says why.
        notes.append(f"{est.name}: {err}")
        return math.nan


def _progress(progress: bool | None, total: int, desc: str):
    if progress is None:
        progress = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not progress, file=sys.stderr, leave=False)


def analyze(
    x: Any,
    estimators: str | Sequence[str] = "default",
    *,
    per_tensor: bool = True,
    trainable_only: bool = True,
    nonfinite: str = "raise",
    progress: bool | None = None,
    client: Any = None,
) -> Report:
    """Complexity of weights in bits, per tensor and for the whole weight vector.

    Parameters
    ----------
    x : array, tensor, dict, nn.Module or path
        Anything :func:`kcomplex.load_weights` accepts.
    estimators : str or sequence of str
        Names from :data:`kcomplex.estimators.ESTIMATORS`, or a preset: ``"default"``
        (bdm, zstd, entropy: fast), ``"paper"`` (bdm, gzip, bz2, lzma), ``"all"``.
    per_tensor : bool
        Also measure each tensor on its own (else only the ``(all)`` row).
    trainable_only : bool
        For modules: only parameters with ``requires_grad``.
    nonfinite : {"raise", "drop"}
        NaN/Inf weights are an error by default; ``"drop"`` leaves them out and says so
        in ``notes`` and ``meta``.
    progress : bool, optional
        A progress bar on stderr; default: only when stderr is a terminal.
    client : dask.distributed.Client, optional
        Run on this Dask cluster: `x` must then be a file, a list of files or a
        ``.safetensors.index.json``; see :func:`kcomplex.distributed.analyze`, which
        gives the same report.

    Returns
    -------
    Report

    Raises
    ------
    ValueError
        Unknown estimator, NaN/Inf weights (unless dropped), no weights at all.

    Examples
    --------
    >>> import numpy as np
    >>> w = {"layer.weight": np.random.default_rng(0).normal(size=(64, 64))}
    >>> report = analyze(w, estimators=["bdm", "gzip"])
    >>> list(report.table["tensor"])
    ['layer.weight', '(all)']
    >>> bool(report.total["gzip_bpp"] < 32)
    True
    """
    if client is not None:
        from .distributed import analyze as distributed_analyze

        return distributed_analyze(x, estimators, client=client, per_tensor=per_tensor,
                                   nonfinite=nonfinite, progress=progress)
    if nonfinite not in _NONFINITE:
        raise ValueError(f"nonfinite must be one of {_NONFINITE}, got {nonfinite!r}")
    chosen = resolve_estimators(estimators)
    weights = load_weights(x, trainable_only=trainable_only)
    rows, arrays, dropped = [], [], 0
    steps = (len(weights) if per_tensor else 0) + 1
    with _progress(progress, steps * len(chosen), "analyze") as bar:
        for name, arr in weights.items():
            notes: list[str] = []
            w = _prepare(name, arr, nonfinite, notes)
            dropped += arr.size - w.size
            row = {"tensor": name, "shape": "x".join(map(str, arr.shape)), "numel": w.size}
            if w.size:
                arrays.append(w)
            else:
                notes.append("empty: skipped")
            for est in chosen:
                if per_tensor:
                    row[f"{est.name}_bits"] = (
                        _run(est, est.tensor, w, notes) if w.size else math.nan
                    )
                    bar.update()
            row["notes"] = "; ".join(notes)
            if per_tensor:
                rows.append(row)
        if not arrays:
            raise ValueError("no weights to analyze: every tensor is empty")
        total = {"tensor": ALL, "shape": "", "numel": sum(w.size for w in arrays)}
        notes = []
        for est in chosen:
            total[f"{est.name}_bits"] = _run(est, est.total, arrays, notes)
            bar.update()
        total["notes"] = "; ".join(notes)
        rows.append(total)
    return _report(rows, chosen, nonfinite, dropped, len(weights))


def _report(
    rows: list[dict], chosen: list[Estimator], nonfinite: str, dropped: int, n_tensors: int
) -> Report:
    """The report of measured rows (each: tensor, shape, numel, ``<name>_bits``, notes;
    the ``(all)`` row last), shared with :mod:`kcomplex.distributed` so that both build
    the very same table."""
    table = pd.DataFrame(rows)
    table.insert(3, "raw_bits", 32 * table["numel"])
    for est in chosen:
        table[f"{est.name}_bpp"] = table[f"{est.name}_bits"] / table["numel"].where(
            table["numel"] > 0
        )
    table = table[[c for c in table.columns if c != "notes"] + ["notes"]]
    meta = {
        "estimators": [e.name for e in chosen],
        "descriptions": {e.name: e.description for e in chosen},
        "nonfinite": nonfinite,
        "dropped_nonfinite": int(dropped),
        "n_tensors": n_tensors,
    }
    return Report(table=table, meta=meta)


def compare(
    a: Any,
    b: Any,
    estimators: str | Sequence[str] = "default",
    *,
    trainable_only: bool = True,
    progress: bool | None = None,
) -> Comparison:
    """Two weight sets (say, initialization and trained) side by side.

    Parameters
    ----------
    a, b : array, tensor, dict, nn.Module or path
        Anything :func:`kcomplex.load_weights` accepts; tensors are matched by name.
    estimators : str or sequence of str
        As for :func:`analyze`.
    trainable_only, progress
        As for :func:`analyze`.

    Returns
    -------
    Comparison
        Per tensor (present in both) and for ``(all)``: bits of a, bits of b, ratio b/a
        and bits of the difference b - a (where the shapes agree).

    Raises
    ------
    ValueError
        If the two share no tensor name.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> init = {"w": rng.normal(size=4096)}
    >>> trained = {"w": np.where(np.abs(init["w"]) < 1, 0.0, init["w"])}
    >>> cmp = compare(init, trained, estimators=["zstd"])
    >>> bool(cmp.table.query("tensor == '(all)'")["ratio"].iloc[0] < 1)
    True
    """
    wa = load_weights(a, trainable_only=trainable_only)
    wb = load_weights(b, trainable_only=trainable_only)
    common = [n for n in wa if n in wb]
    if not common:
        raise ValueError(
            f"the two weight sets share no tensor name (first has {list(wa)[:3]}, "
            f"second has {list(wb)[:3]})"
        )
    ra = analyze({n: wa[n] for n in common}, estimators, progress=progress)
    rb = analyze({n: wb[n] for n in common}, estimators, progress=progress)
    chosen = resolve_estimators(estimators)
    rows = []
    deltas: list[np.ndarray] = []
    shapes_agree = all(wa[n].shape == wb[n].shape for n in common)
    for i, name in enumerate([*common, ALL]):
        prep_notes: list[str] = []
        delta = None
        if name != ALL and wa[name].shape == wb[name].shape and wa[name].size:
            delta = (_prepare(name, wb[name], "raise", prep_notes)
                     - _prepare(name, wa[name], "raise", prep_notes))
            deltas.append(delta)
        for est in chosen:
            notes = list(prep_notes)
            bits_a = ra.table.iloc[i][f"{est.name}_bits"]
            bits_b = rb.table.iloc[i][f"{est.name}_bits"]
            if name == ALL:
                dbits = _run(est, est.total, deltas, notes) if shapes_agree else math.nan
            else:
                dbits = _run(est, est.tensor, delta, notes) if delta is not None else math.nan
            if math.isnan(bits_a) and not notes:
                notes.append(f"{est.name}: see analyze() notes")
            rows.append({
                "tensor": name,
                "estimator": est.name,
                "bits_a": bits_a,
                "bits_b": bits_b,
                "ratio": bits_b / bits_a if bits_a else math.nan,
                "delta_bits": dbits,
                "notes": "; ".join(dict.fromkeys(notes)),
            })
    meta = {"estimators": [e.name for e in chosen], "a": ra.meta, "b": rb.meta}
    return Comparison(table=pd.DataFrame(rows), meta=meta)
