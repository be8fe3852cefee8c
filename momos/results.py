"""A training run's result as typed objects, and the ``results.json`` that holds it.

Its one job is the result's layout: :class:`RunResult` (with :class:`ModelInfo`,
:class:`EpochRecord` and :class:`RunSummary`) is what :func:`momos.train` builds and writes;
``to_dict`` gives exactly the JSON layout of :data:`RESULTS_FORMAT`, key order included, and
``from_dict`` reads it back, so a results file written by any momos of this format loads.
:func:`load_results` reads and checks a ``results.json``.

Values are kept as they were measured or read: a learning rate given as an integer stays
one, so that a file read and written again is the same bytes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcomplex.files import regular_file

__all__ = ["RESULTS_FORMAT", "DamagedFile", "EpochRecord", "ModelInfo", "RunResult",
           "RunSummary", "first_line", "load_results", "parse_results"]

#: Value of ``results["format"]``; bumped when the layout of ``results.json`` changes.
RESULTS_FORMAT = "momos-train/1"

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string"}


class DamagedFile(ValueError):
    """What is wrong with a file of a run directory: the reason alone, without the path.

    Raised by :func:`parse_results` and by :mod:`momos.checkpoint`'s readers; the caller
    that knows the path turns it into the error the user sees.
    """


def first_line(err: BaseException) -> str:
    """An error's message cut to one short line (torch's run to paragraphs).

    Examples
    --------
    >>> first_line(ValueError("bad\\nmore detail"))
    'ValueError: bad'
    """
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:160]}" if text else type(err).__name__


def _field(data: Mapping[str, Any], key: str, where: str) -> Any:
    try:
        return data[key]
    except (KeyError, TypeError):
        raise ValueError(f"{where} has no {key!r}: not a results layout of "
                         f"{RESULTS_FORMAT!r}") from None


@dataclass
class EpochRecord:
    """The measurements of one epoch (epoch 0: the initialization).

    ``train_loss``/``train_acc`` are the epoch's running means (at epoch 0 an evaluation),
    ``lr`` the rate the epoch trained with, ``complexity`` maps ``<estimator>_bits`` to
    bits, ``projection`` holds the last projection's ``k``, ``distortion`` and ``changed``
    (None without MoMos, and at epoch 0).
    """

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float
    lr: float
    sparsity: float
    l2: float
    complexity: dict[str, float]
    projection: dict[str, Any] | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The record as it stands in ``results.json`` (fields in this order)."""
        out = {f: getattr(self, f) for f in _RECORD_FIELDS}
        out["complexity"] = dict(self.complexity)
        out["projection"] = dict(self.projection) if self.projection is not None else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpochRecord:
        """A record of ``results.json``.

        Raises
        ------
        ValueError
            If a field is missing.
        """
        values = {f: _field(data, f, "an epoch record") for f in _RECORD_FIELDS}
        values["complexity"] = dict(values["complexity"])
        if values["projection"] is not None:
            values["projection"] = dict(values["projection"])
        return cls(**values)


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(EpochRecord))


@dataclass
class ModelInfo:
    """The trained model's size: ``n_params`` weights; ``m`` blocks and ``k`` motifs for
    MoMos runs (None otherwise, and then absent from ``results.json``)."""

    n_params: int
    m: int | None = None
    k: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``model`` object of ``results.json``."""
        out: dict[str, Any] = {"n_params": self.n_params}
        if self.m is not None:
            out.update(m=self.m, k=self.k)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        """The ``model`` object of ``results.json``.

        Raises
        ------
        ValueError
            If ``n_params`` is missing.
        """
        return cls(_field(data, "n_params", "'model'"), data.get("m"), data.get("k"))


@dataclass
class RunSummary:
    """The end of a finished run.

    ``test_acc``/``val_acc`` of the last epoch; the best epoch by validation accuracy
    (earliest on ties) with its accuracies; ``complexity_ratio`` trained/init per estimator;
    ``description_length`` (``total_bits``, ``bound_bits``, ``trivial_bits``, ``coded``,
    ``rac_exact``, ``rac_bound``, ``codes`` (bits of the tensors stored with each tensor
    code), ``header_bits``, ``leftover_bits``, and the bank and mosaic parts for MoMos
    runs); ``motif_counts``,
    the blocks per motif, for MoMos runs (None otherwise, and then absent from the file).
    """

    test_acc: float
    val_acc: float
    best_epoch: int
    best_val_acc: float
    best_test_acc: float
    complexity_ratio: dict[str, float]
    description_length: dict[str, Any]
    motif_counts: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``summary`` object of ``results.json``."""
        out = {f: getattr(self, f) for f in _SUMMARY_FIELDS}
        out["complexity_ratio"] = dict(self.complexity_ratio)
        out["description_length"] = dict(self.description_length)
        if self.motif_counts is not None:
            out["motif_counts"] = list(self.motif_counts)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        """The ``summary`` object of ``results.json``.

        Raises
        ------
        ValueError
            If a field other than ``motif_counts`` is missing.
        """
        values = {f: _field(data, f, "'summary'") for f in _SUMMARY_FIELDS}
        counts = data.get("motif_counts")
        return cls(**values, motif_counts=list(counts) if counts is not None else None)


_SUMMARY_FIELDS = tuple(f.name for f in dataclasses.fields(RunSummary)
                        if f.name != "motif_counts")


@dataclass
class RunResult:
    """One run's result: what :func:`momos.train` writes to ``results.json``.

    Attributes
    ----------
    config : dict
        :meth:`momos.TrainConfig.resolved` of the run (per-model defaults filled in).
    model : ModelInfo
        The model's size.
    epochs : list of EpochRecord
        One record per epoch 0..E that has run.
    summary : RunSummary or None
        None while the run is ``running``.
    status : {"running", "finished"}
    format : str
        :data:`RESULTS_FORMAT`.

    Examples
    --------
    >>> import momos
    >>> res = momos.train(epochs=0, estimators=("bdm",), progress=False)
    >>> res.status, res.final.epoch, res.summary.description_length["coded"]
    ('finished', 0, 'tensor codes')
    """

    config: dict[str, Any]
    model: ModelInfo
    epochs: list[EpochRecord] = field(default_factory=list)
    summary: RunSummary | None = None
    status: str = "running"
    format: str = RESULTS_FORMAT

    @property
    def final(self) -> EpochRecord:
        """The record of the last epoch that has run."""
        return self.epochs[-1]

    def to_dict(self) -> dict[str, Any]:
        """The content of ``results.json``, keys in the file's order."""
        return {
            "format": self.format,
            "config": copy.deepcopy(self.config),
            "model": self.model.to_dict(),
            "epochs": [record.to_dict() for record in self.epochs],
            "summary": self.summary.to_dict() if self.summary is not None else {},
            "status": self.status,
        }

    def to_json(self) -> bytes:
        """The bytes of ``results.json`` (one-space indent; NaN for splits left empty)."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=True).encode("utf-8")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        """A result from the content of a ``results.json`` (as :meth:`to_dict` gives it).

        Raises
        ------
        ValueError
            If a field is missing.
        """
        summary = _field(data, "summary", "the results")
        return cls(
            config=copy.deepcopy(dict(_field(data, "config", "the results"))),
            model=ModelInfo.from_dict(_field(data, "model", "the results")),
            epochs=[EpochRecord.from_dict(r) for r in _field(data, "epochs", "the results")],
            summary=RunSummary.from_dict(summary) if summary else None,
            status=_field(data, "status", "the results"),
            format=_field(data, "format", "the results"),
        )

    @classmethod
    def of(cls, value: RunResult | Mapping[str, Any]) -> RunResult:
        """``value`` itself, or the result that a results dict holds."""
        return value if isinstance(value, RunResult) else cls.from_dict(value)

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        """The result in a run directory or ``results.json``: :func:`load_results`.

        Raises
        ------
        FileNotFoundError, ValueError
            As :func:`load_results`.
        """
        return load_results(path)


def parse_results(data: bytes | str) -> dict[str, Any]:
    """The content of ``results.json``, its layout checked.

    Parameters
    ----------
    data : bytes or str
        The file's content.

    Returns
    -------
    dict
        The parsed JSON.

    Raises
    ------
    DamagedFile
        If it is not JSON, not of :data:`RESULTS_FORMAT`, or a field has the wrong type.
    """
    try:
        results = json.loads(data)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError
        raise DamagedFile(f"not JSON: {first_line(err)}") from err
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise DamagedFile(f"format is not {RESULTS_FORMAT!r}")
    for key, kind in (("config", dict), ("model", dict), ("epochs", list), ("summary", dict),
                      ("status", str)):
        if not isinstance(results.get(key), kind):
            raise DamagedFile(f"{key!r} is missing or not {_JSON_TYPES[kind]}")
    if not all(isinstance(record, dict) for record in results["epochs"]):
        raise DamagedFile("'epochs' holds something other than objects")
    if results["status"] not in ("running", "finished"):
        raise DamagedFile(f"status {results['status']!r} is neither 'running' nor 'finished'")
    return results


def load_results(path: str | Path) -> RunResult:
    """Read ``results.json`` from a run directory (or the file itself).

    Parameters
    ----------
    path : str or Path
        A run directory or its ``results.json``.

    Returns
    -------
    RunResult
        The results, as :func:`momos.train` returns them (``to_dict()`` gives the file's
        content).

    Raises
    ------
    FileNotFoundError
        If there is no ``results.json``.
    ValueError
        If it is not a regular file, not JSON, or not a results file of
        :data:`RESULTS_FORMAT` (a field missing or of the wrong type); the message names
        the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    data = regular_file(path, "results file").read_bytes()
    try:
        return RunResult.from_dict(parse_results(data))
    except ValueError as err:  # DamagedFile, or a record or summary missing a field
        raise ValueError(f"{path} is not a momos results file ({err})") from err
