"""Train a model with or without MoMos and measure its complexity after every epoch.

One :func:`train` call is one run of the paper's experiment (``docs/method.md``): a model from
:mod:`momos.models` on a dataset from :mod:`momos.data`, trained with one of
:data:`METHODS`:

- ``baseline``: plain training;
- ``qat``: fake quantization of module weights at ``q`` bits (:func:`momos.attach_qat`);
- ``momos``: one MoMos projection after every epoch (after the optimizer steps, before
  validation), or after every step with ``project_every="step"``;
- ``ptq``: trained as the baseline; every evaluation, and the weights the run reports and
  stores, are the post-training quantization of the float weights at ``q`` bits
  (:func:`momos.ptq.post_training_quantize`, uniform or k-means levels);
- ``momos+qat``: both MoMos and QAT; the projection acts on the latent float weights, and
  the bank is quantized at ``bank_q`` bits (default ``q``) so the codec stores it exactly.

Epoch 0 is the untouched initialization. At epoch 0 and after every epoch the run records
loss and accuracy on train (the epoch's running mean; at epoch 0 an evaluation), validation
and test, the sparsity and L2 norm of the weight vector, and its complexity in bits with
kcomplex's estimators (BDM of the binarized weights, the paper's setting; gzip, bz2, lzma).
The weight vector is what the network computes with: every trainable parameter in the
plain model's ``parameters()`` order, the fake-quantized value for quantized weights. At the
end, every run reports the exact description length of those weights from a real encoding
(:func:`momos.encode`: the MoMos bank and mosaic, or each tensor's shortest exact code),
beside the paper's bound and the trivial ``32 n`` bits.

The output directory holds ``results.json`` (rewritten atomically after every epoch),
``init``/``best``/``final`` checkpoints as ``.safetensors`` (the evaluated weights and the
buffers, under the plain model's names; ``best`` is the highest validation accuracy,
earliest on ties), ``best.momos``/``final.momos`` (their exact codes), and ``last.pt``, the full
training state that ``resume=True`` continues from, bit-identically on CPU. ``last.pt`` also
holds the records up to its epoch: it is the one file whose writing completes an epoch, so
a run killed between any two writes resumes exactly. ``.lock`` keeps a second run out of
the directory while one is using it.

Under ``torch.distributed`` (an initialized process group, or the variables that ``torchrun``
sets) the run is data-parallel with ``DistributedDataParallel``: every rank trains on its
shard of each batch, the weights, bank and mosaic are rank 0's after every projection, and
rank 0 alone measures and writes; see :func:`train`.

This module's one job is the run's course: take the directory, start or resume, run the
epochs and write the files in the order that makes every epoch's commit. What a run is
lives in :mod:`momos.config`, its model and measurements in :mod:`momos.runstate`, the
lock and the checks of ``last.pt`` in :mod:`momos.checkpoint`, and the typed result with
its ``results.json`` layout in :mod:`momos.results`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from kcomplex.files import regular_file, write_atomic

from ._distributed import Ranks, from_lead, join_group, resolve_device
from .checkpoint import STATE_FORMAT, cannot_resume, holds_run, lock, resume_state, state_bytes
from .codec import encode
from .config import METHODS, TrainConfig
from .data import load_dataset
from .results import RESULTS_FORMAT, DamagedFile, EpochRecord, RunResult, load_results
from .runstate import RunState

# METHODS, RESULTS_FORMAT, TrainConfig and load_results live in the modules of their jobs;
# they stay importable from here, where users of momos.train have always found them.
__all__ = ["METHODS", "RESULTS_FORMAT", "TrainConfig", "load_results", "train"]


def _save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    write_atomic(path, save({k: v.contiguous() for k, v in tensors.items()}))


def train(
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    **overrides: Any,
) -> RunResult:
    """Train one run and measure it at initialization and after every epoch.

    Parameters
    ----------
    config : TrainConfig, optional
        The run; keyword ``overrides`` replace its fields (or build one from defaults).
    out : str or Path, optional
        Output directory (created). Without it nothing is written and ``resume`` is
        unavailable. A directory that already holds a run is an error unless ``resume``.
        The run holds ``out/.lock`` (an ``flock`` with its pid inside) for its whole life;
        a lock left by a process that died is taken over.
    resume : bool
        Continue the run in ``out`` from its last completed epoch (``last.pt``); its
        config must equal ``config``. If ``out`` holds no run yet, start one. Wherever the
        previous process was killed, the resumed run ends with the same results and
        checkpoints as an uninterrupted one (bit-identical on CPU, ``seconds`` aside).
    progress : bool, optional
        A progress bar over epochs on stderr; default: only when stderr is a terminal.
    callback : callable, optional
        Called with each epoch's record right after ``results.json`` is written; on
        several processes, on every rank with rank 0's record.

    Returns
    -------
    RunResult
        The run's result, what ``results.json`` holds (``to_dict()`` gives the file's
        content): ``config`` (defaults resolved), ``model`` (``n_params``, and ``m``/``k``
        for MoMos), ``epochs`` (one :class:`~momos.results.EpochRecord` per epoch 0..E with
        ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``test_loss``,
        ``test_acc``, ``lr`` (the rate the epoch trained with; at epoch 0 the initial rate),
        ``sparsity``, ``l2``, ``complexity`` (``<estimator>_bits``), ``projection`` (MoMos:
        ``k``, ``distortion``, ``changed``) and ``seconds``), ``summary`` (``test_acc``,
        ``best_epoch``, ``best_val_acc``, ``best_test_acc``, ``complexity_ratio``
        trained/init per estimator, ``description_length`` with ``total_bits``,
        ``bound_bits``, ``trivial_bits``; for MoMos also ``motif_counts``) and ``status``
        (``running`` or ``finished``). Identical on every rank of a data-parallel run.

    Raises
    ------
    ValueError
        Bad config, a resume with a different config, ``out`` already holding a run,
        ``out`` in use by another run, or a resume from a damaged run directory (the
        message names the file and the fix); on several processes also a ``batch_size``
        below the number of processes, or CUDA with fewer visible devices than processes
        per machine. Errors of rank 0's reading and writing are raised on every rank.

    Notes
    -----
    **Several processes.** When ``torch.distributed`` has an initialized process group of
    two or more ranks, or the variables of ``torchrun`` (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``) give ``WORLD_SIZE >= 2``, the run is data-parallel.
    A group started here (gloo on CPU; nccl on CUDA with ``cuda:LOCAL_RANK``) serves the
    later calls in the same process too, and is destroyed at exit.

    - Every rank draws the same seeded permutation of the training set each epoch and
      trains on its part of each batch (``torch.tensor_split``: the parts differ in size
      by at most one when the batch is not divisible by the number of ranks, and a batch
      smaller than that leaves some ranks an empty part). The loss of a part is its sum
      scaled by ``world / batch``, so DDP's average of the gradients is exactly the
      gradient of the batch mean, as in one process. Batch-norm statistics are those of
      each rank's part (no ``SyncBatchNorm``); DDP copies rank 0's buffers to every rank.
    - After every projection, rank 0's weights, bank and mosaic are broadcast, so the
      ranks hold identical weights (also with ``project_every="step"``).
    - Rank 0 alone evaluates, measures the complexity and writes the files; the others
      wait for it, call ``callback`` with its record and return its results. Rank 0
      alone holds the lock. Resume: rank 0 reads ``last.pt`` and broadcasts it, so the
      ranks need not share a disk.
    - The results are not bit-identical to a one-process run (sums over the batch are
      split and added in another order), but two runs with the same number of ranks are.

    Examples
    --------
    >>> res = train(method="momos", epochs=1, estimators=("bdm",), progress=False)
    >>> [e.epoch for e in res.epochs], res.status
    ([0, 1], 'finished')
    >>> dl = res.summary.description_length
    >>> dl["total_bits"] < dl["trivial_bits"]
    True
    """
    cfg = (dataclasses.replace(config, **overrides) if config is not None
           else TrainConfig(**overrides))
    outdir = Path(out) if out is not None else None
    return _train(cfg, outdir, resume, progress, callback, join_group(cfg.device))


def _train(cfg: TrainConfig, outdir: Path | None, resume: bool, progress: bool | None,
           callback: Callable[[dict[str, Any]], None] | None,
           ranks: Ranks | None) -> RunResult:
    """The body of :func:`train`; ``ranks`` is None in one process."""
    if ranks is not None and cfg.batch_size < ranks.world:
        raise ValueError(f"batch_size {cfg.batch_size} is smaller than the {ranks.world} "
                         "processes: every rank needs part of every batch")

    held: list[int] = []  # rank 0's descriptor of the lock, once taken

    def prepare_out() -> None:
        if outdir is not None:
            outdir.mkdir(parents=True, exist_ok=True)
            held.append(lock(outdir))
            if not resume and holds_run(outdir):
                raise ValueError(f"{outdir} already holds a run; pass resume=True (--resume) "
                                 "to continue it, or choose another output directory")

    try:
        from_lead(ranks, prepare_out)
        return _Session(cfg, outdir, callback, ranks).run(resume, progress)
    finally:
        for fd in held:
            os.close(fd)


class _Session:
    """One run once rank 0 holds the output directory: its result so far, its best epoch,
    and the writes that commit every epoch.

    Every rank builds one; rank 0's methods measure and write (run through ``from_lead``),
    the others receive rank 0's records.
    """

    def __init__(self, cfg: TrainConfig, outdir: Path | None,
                 callback: Callable[[dict[str, Any]], None] | None,
                 ranks: Ranks | None) -> None:
        self.cfg, self.outdir, self.callback, self.ranks = cfg, outdir, callback, ranks
        self.lead = ranks is None or ranks.lead
        device = resolve_device(cfg.device) if ranks is None else ranks.device
        splits = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed)
        self.state = RunState(cfg, splits, device, ranks)
        self.result = RunResult(config=cfg.resolved(), model=self.state.model_info())
        self.best_epoch, self.best_val_acc = -1, -math.inf

    def run(self, resume: bool, progress: bool | None) -> RunResult:
        """Resume or start, train every remaining epoch, finish; the finished result."""
        resumed = from_lead(self.ranks, functools.partial(self._resume_or_start, resume))
        if resumed is not None:
            snap, records = resumed
            self.result.epochs = [EpochRecord.from_dict(r) for r in records]
            try:
                self.state.restore(snap)
            except DamagedFile as err:  # every rank holds the same state, so every rank raises
                raise cannot_resume(self.outdir, "last.pt", err) from err
            self.best_epoch = int(snap["best_epoch"])
            self.best_val_acc = float(snap["best_val_acc"])
        if not self.result.epochs:
            self._close_epoch(0, None, None, None, 0.0)
        bar = (_progress_bar(progress, self.cfg, len(self.result.epochs) - 1) if self.lead
               else None)
        try:
            for epoch in range(len(self.result.epochs), self.cfg.total_epochs + 1):
                t0 = time.perf_counter()
                loss, acc, projection = self.state.train_epoch(
                    finetune=epoch > self.cfg.epochs)
                record = self._close_epoch(epoch, loss, acc, projection,
                                           time.perf_counter() - t0)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", val_acc=f"{record.val_acc:.3f}")
        finally:
            if bar is not None:
                bar.close()
        return from_lead(self.ranks, self._finish)

    def _resume_or_start(self, resume: bool
                         ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """(the state of ``last.pt``, its records), or None after writing the init."""
        outdir = self.outdir
        if resume and outdir is not None and holds_run(outdir):
            return resume_state(outdir, self.result.config, self.cfg)
        if outdir is not None:
            _save_tensors(outdir / "init.safetensors", self.state.init_state)
        return None

    def _close_epoch(self, epoch: int, train_loss: float | None, train_acc: float | None,
                     projection: dict[str, Any] | None, seconds: float) -> EpochRecord:
        record = from_lead(self.ranks, functools.partial(
            self._lead_epoch, epoch, train_loss, train_acc, projection, seconds))
        if not self.lead:
            self.result.epochs.append(record)
        if self.callback is not None:
            self.callback(record.to_dict())
        return record

    def _lead_epoch(self, epoch: int, train_loss: float | None, train_acc: float | None,
                    projection: dict[str, Any] | None, seconds: float) -> EpochRecord:
        """Rank 0's part of an epoch: measure, write; epoch 0 evaluates the train split."""
        if epoch == 0:
            train_loss, train_acc = self.state.evaluate("train")
        record = self.state.record(epoch, train_loss, train_acc, projection, seconds)
        self.result.epochs.append(record)
        if record.val_acc > self.best_val_acc:
            self.best_epoch, self.best_val_acc = epoch, record.val_acc
            if self.outdir is not None:
                self._save_weights("best")
        if self.outdir is not None:
            # last.pt, holding the records, commits the epoch; results.json shows it.
            snap = self.state.snapshot()
            snap.update(format=STATE_FORMAT, epoch=epoch, best_epoch=self.best_epoch,
                        best_val_acc=self.best_val_acc,
                        results=json.dumps(self.result.to_dict(), allow_nan=True))
            write_atomic(self.outdir / "last.pt", state_bytes(snap))
            write_atomic(self.outdir / "results.json", self.result.to_json())
        return record

    def _save_weights(self, name: str) -> None:
        """``<name>.safetensors``; for a MoMos run also ``<name>.momos``, which needs this
        epoch's bank and mosaic (the other runs' ``best.momos`` is coded at the end from
        ``best.safetensors``: one encoding instead of one per better epoch)."""
        _save_tensors(self.outdir / f"{name}.safetensors", self.state.state())
        if self.state.momos is not None:
            write_atomic(self.outdir / f"{name}.momos", self.state.stream())

    def _finish(self) -> RunResult:
        result = self.result
        stream = self.state.stream()
        result.summary = self.state.summary(result.epochs, self.best_epoch, self.best_val_acc,
                                            stream)
        result.status = "finished"
        if self.outdir is not None:
            _save_tensors(self.outdir / "final.safetensors", self.state.state())
            write_atomic(self.outdir / "final.momos", stream)
            if self.state.momos is None:
                write_atomic(self.outdir / "best.momos", encode(self._best_weights()))
            write_atomic(self.outdir / "results.json", result.to_json())
        return result

    def _best_weights(self) -> dict[str, torch.Tensor]:
        """``best.safetensors`` in the order of the run's state (safetensors sorts names)."""
        from safetensors.torch import load

        best = load(regular_file(self.outdir / "best.safetensors", "checkpoint").read_bytes())
        return {name: best[name] for name in self.state.state()}


def _progress_bar(progress: bool | None, cfg: TrainConfig, done: int):
    import sys

    from tqdm.auto import tqdm

    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    return tqdm(total=cfg.total_epochs, initial=done,
                desc=f"{cfg.method} {cfg.model}/{cfg.dataset}", unit="epoch", leave=False)
