"""``analyze()`` and ``compare()``: every estimator over every tensor and the whole model.

The whole model is the paper's weight vector: every tensor flattened and concatenated in
order, as float32. Results are pandas tables in bits, with bits per parameter beside.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .driver import (
    CHUNK,
    NONFINITE,
    ArraySource,
    array_source,
    file_tensors,
    measure,
    prepare,
    progress_bar,
    reads_files,
)
from .estimators import Estimator, resolve_estimators
from .files import write_atomic
from .io import frozen_parameters, load_weights
from .validation import check_choice

__all__ = ["Report", "Comparison", "analyze", "compare", "ALL"]

#: Name of the row holding the whole weight vector.
ALL = "(all)"


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
        Estimators, their descriptions, options, dropped non-finite values
        (``dropped_nonfinite``), and the frozen parameters of a module left out by
        ``trainable_only`` (``frozen_params``, ``frozen_tensors``; 0 for other inputs).
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


# ``Comparison.tensors`` statuses: measured and in ``(all)``; measured per tensor only;
# not measured.
COMPARED = "compared"
SHAPES_DIFFER = "shapes differ"
ONLY_IN_A = "only in a"
ONLY_IN_B = "only in b"


@dataclass
class Comparison(_Table):
    """Two weight sets side by side, per tensor and estimator.

    Attributes
    ----------
    table : pandas.DataFrame
        Columns ``tensor``, ``estimator``, ``bits_a``, ``bits_b``, ``ratio`` (b / a: the
        paper's ratio of trained to initial complexity is an ``(all)`` row's),
        ``delta_bits`` (bits of the difference b - a, a conditional view: what b costs
        given a), ``notes``. One row per estimator for every tensor present in both, and
        for ``(all)``: the weight vector of the tensors with the same name and shape in
        both (``status == "compared"`` in `tensors`).
    tensors : pandas.DataFrame
        Every tensor of either set, in a's order then b's: ``tensor``, ``status``
        (``"compared"``, ``"shapes differ"``: measured on its own, no ``delta_bits``,
        not in ``(all)``; ``"only in a"``, ``"only in b"``: not measured), ``shape_a``,
        ``shape_b`` (``""`` where absent).
    meta : dict
        Estimators and their descriptions; ``a`` and ``b``: tensors read and frozen
        parameters left out of each; ``n_compared`` and ``not_compared`` (the rows of
        `tensors` whose status is not ``"compared"``).
    """

    table: pd.DataFrame
    meta: dict = field(default_factory=dict)
    tensors: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["tensor", "status", "shape_a", "shape_b"])
    )

    @property
    def not_compared(self) -> pd.DataFrame:
        """The rows of `tensors` left out of ``(all)``: shapes differ, or in one set only."""
        return self.tensors[self.tensors["status"] != COMPARED]

    def __str__(self) -> str:
        text = super().__str__()
        rest = self.not_compared
        if rest.empty:
            return text
        listed = rest.to_string(index=False)
        return (f"{text}\nnot in (all): {len(rest)} of {len(self.tensors)} tensors\n"
                f"{listed}")

    def plot(self, path: str | os.PathLike | None = None, **kwargs: Any):
        """Init vs trained bits per parameter (see :func:`kcomplex.plot.plot_comparison`)."""
        from .plot import plot_comparison

        return plot_comparison(self, path=path, **kwargs)


def _frozen_note(params: int, tensors: int) -> str:
    return (f"{params:,} frozen parameters in {tensors} tensors not measured; pass "
            "trainable_only=False (--all-params) to include them")


def analyze(
    x: Any,
    estimators: str | Sequence[str] = "default",
    *,
    per_tensor: bool = True,
    trainable_only: bool = True,
    nonfinite: str = "raise",
    progress: bool | None = None,
    client: Any = None,
    workers: int | None = None,
    chunk: int = CHUNK,
) -> Report:
    """Complexity of weights in bits, per tensor and for the whole weight vector.

    Paths (a ``.safetensors`` or ``.npy`` file, a list of files, a sharded checkpoint's
    ``*.index.json``) are read tensor by tensor, `chunk` elements at a time, as the
    estimators need them: memory stays bounded whatever the checkpoint's size. Other
    inputs are loaded first. Independent tensors and estimators run on a thread pool.

    Parameters
    ----------
    x : array, tensor, dict, nn.Module or path
        Anything :func:`kcomplex.load_weights` accepts.
    estimators : str or sequence of str
        Names from :data:`kcomplex.estimators.ESTIMATORS`, or a preset: ``"default"``
        of :data:`kcomplex.estimators.PRESETS` (``"default"``: fast, ``"paper"``: the
        paper's, ``"all"``).
    per_tensor : bool
        Also measure each tensor on its own (else only the ``(all)`` row).
    trainable_only : bool
        For modules: only parameters with ``requires_grad``; the frozen ones left out
        are counted in the ``(all)`` row's notes and in ``meta["frozen_params"]`` and
        ``meta["frozen_tensors"]``. Other inputs, files among them, carry no
        ``requires_grad`` flag and are read whole whatever its value: with `client`,
        which reads files only, it changes nothing, as for a file here.
    nonfinite : {"raise", "drop"}
        NaN/Inf weights are an error by default; ``"drop"`` leaves them out and says so
        in ``notes`` and ``meta``. Finite values too large for float32 (the dtype
        measured, up to about 3.4e38) are always an error: they are not dropped.
    progress : bool, optional
        A progress bar on stderr; default: only when stderr is a terminal.
    client : dask.distributed.Client, optional
        Run on this Dask cluster: `x` must then be a file, a list of files or a
        ``.safetensors.index.json`` that every worker can read; see
        :func:`kcomplex.distributed.analyze`, which gives the same report as this
        function without a client, option for option. An array, tensor, module or dict
        cannot be sent to the workers: save it (``safetensors.numpy.save_file``) and
        pass the path, or call without `client`.
    workers : int, optional
        Threads in this process (default: one per CPU, ``os.cpu_count()``; 1: one task
        after the other). The report is the same whatever their number.
    chunk : int
        Elements read at a time from files; tensors up to this size are read whole.

    Returns
    -------
    Report

    Raises
    ------
    TypeError
        `estimators` is not a string or a list of strings (``None``, say); with
        `client`, `x` is not a path or a list of paths (the message says what to pass).
    ValueError
        Unknown, repeated or no estimators, NaN/Inf weights (unless dropped), values that
        overflow float32, no weights at all.

    Examples
    --------
    >>> import numpy as np
    >>> w = {"layer.weight": np.random.default_rng(0).normal(size=(64, 64))}
    >>> report = analyze(w, estimators="paper")
    >>> list(report.table["tensor"])
    ['layer.weight', '(all)']
    >>> bool((report.table.filter(like="_bpp").iloc[-1] < 32).all())
    True
    """
    check_choice(nonfinite, "nonfinite", NONFINITE)
    chosen = resolve_estimators(estimators)
    if client is not None or reads_files(x):
        # trainable_only selects a module's parameters: files have none to leave out.
        source = file_tensors(x, nonfinite, chunk)
        frozen = (0, 0)
    else:
        source = array_source(load_weights(x, trainable_only=trainable_only), nonfinite)
        frozen = frozen_parameters(x, trainable_only)
    with progress_bar(progress, 0, "analyze") as bar:
        m = measure(source, chosen, per_tensor=per_tensor, workers=workers, client=client,
                    bar=bar)
    rows = []
    for i, (name, shape) in enumerate(zip(source.names, source.shapes)):
        if per_tensor:
            rows.append({"tensor": name, "shape": shape, "numel": m.kept[i],
                         **{f"{e.name}_bits": m.bits[i][e.name] for e in chosen},
                         "notes": "; ".join(m.row_notes(i))})
    notes = [_frozen_note(*frozen)] if frozen[1] else []
    notes += [n for e in chosen for n in m.total_notes[e.name]]
    rows.append({"tensor": ALL, "shape": "", "numel": sum(m.kept),
                 **{f"{e.name}_bits": m.total[e.name] for e in chosen},
                 "notes": "; ".join(notes)})
    return _report(rows, chosen, nonfinite, sum(m.dropped), len(source), frozen)


def _report(
    rows: list[dict],
    chosen: list[Estimator],
    nonfinite: str,
    dropped: int,
    n_tensors: int,
    frozen: tuple[int, int] = (0, 0),
) -> Report:
    """The report of measured rows (each: tensor, shape, numel, ``<name>_bits``, notes;
    the ``(all)`` row last). `frozen`: parameters and tensors left out by
    trainable_only."""
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
        "frozen_params": int(frozen[0]),
        "frozen_tensors": int(frozen[1]),
    }
    return Report(table=table, meta=meta)


def _shape(arr: np.ndarray | None) -> str:
    return "" if arr is None else "x".join(map(str, arr.shape)) or "scalar"


def _match(wa: dict[str, np.ndarray], wb: dict[str, np.ndarray]) -> pd.DataFrame:
    """Every tensor of either set, in a's order then b's, with its status."""
    rows = []
    for name in [*wa, *(n for n in wb if n not in wa)]:
        a, b = wa.get(name), wb.get(name)
        if b is None:
            status = ONLY_IN_A
        elif a is None:
            status = ONLY_IN_B
        else:
            status = COMPARED if a.shape == b.shape else SHAPES_DIFFER
        rows.append({"tensor": name, "status": status, "shape_a": _shape(a),
                     "shape_b": _shape(b)})
    return pd.DataFrame(rows, columns=["tensor", "status", "shape_a", "shape_b"])


def _listing(rows: pd.DataFrame, limit: int = 10) -> str:
    shown = [
        f"{r.tensor!r} ({r.status}"
        + (f": {r.shape_a} vs {r.shape_b})" if r.status == SHAPES_DIFFER else ")")
        for r in rows.head(limit).itertuples()
    ]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(shown) + more


def _sides(notes_a: list[str], notes_b: list[str]) -> list[str]:
    """The notes of a and of b: once if alike, else each marked with its side."""
    if notes_a == notes_b:
        return list(notes_a)
    return [f"a: {n}" for n in notes_a] + [f"b: {n}" for n in notes_b]


def _label(name: str, side: str, source: Any) -> str:
    """How errors name a tensor of one side: with its file where it came from one."""
    where = f" ({os.fspath(source)})" if isinstance(source, (str, os.PathLike)) else ""
    return f"tensor {name!r} of {side}{where}"


def _delta(name: str, xa: np.ndarray, xb: np.ndarray, notes: list[str]) -> np.ndarray | None:
    """b - a in float32, or None with a note where it overflows."""
    with np.errstate(over="ignore"):
        delta = xb - xa
    bad = int(np.count_nonzero(~np.isfinite(delta)))
    if bad:
        notes.append(f"delta_bits: b - a overflows float32 at {bad} values of {name!r}")
        return None
    return delta


def compare(
    a: Any,
    b: Any,
    estimators: str | Sequence[str] = "default",
    *,
    trainable_only: bool = True,
    strict: bool = False,
    progress: bool | None = None,
    workers: int | None = None,
) -> Comparison:
    """Two weight sets (say, initialization and trained) side by side.

    Tensors are matched by name. Those with the same name and shape are compared in
    full and make up the ``(all)`` rows; those whose shapes differ are measured on
    their own (bits and ratio, no ``delta_bits``: the note says why) and left out of
    ``(all)``; those in one set only are not measured. ``Comparison.tensors`` lists
    every tensor with its status, and printing the comparison shows the ones not in
    ``(all)``.

    Parameters
    ----------
    a, b : array, tensor, dict, nn.Module or path
        Anything :func:`kcomplex.load_weights` accepts.
    estimators : str or sequence of str
        As for :func:`analyze`.
    trainable_only, progress, workers
        As for :func:`analyze`.
    strict : bool
        Refuse, rather than report, any tensor that is in one set only or whose shapes
        differ.

    Returns
    -------
    Comparison
        Per tensor (present in both) and for ``(all)``: bits of a, bits of b, ratio b/a,
        ``delta_bits``, the bits of the difference b - a (where the shapes agree: the
        complexity of the change, not a conditional complexity), and
        ``conditional_bits``, ``C(a b) - C(a)``: the estimator over a's weights followed
        by b's, less a's alone, the estimate of the conditional complexity of b given a
        (:func:`kcomplex.conditional`; a compressor's can be negative or exceed
        ``bits_b``).

    Raises
    ------
    TypeError
        `estimators` is not a string or a list of strings.
    ValueError
        Unknown, repeated or no estimators. If the two share no tensor name, or no tensor
        of the same name and shape; with `strict`, if they differ at all; for the weights
        themselves, as :func:`analyze` with ``nonfinite="raise"``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> init = {"w": rng.normal(size=4096)}
    >>> trained = {"w": np.where(np.abs(init["w"]) < 1, 0.0, init["w"])}
    >>> cmp = compare(init, trained)
    >>> bool(cmp.table.query("tensor == '(all)'")["ratio"].iloc[-1] < 1)
    True
    >>> trained["extra"] = rng.normal(size=10)
    >>> compare(init, trained).not_compared
      tensor     status shape_a shape_b
    1  extra  only in b              10
    """
    chosen = resolve_estimators(estimators)
    wa = load_weights(a, trainable_only=trainable_only)
    wb = load_weights(b, trainable_only=trainable_only)
    tensors = _match(wa, wb)
    status = dict(zip(tensors["tensor"], tensors["status"]))
    rest = tensors[tensors["status"] != COMPARED]
    if not any(n in wb for n in wa):
        raise ValueError(
            f"the two weight sets share no tensor name (first has {list(wa)[:3]}, "
            f"second has {list(wb)[:3]})"
        )
    if strict and not rest.empty:
        raise ValueError(
            f"the weight sets do not match (strict): {len(rest)} of {len(tensors)} "
            f"tensors cannot be compared in full: {_listing(rest)}"
        )
    n_compared = len(tensors) - len(rest)
    if not n_compared:
        raise ValueError(f"no tensor has the same name and shape in both: {_listing(rest)}")
    measured = [n for n in wa if status[n] in (COMPARED, SHAPES_DIFFER)]
    frozen = {side: frozen_parameters(x, trainable_only) for side, x in (("a", a), ("b", b))}
    xs: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    deltas: list[np.ndarray | None] = []
    prep_notes: list[list[str]] = []
    in_total: list[bool] = []
    for name in measured:
        xa, _ = prepare(wa[name], _label(name, "a", a), "raise")
        xb, _ = prepare(wb[name], _label(name, "b", b), "raise")
        notes: list[str] = []
        delta = None
        if status[name] == SHAPES_DIFFER:
            notes.append(f"shapes differ (a {_shape(wa[name])}, b {_shape(wb[name])}): no "
                         "delta_bits, not in (all)")
        elif xa.size:
            delta = _delta(name, xa, xb, notes)
        xs["a"].append(xa)
        xs["b"].append(xb)
        deltas.append(delta)
        prep_notes.append(notes)
        in_total.append(status[name] == COMPARED and xa.size > 0)
    if not any(in_total):
        raise ValueError("no weights to compare: every tensor compared is empty")
    delta_ok = all(d is not None for d, inside in zip(deltas, in_total) if inside)
    with_delta = [i for i, d in enumerate(deltas) if d is not None]
    sources = {
        side: ArraySource(measured, [""] * len(measured), xs[side], [0] * len(measured),
                          in_total)
        for side in ("a", "b")
    }
    with progress_bar(progress, 0, "compare") as bar:
        m = {side: measure(src, chosen, workers=workers, bar=bar)
             for side, src in sources.items()}
        md = measure(
            ArraySource([measured[i] for i in with_delta], [""] * len(with_delta),
                        [deltas[i] for i in with_delta], [0] * len(with_delta)),
            chosen, total=delta_ok, workers=workers, bar=bar,
        ) if with_delta else None
        # C(a b) - C(a): the conditional estimate, every estimator alike (a's weights
        # then b's, per tensor and over the (all) tensors).
        joint = measure(
            ArraySource(measured, [""] * len(measured),
                        [np.concatenate([xa, xb]) for xa, xb in zip(xs["a"], xs["b"])],
                        [0] * len(measured), [False] * len(measured)),
            chosen, total=False, workers=workers, bar=bar)
        inside = [i for i, ok in enumerate(in_total) if ok]
        joint_all = measure(
            ArraySource([measured[i] for i in inside] * 2, [""] * (2 * len(inside)),
                        [xs["a"][i] for i in inside] + [xs["b"][i] for i in inside],
                        [0] * (2 * len(inside))),
            chosen, per_tensor=False, workers=workers, bar=bar)
    where_delta = {i: j for j, i in enumerate(with_delta)}
    rows = []
    for i, name in enumerate(measured):
        for est in chosen:
            side_notes = {side: m[side].notes[i][est.name]
                          + ([] if m[side].kept[i] else ["empty: skipped"])
                          for side in ("a", "b")}
            notes = prep_notes[i] + _sides(side_notes["a"], side_notes["b"])
            dbits = math.nan
            if i in where_delta:
                dbits = md.bits[where_delta[i]][est.name]
                notes += md.notes[where_delta[i]][est.name]
            rows.append(_row(name, est, m["a"].bits[i][est.name], m["b"].bits[i][est.name],
                             dbits, joint.bits[i][est.name] - m["a"].bits[i][est.name],
                             notes))
    total_notes: list[str] = []
    if frozen["a"] == frozen["b"] and frozen["a"][1]:
        total_notes.append(f"a and b each: {_frozen_note(*frozen['a'])}")
    elif frozen["a"] != frozen["b"]:
        total_notes += [f"{side}: {_frozen_note(*frozen[side])}"
                        for side in ("a", "b") if frozen[side][1]]
    if not rest.empty:
        total_notes.append(
            f"over the {n_compared} tensors with the same name and shape; "
            f"{len(rest)} not in (all): {_listing(rest, 3)}"
        )
    if not delta_ok:
        total_notes.append("delta_bits: b - a overflows float32")
    for est in chosen:
        notes = total_notes + _sides(m["a"].total_notes[est.name], m["b"].total_notes[est.name])
        dbits = math.nan
        if delta_ok:
            dbits = md.total[est.name]
            notes += md.total_notes[est.name]
        rows.append(_row(ALL, est, m["a"].total[est.name], m["b"].total[est.name], dbits,
                         joint_all.total[est.name] - m["a"].total[est.name], notes))
    meta = {
        "estimators": [e.name for e in chosen],
        "descriptions": {e.name: e.description for e in chosen},
        **{
            side: {"n_tensors": len(w), "frozen_params": int(frozen[side][0]),
                   "frozen_tensors": int(frozen[side][1])}
            for side, w in (("a", wa), ("b", wb))
        },
        "n_compared": n_compared,
        "not_compared": rest.to_dict(orient="records"),
    }
    return Comparison(table=pd.DataFrame(rows), meta=meta, tensors=tensors)


def _row(name: str, est: Estimator, bits_a: float, bits_b: float, dbits: float,
         cbits: float, notes: list[str]) -> dict:
    if bits_a == 0:
        notes.append("ratio: a measures 0 bits")
    return {
        "tensor": name,
        "estimator": est.name,
        "bits_a": bits_a,
        "bits_b": bits_b,
        "ratio": bits_b / bits_a if bits_a else math.nan,
        "delta_bits": dbits,
        "conditional_bits": cbits,
        "notes": "; ".join(dict.fromkeys(notes)),
    }
