"""The state of one training run: model, optimizer, schedule, projector and data.

Its one job is what happens to that state: :class:`RunState` trains an epoch (one or
several ranks), evaluates a split, measures the weight vector into an
:class:`~momos.results.EpochRecord` and the end into a :class:`~momos.results.RunSummary`,
and takes and restores the snapshot that ``last.pt`` holds. Which files are written when,
and what a resume reads, is :mod:`momos.train`'s and :mod:`momos.checkpoint`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import distributed as dist
from torch import nn

from kcomplex.validation import is_int

from ._distributed import Ranks
from .blocks import layout_of, pool_parameters
from .bounds import bound_bits, motif_count
from .checkpoint import fits
from .codec import decode, description_length, encode, stream_info
from .config import TrainConfig
from .data import Splits
from .finetune import bake, freeze_mosaic
from .measure import complexity
from .models import build_model
from .projection import MoMos
from .ptq import ptq_targets, quantize_tensor
from .qat import attach_qat, quantized_weights
from .results import DamagedFile, EpochRecord, ModelInfo, RunSummary, first_line

__all__ = ["RunState"]


class RunState:
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
        # The weights that post-training quantization rounds (ptq runs), by plain name.
        self.ptq_names = (frozenset(ptq_targets(self.model)) if cfg.method == "ptq"
                          else frozenset())
        if cfg.uses_qat:
            attach_qat(self.model, cfg.q)
        self.net: nn.Module = self.model
        if ranks is not None:
            # Wrapped after QAT so that DDP hooks the latent weights the optimizer steps.
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.init_state = self.state()
        self.momos = (MoMos(cfg.s, k=cfg.k, capacity=cfg.capacity, force_zero=cfg.force_zero,
                            seed=cfg.seed, bank_bits=cfg.bank_bits,
                            motif_init="kmeans" if cfg.kmeans_iters else "sample",
                            kmeans_iters=cfg.kmeans_iters) if cfg.uses_momos else None)
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
        # The bank optimizer's state across fine-tuning epochs (None until the first one).
        self.bank_opt: dict[str, Any] | None = None
        self.epoch_lr = float(res["lr"])
        self.data = {name: tuple(t.to(device) for t in getattr(splits, name).tensors)
                     for name in ("train", "val", "test")}

    # -- weights -------------------------------------------------------------------------

    def weights(self) -> dict[str, torch.Tensor]:
        """The evaluated weight of every trainable parameter, plain names, plain order:
        the fake-quantized value of a QAT weight, the post-training quantized one in a
        ``ptq`` run (which trains the float weights)."""
        out = {}
        for name in self.params:
            owner, _, attr = name.rpartition(".")
            w = getattr(self.model.get_submodule(owner), attr).detach()
            if name in self.ptq_names:
                w = quantize_tensor(w, self.cfg.q, self.cfg.levels)
            out[name] = w
        return out

    @contextlib.contextmanager
    def _evaluated(self) -> Iterator[None]:
        """The model computing with its evaluated weights: in a ``ptq`` run the quantized
        values stand in the float parameters, which come back bit for bit afterwards."""
        if not self.ptq_names:
            yield
            return
        quantized = {n: w for n, w in self.weights().items() if n in self.ptq_names}
        saved = {n: self.params[n].detach().clone() for n in quantized}
        with torch.no_grad():
            for name, w in quantized.items():
                self.params[name].copy_(w)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, w in saved.items():
                    self.params[name].copy_(w)

    def state(self) -> dict[str, torch.Tensor]:
        """Evaluated weights and buffers as fresh CPU tensors (a checkpoint)."""
        out = {n: w.cpu().clone() for n, w in self.weights().items()}
        out.update((n, b.detach().cpu().clone()) for n, b in self.model.named_buffers())
        return out

    def codec_source(self) -> tuple[dict[str, torch.Tensor], tuple | None, dict[str, int]]:
        """The arguments of :func:`momos.encode` for this run's evaluated weights:
        (state dict, (bank, mosaic, layout) or None, ``post_quantize``), plain names.

        The floating buffers (batch-norm statistics) are stored too, so that the stream
        rebuilds the network. Without MoMos the state is :meth:`weights` and the buffers
        (the stream codes each tensor). With
        MoMos the projector pools ``model.parameters()`` (the QAT order for
        ``momos+qat``); the pooled tensors are the very ``Parameter`` objects of
        ``self.params``, so only the span names change here, the stream holds the latent
        weights in pool order, and for ``momos+qat`` ``post_quantize`` names the weights
        QAT rounds at ``q`` bits, which the decoder rounds the same way.
        """
        mm = self.momos
        buffers = {n: b.detach().cpu() for n, b in self.model.named_buffers()
                   if b.is_floating_point()}
        if mm is None or mm.motifs is None:  # no MoMos, or never projected
            return {n: w.cpu() for n, w in self.weights().items()} | buffers, None, {}
        plain = {id(p): n for n, p in self.params.items()}
        pooled = pool_parameters(self.model)
        spans = tuple(dataclasses.replace(sp, name=plain[id(t)])
                      for sp, (_, t) in zip(mm.layout.spans, pooled))
        layout = dataclasses.replace(mm.layout, spans=spans)
        state = {n: p.detach().cpu() for n, p in self.params.items()} | buffers
        post = dict.fromkeys(quantized_weights(self.model), self.cfg.q)
        return state, (mm.motifs.cpu(), mm.mosaic.cpu(), layout), post

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

    def train_epoch(self, finetune: bool = False) -> tuple[float, float, dict | None]:
        """One epoch: (mean train loss, train accuracy, the last projection's statistics).

        ``finetune``: an epoch of frozen-mosaic bank training (``finetune_epochs``) instead.
        """
        if finetune:
            return self._finetune_epoch()
        self.net.train()
        self.epoch_lr = self.opt.param_groups[0]["lr"]  # before the scheduler steps
        loss, acc, projection = self._steps(
            self.opt, self.momos is not None and self.cfg.project_every == "step")
        if self.momos is not None and self.cfg.project_every == "epoch":
            projection = self.project()
        if self.sched is not None:
            self.sched.step()
        return loss, acc, projection

    def _steps(self, opt: torch.optim.Optimizer,
               project: bool) -> tuple[float, float, dict | None]:
        """The optimizer steps of one epoch (projecting after each if ``project``)."""
        x, y = self.data["train"]
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
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += seen
            correct += (logits.detach().argmax(1) == y[mine]).sum()
            if project:
                projection = self.project()
        if self.ranks is not None:
            dist.all_reduce(loss_sum)
            dist.all_reduce(correct)
        return float(loss_sum) / max(len(y), 1), int(correct) / max(len(y), 1), projection

    def _finetune_epoch(self) -> tuple[float, float, dict]:
        """An epoch training the bank alone: the mosaic frozen (:func:`momos.freeze_mosaic`),
        AdamW on the bank, its state carried from epoch to epoch (and in ``last.pt``)."""
        mm = self.momos
        if self.ranks is not None:
            raise ValueError("finetune_epochs runs in one process: DDP wraps the parameters "
                             "that freezing the mosaic replaces; train without --nproc")
        if mm is None or mm.motifs is None:
            raise ValueError("finetune_epochs needs a projected MoMos model (epochs >= 1)")
        lr = self.cfg.resolved()["finetune_lr"]
        bank = freeze_mosaic(self.model, mm.motifs, mm.mosaic, mm.layout)
        opt = torch.optim.AdamW([bank.weight], lr=lr, weight_decay=0.0)
        if self.bank_opt is not None:
            opt.load_state_dict(self.bank_opt)
        self.epoch_lr = lr
        self.net.train()
        try:
            loss, acc, _ = self._steps(opt, project=False)
        finally:
            bake(self.model)
        self.bank_opt = opt.state_dict()
        distortion = mm.set_motifs(self.model, bank.weight.detach())
        return loss, acc, {"k": mm.motifs.shape[0], "distortion": distortion, "changed": 0,
                           "finetune": True}

    @torch.no_grad()
    def evaluate(self, split: str) -> tuple[float, float]:
        x, y = self.data[split]
        if len(y) == 0:
            return math.nan, math.nan
        with self._evaluated():
            return self._evaluate(x, y)

    def _evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
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
            "bank_opt": self.bank_opt if self.bank_opt is not None else {},
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Continue from ``snap`` (a :meth:`snapshot` read back by
        :func:`momos.checkpoint.read_state`).

        Every part is checked against this run's own state before it is loaded, so that a
        damaged ``last.pt`` is refused here rather than failing, or silently training
        something else, epochs later.

        Raises
        ------
        DamagedFile
            If a part does not fit this run, with the part named.
        """
        mm = self.momos
        fits(self.model.state_dict(), snap["model"], "the model state")
        fits({"param_groups": self.opt.state_dict()["param_groups"]},
              {"param_groups": snap["opt"].get("param_groups")}, "the optimizer state")
        fits(self.sched.state_dict() if self.sched is not None else {}, snap["sched"],
              "the schedule state")
        fits(self.data_gen.get_state(), snap["data_gen"], "the data order's generator")
        fits(torch.get_rng_state(), snap["torch_rng"], "torch's generator")
        momos_state = mm.state_dict() if mm is not None else None
        fits(momos_state["generator"] if mm is not None else torch.empty(0),
              snap["momos_gen"], "the motif sampling's generator")
        bank, mosaic = snap["bank"], snap["mosaic"]
        if mm is not None:
            momos_state["generator"] = snap["momos_gen"]
        if mm is not None and bank.numel():
            layout = layout_of(pool_parameters(self.model), mm.s)
            k = motif_count(layout.m, mm.k, mm.capacity)
            dtype = next(iter(self.params.values())).dtype
            if bank.shape != (k, mm.s) or bank.dtype != dtype:
                raise DamagedFile(f"the motif bank is {tuple(bank.shape)} {bank.dtype}, "
                                  f"not ({k}, {mm.s}) {dtype}")
            if (mosaic.shape != (layout.m,) or mosaic.dtype != torch.int64
                    or (layout.m and not 0 <= int(mosaic.min()) <= int(mosaic.max()) < k)):
                raise DamagedFile(f"the mosaic is not {layout.m} motif indices below {k}")
            momos_state.update(motifs=bank.to(self.device), mosaic=mosaic.to(self.device),
                               layout=dataclasses.asdict(layout))
        elif bank.numel() or mosaic.numel() or (mm is not None and snap["epoch"] > 0):
            # A MoMos run has projected after every epoch; other runs have no bank.
            raise DamagedFile("its motif bank does not match its epoch and method")
        bank_opt = snap.get("bank_opt") or None
        if bank_opt is not None and not (isinstance(bank_opt, dict)
                                         and set(bank_opt) == {"state", "param_groups"}):
            raise DamagedFile("the bank optimizer state is not a state and param_groups")
        opt = snap["opt"]
        state = opt.get("state")
        if not isinstance(state, dict) or set(opt) != {"state", "param_groups"}:
            raise DamagedFile("the optimizer state is not a state and param_groups")
        shapes = [p.shape for p in self.params.values()]
        for key, entry in state.items():
            if not (is_int(key) and 0 <= key < len(shapes) and isinstance(entry, dict)
                    and all(v is None or (isinstance(v, torch.Tensor)
                                          and v.shape in (shapes[key], ()))
                            for v in entry.values())):
                raise DamagedFile(f"the optimizer state of parameter {key!r} does not fit it")
        try:
            self.model.load_state_dict(snap["model"])
            self.opt.load_state_dict(opt)
            if self.sched is not None:
                self.sched.load_state_dict(snap["sched"])
            self.data_gen.set_state(snap["data_gen"])
            torch.set_rng_state(snap["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            # Whatever the checks above let through and torch's own loaders refuse.
            raise DamagedFile(f"torch refused part of it: {first_line(err)}") from err
        self.bank_opt = bank_opt
        if mm is not None:
            try:
                mm.load_state_dict(momos_state)
            except ValueError as err:
                raise DamagedFile(f"the projector refused its state: {err}") from err

    # -- measurement ---------------------------------------------------------------------

    def model_info(self) -> ModelInfo:
        """The model's size: weights, and blocks and motifs for MoMos runs."""
        cfg = self.cfg
        n = sum(p.numel() for p in self.params.values())
        if not cfg.uses_momos:
            return ModelInfo(n)
        m = sum(-(-p.numel() // cfg.s) for p in self.params.values() if p.numel())
        return ModelInfo(n, m, motif_count(m, cfg.k, cfg.capacity))

    def record(self, epoch: int, train_loss: float, train_acc: float,
               projection: dict[str, Any] | None, seconds: float) -> EpochRecord:
        """Measure the weights and the validation and test splits after ``epoch``."""
        val_loss, val_acc = self.evaluate("val")
        test_loss, test_acc = self.evaluate("test")
        lr = self.epoch_lr if epoch > 0 else self.opt.param_groups[0]["lr"]
        stats = _weight_stats(self.weights(), self.cfg.estimators)
        return EpochRecord(epoch=epoch, train_loss=train_loss, train_acc=train_acc,
                           val_loss=val_loss, val_acc=val_acc, test_loss=test_loss,
                           test_acc=test_acc, lr=lr, projection=projection, seconds=seconds,
                           **stats)

    def summary(self, epochs: list[EpochRecord], best_epoch: int, best_val_acc: float,
                stream: bytes | None = None) -> RunSummary:
        """The end of the run: last and best epochs, ratios, description length (of
        `stream`, :meth:`stream` of this state, coded here if not given), usage."""
        first, final = epochs[0], epochs[-1]
        counts = None
        if self.momos is not None:
            mm = self.momos
            counts = (torch.bincount(mm.mosaic.cpu(), minlength=mm.motifs.shape[0]).tolist()
                      if mm.mosaic is not None else [])  # epochs=0: never projected
        return RunSummary(
            test_acc=final.test_acc,
            val_acc=final.val_acc,
            best_epoch=best_epoch,
            best_val_acc=best_val_acc,
            best_test_acc=epochs[best_epoch].test_acc,
            complexity_ratio={
                key.removesuffix("_bits"): final.complexity[key] / first.complexity[key]
                for key in final.complexity if first.complexity[key] > 0},
            description_length=self.description(stream),
            motif_counts=counts,
        )

    def stream(self) -> bytes:
        """The exact code of the evaluated weights and buffers: :func:`momos.encode` of
        :meth:`codec_source`."""
        state, source, post = self.codec_source()
        return encode(state, source, q=codec_bank_bits(self.cfg.bank_bits), post_quantize=post)

    def description(self, stream: bytes | None = None) -> dict[str, Any]:
        """The exact description length of the weights the network computes with.

        The length of :func:`momos.encode`'s stream of :meth:`codec_source` (every method:
        the tensor codes alone, or the MoMos bank and mosaic), after checking that the
        stream decodes to :meth:`weights` bit for bit; itemized, beside the paper's bound
        (``n q`` bits for a method quantizing at ``q`` bits, ``32 n`` for the baseline, the
        MoMos bound with the bank at ``bank_q`` bits) and the trivial ``32 n`` bits.
        """
        cfg = self.cfg
        n = sum(p.numel() for p in self.params.values())
        state, source, post = self.codec_source()
        q = codec_bank_bits(cfg.bank_bits)
        data = self.stream() if stream is None else stream
        decoded = decode(data, max_numel=max(1, sum(t.numel() for t in state.values())))
        for name, w in self.weights().items():
            if not _bit_equal(decoded[name], w):
                raise RuntimeError(f"the exact code of {name!r} does not decode to the weight "
                                   "the network computes with: please report this bug")
        info = stream_info(data)
        if source is not None:
            # The MoMos itemization: both mosaic codes and the two-part ideal, beside the
            # stream's sizes (one more encoding, of a bank and mosaic: cheap).
            dl = description_length(state, source, q=q, post_quantize=post)
            out = {key: value for key, value in dataclasses.asdict(dl).items()
                   if key != "tensors"}
            out["mosaic_bits"] = dl.mosaic_bits
        else:
            out = {key: info[key] for key in ("header_bits", "leftover_bits", "total_bits")}
        out["codes"] = info["codes"]
        if source is not None:
            out["coded"] = f"momos bank q={q}" + (f", qat q={cfg.q}" if post else "")
            out["bound_bits"] = bound_bits(n, cfg.s, k=source[0].shape[0],
                                           q=min(cfg.bank_bits, 32))
        else:
            out["coded"] = "tensor codes"
            out["bound_bits"] = n * (cfg.q if cfg.uses_qat or cfg.method == "ptq" else 32)
        out["trivial_bits"] = 32 * n
        out["rac_bound"] = 32 * n / out["bound_bits"]
        out["rac_exact"] = 32 * n / info["total_bits"]
        return out


def codec_bank_bits(bank_bits: int) -> int:
    """The codec's ``q`` for a bank of ``bank_bits`` bits per value: below 16 the levels
    themselves, else float32 (a 16..31-bit grid is exact in float32, not in float16)."""
    return bank_bits if bank_bits < 16 else 32


def _bit_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach().cpu().to(torch.float32), b.detach().cpu().to(torch.float32)
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def _weight_stats(weights: Mapping[str, torch.Tensor], estimators: tuple[str, ...]) -> dict:
    """Sparsity, L2 norm and kcomplex bits (:func:`momos.measure.complexity`) of the
    whole weight vector."""
    host = {k: w.cpu() for k, w in weights.items()}
    flat = torch.cat([w.reshape(-1).float() for w in host.values()])
    out = {"sparsity": float((flat == 0).double().mean()),
           "l2": float(torch.linalg.vector_norm(flat.double())), "complexity": {}}
    if estimators:  # a run may measure none (momos frontier's default)
        bits = complexity(host, estimators=list(estimators))
        out["complexity"] = {f"{e}_bits": bits[f"{e}_bits"] for e in estimators}
    return out
