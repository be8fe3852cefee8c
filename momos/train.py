"""Train a model with or without MoMos and measure its complexity after every epoch.

One :func:`train` call is one run of the paper's experiment (``docs/method.md``): a model from
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
training state that ``resume=True`` continues from, bit-identically on CPU. ``last.pt`` also
holds the records up to its epoch: it is the one file whose writing completes an epoch, so
a run killed between any two writes resumes exactly. ``.lock`` keeps a second run out of
the directory while one is using it.

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
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist
from torch import nn

from kcomplex.files import regular_file, write_atomic
from kcomplex.validation import is_int

from ._distributed import Ranks, from_lead, join_group, resolve_device
from .blocks import layout_of, pool_parameters
from .bounds import bound_bits, motif_count
from .codec import description_length, encode
from .data import DATASETS, Splits, load_dataset
from .measure import complexity
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
# Value of ``last.pt``'s ``format``; /2 added the results that the state commits.
_STATE_FORMAT = "momos-train-state/2"
# The fields of an epoch's record that are numbers, besides ``epoch``.
_RECORD_NUMBERS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                   "lr", "sparsity", "l2", "seconds")
# Per-model defaults of the paper's experiments (docs/method.md): (optimizer, lr, weight decay).
_DEFAULTS = {
    "resnet20": ("sgd", 0.1, 1e-4),
    "mlp": ("adamw", 3e-4, 1e-2),
    "vit": ("adamw", 3e-4, 1e-2),
}


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
        Default per model (docs/method.md): SGD with momentum for ResNet-20, AdamW otherwise.
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
        check(self.method in METHODS,
              f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        for name in ("s", "batch_size"):
            value = getattr(self, name)
            check(is_int(value) and value >= 1,
                  f"{name} must be a positive integer, got {value!r}")
        check(is_int(self.epochs) and self.epochs >= 0,
              f"epochs must be an integer >= 0, got {self.epochs!r}")
        check(is_int(self.seed) and self.seed >= 0,
              f"seed must be an integer >= 0, got {self.seed!r}")
        check(is_int(self.q) and self.q >= 2,
              f"QAT bits q must be an integer >= 2, got {self.q!r}")
        check(self.capacity is None or self.k is None, "give capacity or k, not both")
        if self.capacity is None and self.k is None:
            object.__setattr__(self, "capacity", 0.05)
        check(self.capacity is None or 0 < self.capacity <= 1,
              f"capacity must lie in (0, 1], got {self.capacity!r}")
        check(self.k is None or (is_int(self.k) and self.k >= 1),
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
        # The projector's state travels as three tensors of last.pt, its config being the
        # run's; restore() rebuilds the state dict from them and the model.
        mm = self.momos.state_dict() if self.momos is not None else None
        return {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict() if self.sched is not None else {},
            "data_gen": self.data_gen.get_state(),
            # Dropout (none in the default models) draws from torch's global generator.
            "torch_rng": torch.get_rng_state(),
            "momos_gen": mm["generator"] if mm is not None else torch.empty(0),
            "bank": (mm["motifs"].cpu() if mm is not None and mm["motifs"] is not None
                     else torch.empty(0)),
            "mosaic": (mm["mosaic"].cpu() if mm is not None and mm["mosaic"] is not None
                       else torch.empty(0, dtype=torch.int64)),
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Continue from ``snap`` (a :meth:`snapshot` read back by :func:`_read_state`).

        Every part is checked against this run's own state before it is loaded, so that a
        damaged ``last.pt`` is refused here rather than failing, or silently training
        something else, epochs later.

        Raises
        ------
        _Damaged
            If a part does not fit this run, with the part named.
        """
        mm = self.momos
        _fits(self.model.state_dict(), snap["model"], "the model state")
        _fits({"param_groups": self.opt.state_dict()["param_groups"]},
              {"param_groups": snap["opt"].get("param_groups")}, "the optimizer state")
        _fits(self.sched.state_dict() if self.sched is not None else {}, snap["sched"],
              "the schedule state")
        _fits(self.data_gen.get_state(), snap["data_gen"], "the data order's generator")
        _fits(torch.get_rng_state(), snap["torch_rng"], "torch's generator")
        momos_state = mm.state_dict() if mm is not None else None
        _fits(momos_state["generator"] if mm is not None else torch.empty(0),
              snap["momos_gen"], "the motif sampling's generator")
        bank, mosaic = snap["bank"], snap["mosaic"]
        if mm is not None:
            momos_state["generator"] = snap["momos_gen"]
        if mm is not None and bank.numel():
            layout = layout_of(pool_parameters(self.model), mm.s)
            k = motif_count(layout.m, mm.k, mm.capacity)
            dtype = next(iter(self.params.values())).dtype
            if bank.shape != (k, mm.s) or bank.dtype != dtype:
                raise _Damaged(f"the motif bank is {tuple(bank.shape)} {bank.dtype}, "
                               f"not ({k}, {mm.s}) {dtype}")
            if (mosaic.shape != (layout.m,) or mosaic.dtype != torch.int64
                    or (layout.m and not 0 <= int(mosaic.min()) <= int(mosaic.max()) < k)):
                raise _Damaged(f"the mosaic is not {layout.m} motif indices below {k}")
            momos_state.update(motifs=bank.to(self.device), mosaic=mosaic.to(self.device),
                               layout=dataclasses.asdict(layout))
        elif bank.numel() or mosaic.numel() or (mm is not None and snap["epoch"] > 0):
            # A MoMos run has projected after every epoch; other runs have no bank.
            raise _Damaged("its motif bank does not match its epoch and method")
        opt = snap["opt"]
        state = opt.get("state")
        if not isinstance(state, dict) or set(opt) != {"state", "param_groups"}:
            raise _Damaged("the optimizer state is not a state and param_groups")
        shapes = [p.shape for p in self.params.values()]
        for key, entry in state.items():
            if not (is_int(key) and 0 <= key < len(shapes) and isinstance(entry, dict)
                    and all(v is None or (isinstance(v, torch.Tensor)
                                          and v.shape in (shapes[key], ()))
                            for v in entry.values())):
                raise _Damaged(f"the optimizer state of parameter {key!r} does not fit it")
        try:
            self.model.load_state_dict(snap["model"])
            self.opt.load_state_dict(opt)
            if self.sched is not None:
                self.sched.load_state_dict(snap["sched"])
            self.data_gen.set_state(snap["data_gen"])
            torch.set_rng_state(snap["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            # Whatever the checks above let through and torch's own loaders refuse.
            raise _Damaged(f"torch refused part of it: {_first_line(err)}") from err
        if mm is not None:
            try:
                mm.load_state_dict(momos_state)
            except ValueError as err:
                raise _Damaged(f"the projector refused its state: {err}") from err


# ---------------------------------------------------------------------------- measurement


def _weight_stats(weights: Mapping[str, torch.Tensor], estimators: tuple[str, ...]) -> dict:
    """Sparsity, L2 norm and kcomplex bits (:func:`momos.measure.complexity`) of the
    whole weight vector."""
    host = {k: w.cpu() for k, w in weights.items()}
    flat = torch.cat([w.reshape(-1).float() for w in host.values()])
    bits = complexity(host, estimators=list(estimators))
    out = {"sparsity": float((flat == 0).double().mean()),
           "l2": float(torch.linalg.vector_norm(flat.double()))}
    out["complexity"] = {f"{e}_bits": bits[f"{e}_bits"] for e in estimators}
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


# ------------------------------------------------------------------ the run directory


class _Damaged(ValueError):
    """What is wrong with a file of a run directory: the reason alone, without the path."""


def _cannot_resume(outdir: Path, name: str, reason: object) -> ValueError:
    """The one error of a run directory that cannot be resumed."""
    return ValueError(f"cannot resume {outdir}: {name} is damaged ({reason}); delete the "
                      "directory to start again, or choose another output directory (--out)")


def _first_line(err: BaseException) -> str:
    """An error's message cut to one short line (torch's run to paragraphs)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:160]}" if text else type(err).__name__


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string"}


def _parse_results(data: bytes | str) -> dict[str, Any]:
    """The content of ``results.json``, its layout checked.

    Raises
    ------
    _Damaged
        If it is not JSON, not of :data:`RESULTS_FORMAT`, or a field has the wrong type.
    """
    try:
        results = json.loads(data)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError
        raise _Damaged(f"not JSON: {_first_line(err)}") from err
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise _Damaged(f"format is not {RESULTS_FORMAT!r}")
    for key, kind in (("config", dict), ("model", dict), ("epochs", list), ("summary", dict),
                      ("status", str)):
        if not isinstance(results.get(key), kind):
            raise _Damaged(f"{key!r} is missing or not {_JSON_TYPES[kind]}")
    if not all(isinstance(record, dict) for record in results["epochs"]):
        raise _Damaged("'epochs' holds something other than objects")
    if results["status"] not in ("running", "finished"):
        raise _Damaged(f"status {results['status']!r} is neither 'running' nor 'finished'")
    return results


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fits(template: Any, value: Any, what: str) -> None:
    """Check that ``value`` has the structure of ``template``: the same keys, lengths,
    tensor shapes and dtypes, and kinds of scalar (int and float count as one).

    Raises
    ------
    _Damaged
        Naming ``what`` and the first place where they differ.
    """
    def differ(where: str) -> _Damaged:
        return _Damaged(f"{what} does not fit this run at {where or 'its top'}")

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


def _read_state(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``last.pt`` loaded on the CPU, and the results it holds; its layout checked.

    Raises
    ------
    FileNotFoundError
        If it is missing.
    _Damaged
        If it is not a regular file, not a training state of :data:`_STATE_FORMAT`, or a
        field is missing or of the wrong type. Its tensors are checked by
        :meth:`_Run.restore`.
    """
    try:
        data = regular_file(path, "training state").read_bytes()
    except FileNotFoundError:
        raise
    except ValueError as err:  # a directory, FIFO or device
        raise _Damaged(str(err)) from err
    try:
        # weights_only: a pickle that asks for any other object is refused, not run.
        snap = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # whatever torch or pickle raise, it is not a state we wrote
        raise _Damaged(f"torch.load cannot read it ({type(err).__name__}): it is truncated, "
                       "overwritten, or holds objects other than tensors and plain values"
                       ) from err
    if not isinstance(snap, dict) or snap.get("format") != _STATE_FORMAT:
        raise _Damaged(f"not a training state of format {_STATE_FORMAT!r}; a run started "
                       "by an older momos cannot be resumed")
    kinds = {"epoch": int, "best_epoch": int, "best_val_acc": float, "results": str,
             "model": dict, "opt": dict, "sched": dict, "data_gen": torch.Tensor,
             "torch_rng": torch.Tensor, "momos_gen": torch.Tensor, "bank": torch.Tensor,
             "mosaic": torch.Tensor}
    for key, kind in kinds.items():
        value = snap.get(key)
        if not (is_int(value) if kind is int else isinstance(value, kind)):
            raise _Damaged(f"{key!r} is missing or not {kind.__name__}")
    try:
        results = _parse_results(snap["results"])
    except _Damaged as err:
        raise _Damaged(f"its results: {err}") from err
    return snap, results


def _check_progress(snap: Mapping[str, Any], results: Mapping[str, Any], epochs: int,
                    estimators: tuple[str, ...]) -> None:
    """Check that a state's epoch, best epoch and records agree with each other.

    Raises
    ------
    _Damaged
        Naming what disagrees.
    """
    epoch, records = snap["epoch"], results["epochs"]
    if not 0 <= epoch <= epochs or len(records) != epoch + 1:
        raise _Damaged(f"epoch {epoch} with {len(records)} records in a run of {epochs} epochs")
    bits = {f"{e}_bits" for e in estimators}
    for i, record in enumerate(records):
        complexity = record.get("complexity")
        if not (record.get("epoch") == i and is_int(record["epoch"])
                and all(_is_number(record.get(key)) for key in _RECORD_NUMBERS)
                and isinstance(complexity, dict) and set(complexity) == bits
                and all(_is_number(v) for v in complexity.values())
                and (record.get("projection") is None or isinstance(record["projection"], dict))):
            raise _Damaged(f"the record of epoch {i} is malformed")
    best, best_acc = snap["best_epoch"], snap["best_val_acc"]
    if not (best == -1 and best_acc == -math.inf
            or 0 <= best <= epoch and records[best]["val_acc"] == best_acc):
        raise _Damaged(f"its best epoch {best} disagrees with its records")


def _resume_state(outdir: Path, config: Mapping[str, Any], cfg: TrainConfig
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
        snap, stored = _read_state(outdir / "last.pt")
    except FileNotFoundError:
        raise _cannot_resume(outdir, "last.pt", "missing beside results.json") from None
    except _Damaged as err:
        raise _cannot_resume(outdir, "last.pt", err) from err
    if stored["config"] != config:
        diff = sorted(k for k in config if stored["config"].get(k) != config[k])
        raise ValueError(f"cannot resume {outdir}: its config differs in "
                         f"{', '.join(diff or sorted(stored['config']))}")
    try:
        _check_progress(snap, stored, cfg.epochs, cfg.estimators)
    except _Damaged as err:
        raise _cannot_resume(outdir, "last.pt", err) from err
    path = outdir / "results.json"
    try:
        shown = _parse_results(regular_file(path, "results file").read_bytes())
        if shown["config"] != config:
            raise _Damaged("its config is not that of last.pt")
        if len(shown["epochs"]) not in (snap["epoch"], snap["epoch"] + 1):
            raise _Damaged(f"its {len(shown['epochs'])} records do not follow last.pt's "
                           f"epoch {snap['epoch']}")
    except FileNotFoundError:
        pass  # killed after epoch 0's last.pt: written again after the next epoch
    except ValueError as err:  # _Damaged, or not a regular file
        raise _cannot_resume(outdir, "results.json", err) from err
    return snap, stored["epochs"]


def _holds_run(outdir: Path) -> bool:
    """Whether ``outdir`` holds a run: ``last.pt`` is written first, results.json after."""
    return any((outdir / name).exists() for name in ("last.pt", "results.json"))


def _lock(outdir: Path) -> int:
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


# ------------------------------------------------------------------------------- the loop


def _save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    write_atomic(path, save({k: v.contiguous() for k, v in tensors.items()}))


def _write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1, allow_nan=True).encode("utf-8"))


def load_results(path: str | Path) -> dict[str, Any]:
    """Read ``results.json`` from a run directory (or the file itself).

    Parameters
    ----------
    path : str or Path
        A run directory or its ``results.json``.

    Returns
    -------
    dict
        The results, as :func:`train` returns them.

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
        return _parse_results(data)
    except _Damaged as err:
        raise ValueError(f"{path} is not a momos results file ({err})") from err


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
    >>> [e["epoch"] for e in res["epochs"]], res["status"]
    ([0, 1], 'finished')
    >>> dl = res["summary"]["description_length"]
    >>> dl["total_bits"] < dl["trivial_bits"]
    True
    """
    cfg = (dataclasses.replace(config, **overrides) if config is not None
           else TrainConfig(**overrides))
    outdir = Path(out) if out is not None else None
    return _train(cfg, outdir, resume, progress, callback, join_group(cfg.device))


def _train(cfg: TrainConfig, outdir: Path | None, resume: bool, progress: bool | None,
           callback: Callable[[dict[str, Any]], None] | None,
           ranks: Ranks | None) -> dict[str, Any]:
    """The body of :func:`train`; ``ranks`` is None in one process."""
    if ranks is not None and cfg.batch_size < ranks.world:
        raise ValueError(f"batch_size {cfg.batch_size} is smaller than the {ranks.world} "
                         "processes: every rank needs part of every batch")

    held: list[int] = []  # rank 0's descriptor of the lock, once taken

    def prepare_out() -> None:
        if outdir is not None:
            outdir.mkdir(parents=True, exist_ok=True)
            held.append(_lock(outdir))
            if not resume and _holds_run(outdir):
                raise ValueError(f"{outdir} already holds a run; pass resume=True (--resume) "
                                 "to continue it, or choose another output directory")

    try:
        from_lead(ranks, prepare_out)
        return _run_locked(cfg, outdir, resume, progress, callback, ranks)
    finally:
        for fd in held:
            os.close(fd)


def _run_locked(cfg: TrainConfig, outdir: Path | None, resume: bool, progress: bool | None,
                callback: Callable[[dict[str, Any]], None] | None,
                ranks: Ranks | None) -> dict[str, Any]:
    """The run itself, once rank 0 holds the output directory."""
    lead = ranks is None or ranks.lead
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
        if resume and outdir is not None and _holds_run(outdir):
            return _resume_state(outdir, results["config"], cfg)
        if outdir is not None:
            _save_tensors(outdir / "init.safetensors", run.init_state)
        return None

    resumed = from_lead(ranks, resume_or_start)
    if resumed is not None:
        snap, results["epochs"] = resumed
        try:
            run.restore(snap)
        except _Damaged as err:  # every rank holds the same state, so every rank raises
            raise _cannot_resume(outdir, "last.pt", err) from err
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
            # last.pt, holding the records, commits the epoch; results.json shows it.
            snap = run.snapshot()
            snap.update(format=_STATE_FORMAT, epoch=epoch, best_epoch=best["epoch"],
                        best_val_acc=best["val_acc"],
                        results=json.dumps(results, allow_nan=True))
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
        record.update(_weight_stats(run.weights(), cfg.estimators))
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
