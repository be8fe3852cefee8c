"""Train a model with or without MoMos and measure its complexity after every epoch.

One :func:`train` call is one run of the paper's experiment (``MOMOS.md``): a model from
:mod:`momos.models` on a dataset from :mod:`momos.data`, trained with one of
:data:`METHODS`:

- ``baseline``: plain training;
- ``qat``: fake quantization of module weights at ``q`` bits (:func:`momos.attach_qat`);
- ``momos``: one MoMos projection after every epoch (after the optimizer steps, before
  validation), or after every step with ``project_every="step"``;
- ``momos+qat``: both; the projection acts on the latent float weights.

Epoch 0 is the untouched initialization. At epoch 0 and after every epoch the run records
loss and accuracy on train (the epoch's running mean; at epoch 0 an evaluation), validation
and test, the sparsity and L2 norm of the weight vector, and its complexity in bits with
kcomplex's estimators (BDM of the binarized weights, the paper's setting; gzip, bz2, lzma).
The weight vector is what the network computes with: every trainable parameter in the
plain model's ``parameters()`` order, the fake-quantized value for quantized weights. At the
end, MoMos runs report the exact description length from a real encoding
(:func:`momos.encode`), beside the paper's bound and the trivial ``32 n`` bits.

The output directory holds ``results.json`` (rewritten atomically after every epoch),
``init``/``best``/``final`` checkpoints as ``.safetensors`` (the evaluated weights and the
buffers, under the plain model's names; ``best`` is the highest validation accuracy,
earliest on ties), ``best.momos``/``final.momos`` for MoMos runs, and ``last.pt``, the full
training state that ``resume=True`` continues from, bit-identically on CPU.

Under ``torch.distributed`` (an initialized process group, or the variables that ``torchrun``
sets) the run is data-parallel with ``DistributedDataParallel``: every rank trains on its
shard of each batch, the weights, bank and mosaic are rank 0's after every projection, and
rank 0 alone measures and writes; see :func:`train`.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist
from torch import nn

from ._distributed import Ranks, from_lead, join_group, resolve_device
from .blocks import layout_of, pool_parameters
from .bounds import bound_bits, motif_count
from .codec import description_length, encode, write_atomic
from .data import DATASETS, Splits, load_dataset
from .models import MODELS, build_model
from .projection import MoMos
from .qat import attach_qat

__all__ = ["METHODS", "RESULTS_FORMAT", "TrainConfig", "load_results", "train"]

#: Training methods accepted by :class:`TrainConfig`.
METHODS = ("baseline", "qat", "momos", "momos+qat")

#: Value of ``results["format"]``; bumped when the layout of ``results.json`` changes.
RESULTS_FORMAT = "momos-train/1"

_OPTIMIZERS = ("adamw", "sgd")
_PROJECT_EVERY = ("epoch", "step")
_DEVICES = ("auto", "cpu", "cuda")
# Per-model defaults of MOMOS.md: (optimizer, lr, weight decay).
_DEFAULTS = {"resnet20": ("sgd", 0.1, 1e-4), "mlp": ("adamw", 3e-4, 1e-2), "vit": ("adamw", 3e-4, 1e-2)}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run; stored in ``results.json``.

    Parameters
    ----------
    model : str
        A name of :data:`momos.MODELS` (``mlp``, ``resnet20``, ``vit``).
    dataset : str
        A name of :data:`momos.DATASETS`; ``digits`` is embedded, the others are read
        from ``data_dir``.
    method : str
        One of :data:`METHODS`.
    s : int
        Block size (MoMos methods).
    capacity : float, optional
        ``k/m`` (MoMos methods); give it or ``k``. Default 0.05 when neither is given.
    k : int, optional
        Number of motifs instead of ``capacity``.
    q : int
        QAT bit width (``qat`` and ``momos+qat``), >= 2.
    force_zero : bool
        Motif 0 is the all-zero block.
    project_every : {"epoch", "step"}
        One projection after every epoch (the reference) or after every optimizer step.
    epochs : int
        Number of training epochs (>= 0; 0 only measures the initialization).
    batch_size : int
        Training batch size.
    optimizer : {"adamw", "sgd"}, optional
        Default per model (MOMOS.md): SGD with momentum for ResNet-20, AdamW otherwise.
    lr, weight_decay : float, optional
        Defaults per model: SGD 0.1 / 1e-4, AdamW 3e-4 / 1e-2.
    momentum : float
        SGD momentum.
    schedule : {"cosine", "constant"}
        Learning rate over epochs; cosine annealing to 0 at the last epoch.
    seed : int
        Seeds the initialization, the data order, the data split and the motif sampling.
    device : {"auto", "cpu", "cuda"}
        ``auto`` picks CUDA when available.
    data_dir : str, optional
        Directory of the dataset files (not needed for ``digits``).
    estimators : tuple of str
        kcomplex estimators measured at every epoch (default: the paper's).

    Raises
    ------
    ValueError
        On any invalid field, naming it.
    """

    model: str = "mlp"
    dataset: str = "digits"
    method: str = "baseline"
    s: int = 2
    capacity: float | None = None
    k: int | None = None
    q: int = 8
    force_zero: bool = True
    project_every: str = "epoch"
    epochs: int = 30
    batch_size: int = 128
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    schedule: str = "cosine"
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    estimators: tuple[str, ...] = ("bdm", "gzip", "bz2", "lzma")

    def __post_init__(self) -> None:
        def check(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(what)

        check(self.model in MODELS, f"unknown model {self.model!r}; valid: {', '.join(MODELS)}")
        check(self.dataset in DATASETS,
              f"unknown dataset {self.dataset!r}; valid: {', '.join(DATASETS)}")
        check(self.method in METHODS, f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        for name in ("s", "batch_size"):
            value = getattr(self, name)
            check(_is_int(value) and value >= 1, f"{name} must be a positive integer, got {value!r}")
        check(_is_int(self.epochs) and self.epochs >= 0,
              f"epochs must be an integer >= 0, got {self.epochs!r}")
        check(_is_int(self.seed) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        check(_is_int(self.q) and self.q >= 2, f"QAT bits q must be an integer >= 2, got {self.q!r}")
        check(self.capacity is None or self.k is None, "give capacity or k, not both")
        if self.capacity is None and self.k is None:
            object.__setattr__(self, "capacity", 0.05)
        check(self.capacity is None or 0 < self.capacity <= 1,
              f"capacity must lie in (0, 1], got {self.capacity!r}")
        check(self.k is None or (_is_int(self.k) and self.k >= 1),
              f"k must be a positive integer, got {self.k!r}")
        check(self.project_every in _PROJECT_EVERY,
              f"project_every must be one of {_PROJECT_EVERY}, got {self.project_every!r}")
        check(self.optimizer is None or self.optimizer in _OPTIMIZERS,
              f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")
        check(self.schedule in ("cosine", "constant"),
              f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        check(self.device in _DEVICES, f"device must be one of {_DEVICES}, got {self.device!r}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            check(value is None or (math.isfinite(value) and value >= 0),
                  f"{name} must be a finite number >= 0, got {value!r}")
        check(0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum!r}")
        object.__setattr__(self, "estimators", tuple(self.estimators))

    @property
    def uses_momos(self) -> bool:
        """True for ``momos`` and ``momos+qat``."""
        return self.method.startswith("momos")

    @property
    def uses_qat(self) -> bool:
        """True for ``qat`` and ``momos+qat``."""
        return self.method.endswith("qat")

    def resolved(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, per-model defaults filled in."""
        opt, lr, wd = _DEFAULTS[self.model]
        out = dataclasses.asdict(self)
        out["optimizer"] = self.optimizer or opt
        out["lr"] = lr if self.lr is None else self.lr
        out["weight_decay"] = wd if self.weight_decay is None else self.weight_decay
        out["estimators"] = list(self.estimators)
        return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -------------------------------------------------------------------------- the run's state


class _Run:
    """Model, optimizer, schedule, projector and data of one run, and their checkpoints.

    ``self.model`` is the plain module (evaluated, projected, checkpointed); ``self.net`` is
    what the training steps call: the module itself, or its DDP wrapper on several ranks.
    """

    def __init__(self, cfg: TrainConfig, splits: Splits, device: torch.device,
                 ranks: Ranks | None = None) -> None:
        self.cfg, self.device, self.ranks = cfg, device, ranks
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, splits.in_shape, splits.classes).to(device)
        # The plain names and Parameter objects, fixed before QAT renames and reorders them.
        self.params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        if cfg.uses_qat:
            attach_qat(self.model, cfg.q)
        self.net: nn.Module = self.model
        if ranks is not None:
            # Wrapped after QAT so that DDP hooks the latent weights the optimizer steps.
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.init_state = self.state()
        self.momos = (MoMos(cfg.s, k=cfg.k, capacity=cfg.capacity, force_zero=cfg.force_zero,
                            seed=cfg.seed) if cfg.uses_momos else None)
        res = cfg.resolved()
        if res["optimizer"] == "sgd":
            self.opt: torch.optim.Optimizer = torch.optim.SGD(
                self.params.values(), lr=res["lr"], momentum=cfg.momentum,
                weight_decay=res["weight_decay"])
        else:
            self.opt = torch.optim.AdamW(self.params.values(), lr=res["lr"],
                                         weight_decay=res["weight_decay"])
        self.sched = (torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(cfg.epochs, 1))
                      if cfg.schedule == "cosine" else None)
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.epoch_lr = float(res["lr"])
        self.data = {name: tuple(t.to(device) for t in getattr(splits, name).tensors)
                     for name in ("train", "val", "test")}

    # -- weights -------------------------------------------------------------------------

    def weights(self) -> dict[str, torch.Tensor]:
        """The evaluated weight of every trainable parameter, plain names, plain order."""
        out = {}
        for name in self.params:
            owner, _, attr = name.rpartition(".")
            out[name] = getattr(self.model.get_submodule(owner), attr).detach()
        return out

    def state(self) -> dict[str, torch.Tensor]:
        """Evaluated weights and buffers as fresh CPU tensors (a checkpoint)."""
        out = {n: w.cpu().clone() for n, w in self.weights().items()}
        out.update((n, b.detach().cpu().clone()) for n, b in self.model.named_buffers())
        return out

    def codec_source(self):
        """(state dict, (bank, mosaic, layout)) for the codec, under the plain names.

        The projector pools ``model.parameters()`` (the QAT order for ``momos+qat``); the
        pooled tensors are the very ``Parameter`` objects of ``self.params``, so only the
        span names change here, and the stream holds the latent float weights in pool order.
        """
        mm = self.momos
        plain = {id(p): n for n, p in self.params.items()}
        pooled = pool_parameters(self.model)
        spans = tuple(dataclasses.replace(sp, name=plain[id(t)])
                      for sp, (_, t) in zip(mm.layout.spans, pooled))
        layout = dataclasses.replace(mm.layout, spans=spans)
        state = {n: p.detach().cpu() for n, p in self.params.items()}
        return state, (mm.motifs.cpu(), mm.mosaic.cpu(), layout)

    # -- steps ---------------------------------------------------------------------------

    def project(self) -> dict[str, Any]:
        stats = self.momos.project(self.model)
        if self.ranks is not None:
            self._share_projection()
        return {"k": stats.k, "distortion": stats.distortion, "changed": stats.changed}

    def _share_projection(self) -> None:
        """Rank 0's projected weights, bank and mosaic, copied onto every rank.

        Every rank has just projected identical weights with an identically seeded
        generator, so this changes nothing unless the ranks drifted apart (kernels that
        differ between devices, say); it makes identical weights on every rank a guarantee
        rather than an assumption. Its cost is one broadcast of the weights, like DDP's
        all-reduce of one step's gradients: small beside an epoch of steps, and about
        doubling the communication with ``project_every="step"``.
        """
        mm = self.momos
        tensors = [t for _, t in pool_parameters(self.model)]
        # The projection checked that the pooled tensors and the bank share one dtype and
        # device, so they travel as one buffer.
        flat = torch.cat([t.detach().reshape(-1) for t in tensors] + [mm.motifs.reshape(-1)])
        mosaic = mm.mosaic.contiguous()
        dist.broadcast(flat, src=0)
        dist.broadcast(mosaic, src=0)
        parts = flat.split([t.numel() for t in tensors] + [mm.motifs.numel()])
        with torch.no_grad():
            for t, part in zip(tensors, parts):
                t.copy_(part.view_as(t))
        mm.motifs, mm.mosaic = parts[-1].view_as(mm.motifs).clone(), mosaic

    def train_epoch(self) -> tuple[float, float, dict | None]:
        x, y = self.data["train"]
        self.net.train()
        self.epoch_lr = self.opt.param_groups[0]["lr"]  # before the scheduler steps
        # The same seeded permutation on every rank: each takes its shard of each batch.
        order = torch.randperm(len(y), generator=self.data_gen).to(self.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        projection = None
        for start in range(0, len(y), self.cfg.batch_size):
            idx = order[start : start + self.cfg.batch_size]
            mine = (idx if self.ranks is None
                    else idx.tensor_split(self.ranks.world)[self.ranks.rank])
            logits = self.net(x[mine])
            if self.ranks is None:
                loss = nn.functional.cross_entropy(logits, y[idx])
                seen = loss.detach().double() * len(idx)
            else:
                seen = nn.functional.cross_entropy(logits, y[mine], reduction="sum")
                # DDP averages the ranks' gradients; scaled by world/batch, that average is
                # the gradient of the whole batch's mean loss, whatever the shard sizes.
                loss = seen * (self.ranks.world / len(idx))
                seen = seen.detach().double()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            loss_sum += seen
            correct += (logits.detach().argmax(1) == y[mine]).sum()
            if self.momos is not None and self.cfg.project_every == "step":
                projection = self.project()
        if self.ranks is not None:
            dist.all_reduce(loss_sum)
            dist.all_reduce(correct)
        if self.momos is not None and self.cfg.project_every == "epoch":
            projection = self.project()
        if self.sched is not None:
            self.sched.step()
        return float(loss_sum) / max(len(y), 1), int(correct) / max(len(y), 1), projection

    @torch.no_grad()
    def evaluate(self, split: str) -> tuple[float, float]:
        x, y = self.data[split]
        if len(y) == 0:
            return math.nan, math.nan
        self.model.eval()
        loss_sum, correct = 0.0, 0
        for start in range(0, len(y), 1024):
            logits = self.model(x[start : start + 1024])
            loss_sum += float(nn.functional.cross_entropy(logits, y[start : start + 1024],
                                                          reduction="sum"))
            correct += int((logits.argmax(1) == y[start : start + 1024]).sum())
        return loss_sum / len(y), correct / len(y)

    # -- resumable state -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        mm = self.momos
        return {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict() if self.sched is not None else {},
            "data_gen": self.data_gen.get_state(),
            # Dropout (none in the default models) draws from torch's global generator.
            "torch_rng": torch.get_rng_state(),
            "momos_gen": (mm._generator.get_state() if mm is not None else torch.empty(0)),
            "bank": (mm.motifs.cpu() if mm is not None and mm.motifs is not None else torch.empty(0)),
            "mosaic": (mm.mosaic.cpu() if mm is not None and mm.mosaic is not None
                       else torch.empty(0, dtype=torch.int64)),
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])
        self.opt.load_state_dict(snap["opt"])
        if self.sched is not None:
            self.sched.load_state_dict(snap["sched"])
        self.data_gen.set_state(snap["data_gen"])
        torch.set_rng_state(snap["torch_rng"])
        mm = self.momos
        if mm is not None:
            mm._generator.set_state(snap["momos_gen"])
            if snap["bank"].numel():
                mm.motifs = snap["bank"].to(self.device)
                mm.mosaic = snap["mosaic"].to(self.device)
                mm.layout = layout_of(pool_parameters(self.model), mm.s)


# ---------------------------------------------------------------------------- measurement


def _complexity(weights: Mapping[str, torch.Tensor], estimators: tuple[str, ...]) -> dict:
    """Sparsity, L2 norm and kcomplex bits of the whole weight vector."""
    from kcomplex import analyze

    host = {k: w.cpu() for k, w in weights.items()}
    flat = torch.cat([w.reshape(-1).float() for w in host.values()])
    total = analyze(host, list(estimators), per_tensor=False, progress=False).total
    out = {"sparsity": float((flat == 0).double().mean()),
           "l2": float(torch.linalg.vector_norm(flat.double()))}
    out["complexity"] = {f"{e}_bits": float(total[f"{e}_bits"]) for e in estimators}
    return out


def _description(run: _Run) -> dict[str, Any]:
    """Exact description length (MoMos runs) or the raw float32 code, with the bound."""
    cfg = run.cfg
    n = sum(p.numel() for p in run.params.values())
    if run.momos is None or run.momos.motifs is None:  # no MoMos, or never projected
        q = cfg.q if cfg.uses_qat else 32
        return {"coded": "raw float32", "total_bits": 32 * n, "bound_bits": n * q,
                "trivial_bits": 32 * n, "rac_exact": 1.0, "rac_bound": 32 / q}
    state, bank = run.codec_source()
    dl = description_length(state, bank, q=32)
    out = {key: value for key, value in dataclasses.asdict(dl).items() if key != "tensors"}
    out["mosaic_bits"] = dl.mosaic_bits
    out["coded"] = "momos q=32"
    if cfg.uses_qat:
        # The paper's bound stores the bank at the QAT width; our stream keeps the latent
        # float32 bank, from which the quantized weights follow deterministically.
        out["bound_bits"] = bound_bits(n, cfg.s, k=bank[0].shape[0], q=cfg.q)
        out["rac_bound"] = dl.trivial_bits / out["bound_bits"]
    return out


# ------------------------------------------------------------------------------- the loop


def _save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    write_atomic(path, save({k: v.contiguous() for k, v in tensors.items()}))


def _write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1, allow_nan=True).encode("utf-8"))


def load_results(path: str | Path) -> dict[str, Any]:
    """Read ``results.json`` from a run directory (or the file itself).

    Raises
    ------
    FileNotFoundError
        If there is no ``results.json``.
    ValueError
        If the file is not a results file of this format.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    results = json.loads(path.read_text())
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a momos results file (format {RESULTS_FORMAT!r})")
    return results


def train(
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train one run and measure it at initialization and after every epoch.

    Parameters
    ----------
    config : TrainConfig, optional
        The run; keyword ``overrides`` replace its fields (or build one from defaults).
    out : str or Path, optional
        Output directory (created). Without it nothing is written and ``resume`` is
        unavailable. A directory that already holds a run is an error unless ``resume``.
    resume : bool
        Continue the run in ``out`` from its last completed epoch (``last.pt``); its
        config must equal ``config``. If ``out`` holds no run yet, start one.
    progress : bool, optional
        A progress bar over epochs on stderr; default: only when stderr is a terminal.
    callback : callable, optional
        Called with each epoch's record right after ``results.json`` is written; on
        several processes, on every rank with rank 0's record.

    Returns
    -------
    dict
        The content of ``results.json``: ``format``, ``config`` (defaults resolved),
        ``model`` (``n_params``, and ``m``/``k`` for MoMos), ``epochs`` (one record per
        epoch 0..E with ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``,
        ``test_loss``, ``test_acc``, ``lr`` (the rate the epoch trained with; at epoch 0 the
        initial rate), ``sparsity``, ``l2``, ``complexity``
        (``<estimator>_bits``), ``projection`` (MoMos: ``k``, ``distortion``, ``changed``)
        and ``seconds``), ``summary`` (``test_acc``, ``best_epoch``, ``best_val_acc``,
        ``best_test_acc``, ``complexity_ratio`` trained/init per estimator,
        ``description_length`` with ``total_bits``, ``bound_bits``, ``trivial_bits``;
        for MoMos also ``motif_counts``) and ``status`` (``running`` or ``finished``).
        Identical on every rank of a data-parallel run.

    Raises
    ------
    ValueError
        Bad config, a resume with a different config, ``out`` already holding a run; on
        several processes also a ``batch_size`` below the number of processes, or CUDA
        with fewer visible devices than processes per machine. Errors of rank 0's reading
        and writing are raised on every rank.

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
      wait for it, call ``callback`` with its record and return its results. Resume:
      rank 0 reads ``last.pt`` and broadcasts it, so the ranks need not share a disk.
    - The results are not bit-identical to a one-process run (sums over the batch are
      split and added in another order), but two runs with the same number of ranks are.

    Examples
    --------
    >>> res = train(method="momos", epochs=1, estimators=("bdm",), progress=False)
    >>> [e["epoch"] for e in res["epochs"]], res["status"]
    ([0, 1], 'finished')
    >>> dl = res["summary"]["description_length"]
    >>> dl["total_bits"] < dl["trivial_bits"]
    True
    """
    cfg = dataclasses.replace(config, **overrides) if config is not None else TrainConfig(**overrides)
    outdir = Path(out) if out is not None else None
    return _train(cfg, outdir, resume, progress, callback, join_group(cfg.device))


def _train(cfg: TrainConfig, outdir: Path | None, resume: bool, progress: bool | None,
           callback: Callable[[dict[str, Any]], None] | None,
           ranks: Ranks | None) -> dict[str, Any]:
    """The body of :func:`train`; ``ranks`` is None in one process."""
    lead = ranks is None or ranks.lead
    if ranks is not None and cfg.batch_size < ranks.world:
        raise ValueError(f"batch_size {cfg.batch_size} is smaller than the {ranks.world} "
                         "processes: every rank needs part of every batch")

    def prepare_out() -> None:
        if outdir is not None:
            outdir.mkdir(parents=True, exist_ok=True)
            if (outdir / "results.json").exists() and not resume:
                raise ValueError(f"{outdir} already holds a run; pass resume=True (--resume) "
                                 "to continue it, or choose another output directory")

    from_lead(ranks, prepare_out)
    device = resolve_device(cfg.device) if ranks is None else ranks.device
    splits = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed)
    run = _Run(cfg, splits, device, ranks)
    n = sum(p.numel() for p in run.params.values())
    info: dict[str, Any] = {"n_params": n}
    if cfg.uses_momos:
        m = sum(-(-p.numel() // cfg.s) for p in run.params.values() if p.numel())
        info.update(m=m, k=motif_count(m, cfg.k, cfg.capacity))
    results: dict[str, Any] = {"format": RESULTS_FORMAT, "config": cfg.resolved(),
                               "model": info, "epochs": [], "summary": {}, "status": "running"}
    best = {"epoch": -1, "val_acc": -math.inf}
    last = outdir / "last.pt" if outdir is not None else None

    def resume_or_start() -> tuple[dict[str, Any], list[dict]] | None:
        """(the state of ``last.pt``, its epochs), or None after writing the init."""
        if resume and last is not None and last.exists():
            # Several processes: read on the CPU, to be broadcast and then moved to each
            # rank's own device.
            snap = torch.load(last, map_location=device if ranks is None else "cpu",
                              weights_only=True)
            stored = load_results(outdir)
            if stored["config"] != results["config"]:
                diff = sorted(k for k in results["config"]
                              if stored["config"].get(k) != results["config"][k])
                raise ValueError(f"cannot resume {outdir}: its config differs in "
                                 f"{', '.join(diff)}")
            return snap, stored["epochs"][: int(snap["epoch"]) + 1]
        if outdir is not None:
            _save_tensors(outdir / "init.safetensors", run.init_state)
        return None

    resumed = from_lead(ranks, resume_or_start)
    if resumed is not None:
        snap, results["epochs"] = resumed
        run.restore(snap)
        best = {"epoch": int(snap["best_epoch"]), "val_acc": float(snap["best_val_acc"])}

    def finish_epoch(record: dict[str, Any]) -> dict[str, Any]:
        results["epochs"].append(record)
        epoch = record["epoch"]
        if record["val_acc"] > best["val_acc"]:
            best.update(epoch=epoch, val_acc=record["val_acc"])
            if outdir is not None:
                _save_tensors(outdir / "best.safetensors", run.state())
                if run.momos is not None and run.momos.motifs is not None:
                    write_atomic(outdir / "best.momos", encode(*run.codec_source()))
        if outdir is not None:
            snap = run.snapshot()
            snap.update(epoch=epoch, best_epoch=best["epoch"], best_val_acc=best["val_acc"])
            buf = io.BytesIO()
            torch.save(snap, buf)
            write_atomic(last, buf.getvalue())
            _write_json(outdir / "results.json", results)
        return record

    def measure(epoch: int, train_loss: float, train_acc: float, projection, seconds: float):
        record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
        for split in ("val", "test"):
            record[f"{split}_loss"], record[f"{split}_acc"] = run.evaluate(split)
        record["lr"] = run.epoch_lr if epoch > 0 else run.opt.param_groups[0]["lr"]
        record.update(_complexity(run.weights(), cfg.estimators))
        record["projection"] = projection
        record["seconds"] = seconds
        return record

    def lead_epoch(epoch: int, train_loss: float | None, train_acc: float | None,
                   projection, seconds: float) -> dict[str, Any]:
        """Rank 0's part of an epoch: measure, write; epoch 0 evaluates the train split."""
        if epoch == 0:
            train_loss, train_acc = run.evaluate("train")
        return finish_epoch(measure(epoch, train_loss, train_acc, projection, seconds))

    def close_epoch(*args: Any) -> dict[str, Any]:
        record = from_lead(ranks, functools.partial(lead_epoch, *args))
        if not lead:
            results["epochs"].append(record)
        if callback is not None:
            callback(record)
        return record

    if not results["epochs"]:
        close_epoch(0, None, None, None, 0.0)

    bar = _progress_bar(progress, cfg, len(results["epochs"]) - 1) if lead else None
    try:
        for epoch in range(len(results["epochs"]), cfg.epochs + 1):
            t0 = time.perf_counter()
            loss, acc, projection = run.train_epoch()
            record = close_epoch(epoch, loss, acc, projection, time.perf_counter() - t0)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", val_acc=f"{record['val_acc']:.3f}")
    finally:
        if bar is not None:
            bar.close()

    def finish() -> dict[str, Any]:
        results["summary"] = _summary(run, results["epochs"], best)
        results["status"] = "finished"
        if outdir is not None:
            _save_tensors(outdir / "final.safetensors", run.state())
            if run.momos is not None and run.momos.motifs is not None:
                write_atomic(outdir / "final.momos", encode(*run.codec_source()))
            _write_json(outdir / "results.json", results)
        return results

    return from_lead(ranks, finish)


def _progress_bar(progress: bool | None, cfg: TrainConfig, done: int):
    import sys

    from tqdm.auto import tqdm

    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    return tqdm(total=cfg.epochs, initial=done, desc=f"{cfg.method} {cfg.model}/{cfg.dataset}",
                unit="epoch", leave=False)


def _summary(run: _Run, epochs: list[dict], best: dict) -> dict[str, Any]:
    first, final = epochs[0], epochs[-1]
    out: dict[str, Any] = {
        "test_acc": final["test_acc"],
        "val_acc": final["val_acc"],
        "best_epoch": best["epoch"],
        "best_val_acc": best["val_acc"],
        "best_test_acc": epochs[best["epoch"]]["test_acc"],
        "complexity_ratio": {
            key.removesuffix("_bits"): final["complexity"][key] / first["complexity"][key]
            for key in final["complexity"] if first["complexity"][key] > 0},
        "description_length": _description(run),
    }
    if run.momos is not None:
        if run.momos.mosaic is not None:
            counts = torch.bincount(run.momos.mosaic.cpu(), minlength=run.momos.motifs.shape[0])
            out["motif_counts"] = counts.tolist()
        else:  # epochs=0: never projected
            out["motif_counts"] = []
    return out
