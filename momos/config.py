"""The configuration of a training run: :class:`TrainConfig`, :data:`METHODS` and the
per-model defaults of the paper's experiments (``docs/method.md``).

Its one job is to say what a run is; :mod:`momos.train` runs it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from kcomplex.validation import is_int

from .data import DATASETS
from .models import MODELS

__all__ = ["METHODS", "PTQ_LEVELS", "TrainConfig"]

#: Training methods accepted by :class:`TrainConfig`.
METHODS = ("baseline", "qat", "ptq", "momos", "momos+qat")
#: Level sets of post-training quantization (``method="ptq"``): :data:`momos.ptq.PTQ_LEVELS`.
PTQ_LEVELS = ("uniform", "kmeans")

_OPTIMIZERS = ("adamw", "sgd")
_PROJECT_EVERY = ("epoch", "step")
_DEVICES = ("auto", "cpu", "cuda")
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
        Bit width, >= 2: of QAT (``qat``, ``momos+qat``) and of post-training quantization
        (``ptq``: at most 16 with k-means levels).
    levels : {"uniform", "kmeans"}
        The levels of ``ptq``: QAT's symmetric uniform grid (``2^q - 1`` levels) or 1-D
        k-means per tensor (``2^q`` levels).
    bank_q : int, optional
        Bits per motif value (MoMos methods; :class:`momos.MoMos`'s ``bank_bits``): default
        ``q`` for ``momos+qat`` (the bank the paper's bound counts, stored exactly) and 32
        (the parameters' dtype) for ``momos``.
    kmeans_iters : int
        Lloyd steps refining every projection's sampled bank (MoMos methods;
        ``motif_init="kmeans"``); 0 is the reference projection.
    finetune_epochs : int
        ``momos`` only: epochs after the last projection that train the motif bank with the
        mosaic frozen (:func:`momos.freeze_mosaic`); they are epochs ``epochs + 1`` ..
        ``epochs + finetune_epochs`` of the run, with AdamW on the bank, no weight decay,
        a constant rate ``finetune_lr``. The description length does not change (the same
        ``k``, ``s`` and mosaic); the bank is re-quantized after each of them when
        ``bank_q < 32``.
    finetune_lr : float, optional
        The rate of the fine-tuning epochs; default the run's ``lr``.
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
    levels: str = "uniform"
    bank_q: int | None = None
    kmeans_iters: int = 0
    finetune_epochs: int = 0
    finetune_lr: float | None = None
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
        check(self.levels in PTQ_LEVELS,
              f"levels must be one of {PTQ_LEVELS}, got {self.levels!r}")
        check(not (self.method == "ptq" and self.levels == "kmeans" and self.q > 16),
              f"k-means post-training quantization takes q <= 16 bits, got q={self.q}")
        check(self.bank_q is None or (is_int(self.bank_q) and self.bank_q >= 2),
              f"bank_q must be an integer >= 2 (32: float banks), got {self.bank_q!r}")
        check(is_int(self.kmeans_iters) and self.kmeans_iters >= 0,
              f"kmeans_iters must be an integer >= 0, got {self.kmeans_iters!r}")
        check(is_int(self.finetune_epochs) and self.finetune_epochs >= 0,
              f"finetune_epochs must be an integer >= 0, got {self.finetune_epochs!r}")
        check(self.finetune_epochs == 0 or self.method == "momos",
              f"finetune_epochs trains the bank of a MoMos projection: method must be "
              f"'momos', got {self.method!r}")
        check(self.finetune_lr is None or (math.isfinite(self.finetune_lr)
                                           and self.finetune_lr > 0),
              f"finetune_lr must be a finite number > 0, got {self.finetune_lr!r}")
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

    @property
    def total_epochs(self) -> int:
        """Training epochs, fine-tuning ones included: the last record's epoch."""
        return self.epochs + self.finetune_epochs

    @property
    def bank_bits(self) -> int:
        """Bits per motif value of the MoMos bank: ``bank_q``, else ``q`` for
        ``momos+qat`` and 32 otherwise."""
        if self.bank_q is not None:
            return self.bank_q
        return self.q if self.method == "momos+qat" else 32

    def resolved(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, per-model defaults filled in."""
        opt, lr, wd = _DEFAULTS[self.model]
        out = dataclasses.asdict(self)
        out["optimizer"] = self.optimizer or opt
        out["lr"] = lr if self.lr is None else self.lr
        out["weight_decay"] = wd if self.weight_decay is None else self.weight_decay
        out["estimators"] = list(self.estimators)
        out["bank_q"] = self.bank_bits
        if self.finetune_epochs:
            out["finetune_lr"] = out["lr"] if self.finetune_lr is None else self.finetune_lr
        return out
