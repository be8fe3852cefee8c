"""The run directory: its lock, the ``last.pt`` training state and the checks on resume.

Its one job is to decide whether a run directory can be used and continued: hold
``.lock`` for the run (:func:`lock`), tell a directory holding a run (:func:`holds_run`),
serialize the training state (:func:`state_bytes`), and read ``last.pt`` back with
everything it holds checked against ``results.json`` and the run's config
(:func:`resume_state`), so that a damaged directory is refused with one message
(:func:`cannot_resume`) that names the file and the fix. The writing itself stays in
:mod:`momos.train`, where the order of the writes makes every epoch's commit.
"""

from __future__ import annotations

import io
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from kcomplex.files import regular_file
from kcomplex.validation import is_int

from .config import TrainConfig
from .results import DamagedFile, parse_results

__all__ = ["STATE_FORMAT", "cannot_resume", "check_progress", "fits", "holds_run", "lock",
           "read_state", "resume_state", "state_bytes"]

#: Value of ``last.pt``'s ``format``; /2 added the results that the state commits.
STATE_FORMAT = "momos-train-state/2"
# The fields of an epoch's record that are numbers, besides ``epoch``.
_RECORD_NUMBERS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                   "lr", "sparsity", "l2", "seconds")


def state_bytes(snap: dict[str, Any]) -> bytes:
    """``snap`` (tensors and plain values) as the bytes of ``last.pt``."""
    buf = io.BytesIO()
    torch.save(snap, buf)
    return buf.getvalue()


def cannot_resume(outdir: Path, name: str, reason: object) -> ValueError:
    """The one error of a run directory that cannot be resumed."""
    return ValueError(f"cannot resume {outdir}: {name} is damaged ({reason}); delete the "
                      "directory to start again, or choose another output directory (--out)")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fits(template: Any, value: Any, what: str) -> None:
    """Check that ``value`` has the structure of ``template``: the same keys, lengths,
    tensor shapes and dtypes, and kinds of scalar (int and float count as one).

    Raises
    ------
    DamagedFile
        Naming ``what`` and the first place where they differ.
    """
    def differ(where: str) -> DamagedFile:
        return DamagedFile(f"{what} does not fit this run at {where or 'its top'}")

    def walk(t: Any, v: Any, where: str) -> None:
        if isinstance(t, torch.Tensor):
            if not isinstance(v, torch.Tensor) or v.shape != t.shape or v.dtype != t.dtype:
                raise differ(where)
        elif isinstance(t, dict):
            if not isinstance(v, dict) or set(v) != set(t):
                raise differ(where)
            for key in t:
                walk(t[key], v[key], f"{where}[{key!r}]")
        elif isinstance(t, (list, tuple)):
            if type(v) is not type(t) or len(v) != len(t):
                raise differ(where)
            for i, (a, b) in enumerate(zip(t, v)):
                walk(a, b, f"{where}[{i}]")
        elif _is_number(t):
            if not _is_number(v):
                raise differ(where)
        elif type(v) is not type(t):
            raise differ(where)

    walk(template, value, "")


def read_state(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``last.pt`` loaded on the CPU, and the results it holds; its layout checked.

    Raises
    ------
    FileNotFoundError
        If it is missing.
    DamagedFile
        If it is not a regular file, not a training state of :data:`STATE_FORMAT`, or a
        field is missing or of the wrong type. Its tensors are checked by
        :meth:`momos.runstate.RunState.restore`.
    """
    try:
        data = regular_file(path, "training state").read_bytes()
    except FileNotFoundError:
        raise
    except ValueError as err:  # a directory, FIFO or device
        raise DamagedFile(str(err)) from err
    try:
        # weights_only: a pickle that asks for any other object is refused, not run.
        snap = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # whatever torch or pickle raise, it is not a state we wrote
        raise DamagedFile(f"torch.load cannot read it ({type(err).__name__}): it is "
                          "truncated, overwritten, or holds objects other than tensors and "
                          "plain values") from err
    if not isinstance(snap, dict) or snap.get("format") != STATE_FORMAT:
        raise DamagedFile(f"not a training state of format {STATE_FORMAT!r}; a run started "
                          "by an older momos cannot be resumed")
    kinds = {"epoch": int, "best_epoch": int, "best_val_acc": float, "results": str,
             "model": dict, "opt": dict, "sched": dict, "data_gen": torch.Tensor,
             "torch_rng": torch.Tensor, "momos_gen": torch.Tensor, "bank": torch.Tensor,
             "mosaic": torch.Tensor}
    for key, kind in kinds.items():
        value = snap.get(key)
        if not (is_int(value) if kind is int else isinstance(value, kind)):
            raise DamagedFile(f"{key!r} is missing or not {kind.__name__}")
    try:
        results = parse_results(snap["results"])
    except DamagedFile as err:
        raise DamagedFile(f"its results: {err}") from err
    return snap, results


def check_progress(snap: Mapping[str, Any], results: Mapping[str, Any], epochs: int,
                    estimators: tuple[str, ...]) -> None:
    """Check that a state's epoch, best epoch and records agree with each other.

    Raises
    ------
    DamagedFile
        Naming what disagrees.
    """
    epoch, records = snap["epoch"], results["epochs"]
    if not 0 <= epoch <= epochs or len(records) != epoch + 1:
        raise DamagedFile(f"epoch {epoch} with {len(records)} records in a run of {epochs} epochs")
    bits = {f"{e}_bits" for e in estimators}
    for i, record in enumerate(records):
        complexity = record.get("complexity")
        if not (record.get("epoch") == i and is_int(record["epoch"])
                and all(_is_number(record.get(key)) for key in _RECORD_NUMBERS)
                and isinstance(complexity, dict) and set(complexity) == bits
                and all(_is_number(v) for v in complexity.values())
                and (record.get("projection") is None or isinstance(record["projection"], dict))):
            raise DamagedFile(f"the record of epoch {i} is malformed")
    best, best_acc = snap["best_epoch"], snap["best_val_acc"]
    if not (best == -1 and best_acc == -math.inf
            or 0 <= best <= epoch and records[best]["val_acc"] == best_acc):
        raise DamagedFile(f"its best epoch {best} disagrees with its records")


def resume_state(outdir: Path, config: Mapping[str, Any], cfg: TrainConfig
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The state of ``outdir/last.pt`` and its records, checked against the directory.

    ``last.pt`` is the commit point of every epoch: ``results.json`` is rewritten after it
    and may lag one epoch behind after a crash; the records come from ``last.pt``.

    Raises
    ------
    ValueError
        If the config differs from ``config``, or a file is damaged (named, with the fix).
    """
    try:
        snap, stored = read_state(outdir / "last.pt")
    except FileNotFoundError:
        raise cannot_resume(outdir, "last.pt", "missing beside results.json") from None
    except DamagedFile as err:
        raise cannot_resume(outdir, "last.pt", err) from err
    if stored["config"] != config:
        diff = sorted(k for k in config if stored["config"].get(k) != config[k])
        raise ValueError(f"cannot resume {outdir}: its config differs in "
                         f"{', '.join(diff or sorted(stored['config']))}")
    try:
        check_progress(snap, stored, cfg.total_epochs, cfg.estimators)
    except DamagedFile as err:
        raise cannot_resume(outdir, "last.pt", err) from err
    path = outdir / "results.json"
    try:
        shown = parse_results(regular_file(path, "results file").read_bytes())
        if shown["config"] != config:
            raise DamagedFile("its config is not that of last.pt")
        if len(shown["epochs"]) not in (snap["epoch"], snap["epoch"] + 1):
            raise DamagedFile(f"its {len(shown['epochs'])} records do not follow last.pt's "
                              f"epoch {snap['epoch']}")
    except FileNotFoundError:
        pass  # killed after epoch 0's last.pt: written again after the next epoch
    except ValueError as err:  # DamagedFile, or not a regular file
        raise cannot_resume(outdir, "results.json", err) from err
    return snap, stored["epochs"]


def holds_run(outdir: Path) -> bool:
    """Whether ``outdir`` holds a run: ``last.pt`` is written first, results.json after."""
    return any((outdir / name).exists() for name in ("last.pt", "results.json"))


def lock(outdir: Path) -> int:
    """Hold ``outdir/.lock`` for this run; its descriptor, to be closed at the run's end.

    ``flock`` conflicts between any two open descriptions of the file, in one process or
    two, and the kernel drops it when its holder dies: a lock left by a killed run is
    taken over without a word.

    Raises
    ------
    ValueError
        If another run holds the lock, or ``.lock`` is not a regular file.
    """
    import fcntl  # POSIX; imported here so that the rest of momos imports anywhere

    path = outdir / ".lock"
    # O_NONBLOCK: opening a FIFO planted there must not hang; on a regular file it is moot.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o666)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            holder = holder if holder.isdigit() else "unknown"  # written, or being written
            raise ValueError(f"{outdir} is in use by another run (pid {holder}); wait for it "
                             "or choose another output directory (--out)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    except BaseException:
        os.close(fd)
        raise
    return fd
