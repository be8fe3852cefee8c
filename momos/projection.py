"""MoMos projection: replace every block of s weights by its nearest of k shared motifs.

One :meth:`MoMos.project` call is one projection step with the reference semantics of
``docs/method.md``: the global block pool of :mod:`momos.blocks`; ``k_eff = max(1, min(k, m))``;
a motif bank of pool blocks at the first positions of one CPU ``torch.randperm(m)`` per
call (motif 0 the all-zero block under ``force_zero``); each block assigned to its nearest
motif (squared Euclidean, ties to the lowest index) by :func:`momos.assign.nearest_motif`
and replaced by it; padding trimmed; written back in place. ``motif_init="kmeans"`` is our
addition: Lloyd steps refine the sampled bank, kept only when not worse.

The module is longer than most (about 500 lines) because it holds one stateful class and
everything that guards its state: the projection step, the k-means refinement, and
``state_dict``/``load_state_dict`` with the checks that refuse a damaged or foreign state
before anything changes. Splitting the checks from the class would only make each half
read the other's invariants.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import torch
from torch import nn

from kcomplex.validation import is_int

from . import assign as _assign
from .blocks import BlockLayout, Span, layout_of, pool_parameters, to_blocks, write_blocks
from .bounds import check_int_at_least, check_k_or_capacity, motif_count
from .qat import QAT_OFF_BITS, quantize_weight

__all__ = ["MOTIF_INITS", "MoMos", "ProjectionStats", "project"]

#: Names accepted by ``motif_init``.
MOTIF_INITS = ("sample", "kmeans")


@dataclass(frozen=True, eq=False)
class ProjectionStats:
    """What one projection step did.

    Attributes
    ----------
    k : int
        Number of motifs used, ``k_eff = max(1, min(k, m))``.
    distortion : float
        Sum of squared changes over the real weights (padding excluded), in float64.
    changed : int
        Number of real weights whose value changed.
    motif_counts : torch.Tensor
        ``int64`` of length ``k``: how many of the ``m`` blocks (padding blocks included)
        use each motif; sums to ``m``. On the parameters' device.

    Notes
    -----
    ``eq=False``: a tensor field has no single truth value, so compare fields one by one.
    """

    k: int
    distortion: float
    changed: int
    motif_counts: torch.Tensor


class MoMos:
    """Mosaic-of-Motifs projection of a model's weights (reference semantics, seeded).

    Parameters
    ----------
    s : int
        Block size, >= 1.
    k : int, optional
        Number of motifs, >= 1; clipped to ``m`` at projection time.
    capacity : float, optional
        ``k/m`` in (0, 1], instead of ``k``: ``k = max(1, min(m, floor(capacity * m)))``
        with the model's ``m`` at projection time. Give exactly one of ``k`` / ``capacity``.
    force_zero : bool
        Motif 0 is the all-zero block (default, as in the reference); the other motifs
        are sampled.
    seed : int, optional
        Seeds the projector's own ``torch.Generator().manual_seed(seed)``, created once, so
        successive :meth:`project` calls draw successive permutations; its state is part
        of :meth:`state_dict`. ``None`` draws from torch's global RNG (reproducible under
        ``torch.manual_seed``).
    assign : str
        Method of :func:`momos.assign.nearest_motif`; every method gives the exact argmin.
    motif_init : {"sample", "kmeans"}
        ``"sample"``: the reference bank of randomly sampled pool blocks. ``"kmeans"``: the
        same sampled bank (same permutation draw, so seeds line up), then ``kmeans_iters``
        Lloyd steps on the pool (assign; each motif = mean of its blocks; empty clusters keep
        their motif; motif 0 stays exactly zero under ``force_zero``). The refined bank is
        kept only if its distortion (padding excluded) is not higher than the sampled
        bank's, so ``"kmeans"`` never reports a higher distortion than ``"sample"``.
    kmeans_iters : int
        Number of Lloyd steps, >= 0 (0: identical to ``"sample"``); only with
        ``motif_init="kmeans"``.
    bank_bits : int
        Bits per motif value, >= 2; 32 (default) keeps the bank in the parameters' dtype.
        Below 32 the bank is quantized with QAT's quantizer (:func:`momos.qat.quantize_weight`,
        one symmetric scale for the whole bank) after sampling and after every Lloyd step,
        before the blocks are assigned: the projected weights are then ``bank_q[mosaic]``,
        which :func:`momos.encode` stores at ``bank_bits`` bits per value, exactly. MoMos +
        QAT runs use it, so that their bank costs what the paper's bound counts.

    Attributes
    ----------
    motifs : torch.Tensor or None
        ``(k_eff, s)`` bank of the last projection, dtype and device of the parameters.
    mosaic : torch.Tensor or None
        ``int64`` ``(m,)``: motif index of every block of the last projection.
    layout : momos.blocks.BlockLayout or None
        Pool layout of the last projection.

    Raises
    ------
    ValueError
        On a bad ``s``, ``k``, ``capacity`` (or both / neither given), ``seed``,
        ``kmeans_iters``, or an unknown ``assign`` / ``motif_init`` name.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from momos.projection import MoMos
    >>> layer = nn.Linear(4, 3)        # 12 + 3 weights -> 6 + 2 blocks of s = 2
    >>> mm = MoMos(s=2, k=3, seed=0)
    >>> stats = mm.project(layer)
    >>> stats.k, stats.motif_counts.sum().item(), tuple(mm.motifs.shape)
    (3, 8, (3, 2))
    >>> blocks = layer.weight.detach().reshape(-1, 2)
    >>> torch.equal(blocks, mm.motifs[mm.mosaic[:6]])
    True
    >>> mm.motifs[0].tolist()          # force_zero: motif 0 is the zero block
    [0.0, 0.0]
    """

    def __init__(
        self, s: int, k: int | None = None, capacity: float | None = None,
        force_zero: bool = True, seed: int | None = None, assign: str = "auto",
        motif_init: str = "sample", kmeans_iters: int = 0, bank_bits: int = 32,
    ) -> None:
        self.s = check_int_at_least("block size s", s, 1)
        self.k, self.capacity = check_k_or_capacity(k, capacity)
        self.force_zero = bool(force_zero)
        if motif_init not in MOTIF_INITS:
            raise ValueError(f"unknown motif_init {motif_init!r}; valid: {', '.join(MOTIF_INITS)}")
        self.motif_init = motif_init
        self.kmeans_iters = check_int_at_least("kmeans_iters", kmeans_iters, 0)
        if self.kmeans_iters and motif_init != "kmeans":
            raise ValueError(
                f"kmeans_iters={kmeans_iters} needs motif_init='kmeans' (got {motif_init!r})"
            )
        self.bank_bits = check_int_at_least("bank_bits", bank_bits, 2)
        self.assign = _check_assign(assign)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, Integral)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        try:
            self._generator = None if seed is None else torch.Generator().manual_seed(self.seed)
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"seed {seed!r} is out of range for torch.Generator: {exc}") from exc
        self.motifs: torch.Tensor | None = None
        self.mosaic: torch.Tensor | None = None
        self.layout: BlockLayout | None = None

    def __repr__(self) -> str:
        size = f"k={self.k}" if self.k is not None else f"capacity={self.capacity}"
        return (f"MoMos(s={self.s}, {size}, force_zero={self.force_zero}, seed={self.seed}, "
                f"assign={self.assign!r}, motif_init={self.motif_init!r}, "
                f"kmeans_iters={self.kmeans_iters}, bank_bits={self.bank_bits})")

    def state_dict(self) -> dict[str, Any]:
        """The projector's state, to continue it elsewhere with :meth:`load_state_dict`.

        Like ``torch.optim.Optimizer.state_dict``: plain values and tensors only, so that
        ``torch.save`` / ``torch.load(weights_only=True)`` store it; the tensors are the
        projector's own (not copies), and :meth:`project` replaces rather than changes them.

        Returns
        -------
        dict
            ``config``: ``s``, ``k``, ``capacity``, ``force_zero``, ``seed``,
            ``motif_init``, ``kmeans_iters``, ``bank_bits`` (``assign`` is left out:
            every method gives the same argmin). ``motifs``, ``mosaic``: the bank and
            mosaic of the last projection.
            ``layout``: its :class:`~momos.blocks.BlockLayout` as a plain dict
            (``dataclasses.asdict`` of it: ``s`` and ``spans``, each span a dict of
            ``name``, ``shape``, ``numel``, ``start``, ``n_blocks``). All three are
            ``None`` before the first projection. ``generator``: the ``uint8`` state of the
            seeded generator (``torch.Generator.get_state``), ``None`` with ``seed=None``
            (torch's global generator, which is not the projector's to save).

        Examples
        --------
        >>> from torch import nn
        >>> mm = MoMos(s=2, k=3, seed=0)
        >>> _ = mm.project(nn.Linear(4, 3))              # an earlier projection
        >>> again = MoMos(s=2, k=3, seed=0)
        >>> again.load_state_dict(mm.state_dict())
        >>> a, b = nn.Linear(4, 3), nn.Linear(4, 3)
        >>> _ = b.load_state_dict(a.state_dict())
        >>> _, _ = mm.project(a), again.project(b)       # the next permutation, on both
        >>> torch.equal(mm.motifs, again.motifs) and torch.equal(a.weight, b.weight)
        True
        """
        layout = None
        if self.layout is not None:
            layout = {"s": self.layout.s, "spans": tuple(
                {"name": sp.name, "shape": tuple(sp.shape), "numel": sp.numel,
                 "start": sp.start, "n_blocks": sp.n_blocks} for sp in self.layout.spans)}
        return {
            "config": self._config(),
            "motifs": self.motifs,
            "mosaic": self.mosaic,
            "layout": layout,
            "generator": None if self._generator is None else self._generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next :meth:`project` draws what the
        saved projector's next one would have drawn.

        Everything is checked before anything changes: a refused state leaves the
        projector as it was. The tensors are copied, on their own device.

        Parameters
        ----------
        state : Mapping
            A :meth:`state_dict` of a projector configured like this one.

        Raises
        ------
        ValueError
            Naming the field: a key missing or unexpected; a config field that differs
            from this projector's; a layout that is not a valid block layout for ``s``; a
            bank that is not a floating ``(k_eff, s)`` tensor for the layout's ``m``; a
            mosaic that is not ``int64`` ``(m,)`` with indices in ``[0, k_eff)``, or not on
            the bank's device; bank, mosaic and layout not all given or all ``None``; a
            generator state that is not a valid ``uint8`` CPU generator state (or not
            ``None`` exactly when ``seed`` is ``None``).
        """
        if not isinstance(state, Mapping):
            raise ValueError(f"a MoMos state must be a mapping (a state_dict()), got "
                             f"{type(state).__name__}")
        keys = {"config", "motifs", "mosaic", "layout", "generator"}
        if set(state) != keys:
            missing, extra = sorted(keys - set(state)), sorted(map(str, set(state) - keys))
            raise ValueError(f"not a MoMos state_dict(): missing keys {missing}, unexpected "
                             f"keys {extra}")
        self._check_config(state["config"])
        generator = _checked_generator_state(state["generator"], self.seed)
        motifs, mosaic, layout = state["motifs"], state["mosaic"], state["layout"]
        if motifs is None and mosaic is None and layout is None:
            self.motifs = self.mosaic = self.layout = None
        elif motifs is None or mosaic is None or layout is None:
            raise ValueError("a MoMos state needs motifs, mosaic and layout together (a "
                             "projection) or none of them (never projected)")
        else:
            layout = _layout_from_plain(layout, self.s)
            k_eff = motif_count(layout.m, self.k, self.capacity)
            _check_bank(motifs, mosaic, k_eff, layout.m, self.s)
            self.motifs, self.mosaic, self.layout = motifs.clone(), mosaic.clone(), layout
        if generator is not None:
            self._generator.set_state(generator)

    def _config(self) -> dict[str, Any]:
        """The settings that a state belongs to (``assign`` does not change results)."""
        return {"s": self.s, "k": self.k, "capacity": self.capacity,
                "force_zero": self.force_zero, "seed": self.seed,
                "motif_init": self.motif_init, "kmeans_iters": self.kmeans_iters,
                "bank_bits": self.bank_bits}

    def _check_config(self, config: Any) -> None:
        mine = self._config()
        if (isinstance(config, Mapping) and "bank_bits" not in config
                and self.bank_bits == QAT_OFF_BITS):
            # States saved before banks could be quantized have float banks.
            config = {**config, "bank_bits": QAT_OFF_BITS}
        if not isinstance(config, Mapping) or set(config) != set(mine):
            raise ValueError(f"a MoMos state's config must be a mapping of {sorted(mine)}, "
                             f"got {config!r}")
        for name, value in mine.items():
            theirs = config[name]
            # bool vs int (force_zero=1) and int vs float (capacity=1) are different configs
            if type(theirs) is not type(value) or theirs != value:
                raise ValueError(
                    f"the state is of a projector with {name}={theirs!r}, this one has "
                    f"{name}={value!r}; create the MoMos with the state's settings")

    def project(self, model: nn.Module | Mapping[str, torch.Tensor], *,
                include_buffers: bool = False) -> ProjectionStats:
        """Project the weights of ``model`` onto a motif bank, in place.

        Parameters
        ----------
        model : nn.Module or Mapping[str, torch.Tensor]
            A module (its trainable, non-empty parameters in ``parameters()`` order) or a
            state dict (its non-empty floating tensors, in order, except those named like
            buffers: ``momos.blocks.is_buffer_name``). All pooled tensors must share one
            floating dtype and one device; everything is computed there.
        include_buffers : bool
            Pool a state dict's buffer-named tensors too (batch-norm statistics...).

        Returns
        -------
        ProjectionStats
            ``k_eff``, distortion, number of changed weights, motif usage counts. The bank,
            mosaic and layout are kept as ``self.motifs``, ``self.mosaic``, ``self.layout``.

        Raises
        ------
        TypeError
            If ``model`` is neither a module nor a mapping, or a pooled tensor is not
            floating point.
        ValueError
            If nothing is pooled, a tensor is on the ``meta`` device (it has no values:
            materialize the module first), the tensors differ in dtype or device, or a
            weight is NaN or infinite.
        """
        tensors = pool_parameters(model, include_buffers)
        layout = layout_of(tensors, self.s)
        _check_tensors(tensors)
        pool = to_blocks(tensors, layout)
        _check_finite(pool, tensors, layout)
        k_eff = motif_count(layout.m, self.k, self.capacity)
        mask = layout.real_mask(pool.device)

        motifs = self._quantized(self._sample(pool, k_eff))
        mosaic = self._nearest(pool, motifs)
        distortion = _distortion(pool, motifs[mosaic], mask)
        if self.motif_init == "kmeans" and self.kmeans_iters > 0:
            motifs, mosaic, distortion = self._refine(pool, motifs, mosaic, distortion, mask)

        new = motifs[mosaic]
        changed = int(((new != pool) & mask).sum())
        counts = torch.bincount(mosaic, minlength=k_eff)
        write_blocks(tensors, new, layout)
        self.motifs, self.mosaic, self.layout = motifs, mosaic, layout
        return ProjectionStats(k_eff, float(distortion), changed, counts)

    def set_motifs(self, model: nn.Module | Mapping[str, torch.Tensor],
                   motifs: torch.Tensor) -> float:
        """Replace the bank of the last projection, keeping its mosaic: the new bank
        (quantized at ``bank_bits``) is written into the model as ``motifs[mosaic]``.

        Used after frozen-mosaic fine-tuning (:func:`momos.freeze_mosaic`) has moved the
        motifs, so that the projector, the model and the codec agree again.

        Parameters
        ----------
        model : nn.Module or Mapping[str, torch.Tensor]
            What was projected (the same pool and layout); modified in place.
        motifs : torch.Tensor
            ``(k_eff, s)`` new bank, floating.

        Returns
        -------
        float
            The squared distance between the pooled weights before and after (padding
            excluded), in float64: 0.0 when the bank is already on its grid.

        Raises
        ------
        ValueError
            If there was no projection, the bank's shape differs, or the model's pool is
            not the projection's layout.

        Examples
        --------
        >>> from torch import nn
        >>> layer = nn.Linear(4, 2); mm = MoMos(s=2, k=2, seed=0); _ = mm.project(layer)
        >>> mm.set_motifs(layer, mm.motifs * 2) >= 0, torch.equal(
        ...     layer.weight.detach().reshape(-1, 2), mm.motifs[mm.mosaic[:4]])
        (True, True)
        """
        if self.motifs is None:
            raise ValueError("no projection yet: call project(model) first")
        if not isinstance(motifs, torch.Tensor) or tuple(motifs.shape) != tuple(
                self.motifs.shape) or not motifs.is_floating_point():
            raise ValueError(f"motifs must be a floating tensor of shape "
                             f"{tuple(self.motifs.shape)}, got {getattr(motifs, 'shape', motifs)}")
        tensors = pool_parameters(model)
        if layout_of(tensors, self.s) != self.layout:
            raise ValueError("the model's pooled tensors are not those of the last projection")
        pool = to_blocks(tensors, self.layout)
        bank = self._quantized(motifs.detach().to(device=pool.device, dtype=pool.dtype))
        new = bank[self.mosaic]
        distortion = _distortion(pool, new, self.layout.real_mask(pool.device))
        write_blocks(tensors, new, self.layout)
        self.motifs = bank
        return float(distortion)

    # -- steps ---------------------------------------------------------------------------

    def _sample(self, pool: torch.Tensor, k_eff: int) -> torch.Tensor:
        """The reference bank: one CPU permutation per call, motif 0 zero under force_zero."""
        perm = torch.randperm(pool.shape[0], generator=self._generator)
        if not self.force_zero:
            return pool[perm[:k_eff].to(pool.device)]
        zero = pool.new_zeros(1, pool.shape[1])
        return torch.cat([zero, pool[perm[: k_eff - 1].to(pool.device)]])

    def _quantized(self, motifs: torch.Tensor) -> torch.Tensor:
        """The bank at ``bank_bits`` (QAT's per-tensor quantizer over the whole bank), so
        that every block is assigned to, and becomes, a motif the codec stores exactly."""
        if self.bank_bits >= QAT_OFF_BITS:
            return motifs
        return quantize_weight(motifs, self.bank_bits)

    def _nearest(self, pool: torch.Tensor, motifs: torch.Tensor) -> torch.Tensor:
        return _assign.nearest_motif(pool, motifs, method=self.assign)

    def _refine(self, pool, motifs, mosaic, distortion, mask):
        """``kmeans_iters`` Lloyd steps from the sampled bank; the refined bank, its mosaic
        and distortion if not worse than the sampled one's, else the sampled ones."""
        pool64 = pool.to(torch.float64)
        new_motifs, new_mosaic = motifs, mosaic
        for _ in range(self.kmeans_iters):
            new_motifs = self._quantized(
                _cluster_means(pool64, new_motifs, new_mosaic, self.force_zero))
            new_mosaic = self._nearest(pool, new_motifs)
        new_distortion = _distortion(pool, new_motifs[new_mosaic], mask)
        if new_distortion <= distortion:
            return new_motifs, new_mosaic, new_distortion
        return motifs, mosaic, distortion


def project(
    model: nn.Module | Mapping[str, torch.Tensor], s: int, k: int | None = None,
    capacity: float | None = None, force_zero: bool = True, seed: int | None = None,
    assign: str = "auto", motif_init: str = "sample", kmeans_iters: int = 0,
    bank_bits: int = 32, include_buffers: bool = False,
) -> ProjectionStats:
    """One projection step of ``model`` in place: ``MoMos(...).project(model)``.

    Parameters, returns and errors are those of :class:`MoMos` and :meth:`MoMos.project`;
    use the class to keep the bank and mosaic or to draw successive permutations.

    Examples
    --------
    >>> from torch import nn
    >>> project(nn.Linear(3, 2), s=1, k=2, seed=0).motif_counts.sum().item()
    8
    """
    momos = MoMos(s, k, capacity, force_zero, seed, assign, motif_init, kmeans_iters, bank_bits)
    return momos.project(model, include_buffers=include_buffers)


# -- helpers -----------------------------------------------------------------------------


def _check_assign(method) -> str:
    """Validate a nearest-motif method name against :data:`momos.assign.SEARCH_METHODS`."""
    if not isinstance(method, str) or (method != "auto" and method not in _assign.SEARCH_METHODS):
        valid = ", ".join(repr(k) for k in ["auto", *_assign.SEARCH_METHODS])
        raise ValueError(f"unknown assign method {method!r}; valid: {valid}")
    return method


def _check_tensors(tensors: list[tuple[str, torch.Tensor]]) -> None:
    first_name, first = tensors[0]
    for name, t in tensors:
        if t.is_meta:
            raise ValueError(
                f"tensor {name!r} is on the meta device: it has no values to project; "
                "materialize the module first, e.g. module.to_empty(device='cpu'), then "
                "load its weights"
            )
        if not t.is_floating_point():
            raise TypeError(f"tensor {name!r} has dtype {t.dtype}; MoMos projects floating-point "
                            "weights only (freeze it with requires_grad=False to leave it out)")
        if t.dtype != first.dtype or t.device != first.device:
            raise ValueError(
                f"tensor {name!r} is {t.dtype} on {t.device} but {first_name!r} is {first.dtype} "
                f"on {first.device}; all pooled tensors must share one dtype and device"
            )


def _check_finite(pool: torch.Tensor, tensors, layout: BlockLayout) -> None:
    if bool(torch.isfinite(pool).all()):
        return
    for (name, _), sp in zip(tensors, layout.spans):
        if not bool(torch.isfinite(pool[sp.start : sp.start + sp.n_blocks]).all()):
            raise ValueError(f"tensor {name!r} has NaN or infinite values; MoMos needs "
                             "finite weights")


def _distortion(pool: torch.Tensor, new: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """0-d float64: sum of squared changes over the real entries (padding excluded)."""
    diff = new.to(torch.float64) - pool.to(torch.float64)
    return torch.where(mask, diff.square(), 0.0).sum()


def _cluster_means(pool64: torch.Tensor, motifs: torch.Tensor, mosaic: torch.Tensor,
                   force_zero: bool) -> torch.Tensor:
    """One Lloyd update: each motif becomes the float64 mean of its blocks (rounded to the
    motifs' dtype); empty clusters keep their motif; motif 0 stays zero under force_zero.
    On CUDA ``index_add_`` sums in a nondeterministic order unless
    ``torch.use_deterministic_algorithms(True)``."""
    k, s = motifs.shape
    sums = torch.zeros(k, s, dtype=torch.float64, device=pool64.device)
    sums.index_add_(0, mosaic, pool64)
    counts = torch.bincount(mosaic, minlength=k)
    means = (sums / counts.clamp(min=1).unsqueeze(1)).to(motifs.dtype)
    out = torch.where((counts > 0).unsqueeze(1), means, motifs)
    if force_zero:
        out[0] = 0
    return out


def _checked_generator_state(state: Any, seed: int | None) -> torch.Tensor | None:
    """``state`` if a seeded projector's generator can take it; validated on a scratch
    generator, so that a refused state changes nothing."""
    if seed is None:
        if state is not None:
            raise ValueError("the state holds a generator state but this projector has "
                             "seed=None (torch's global generator)")
        return None
    if not (isinstance(state, torch.Tensor) and state.dtype == torch.uint8 and state.dim() == 1
            and state.device.type == "cpu"):
        what = (f"{state.dtype} {tuple(state.shape)} on {state.device}"
                if isinstance(state, torch.Tensor) else type(state).__name__)
        raise ValueError(f"the state's generator state must be a 1-D uint8 CPU tensor "
                         f"(torch.Generator.get_state()), got {what}")
    try:
        torch.Generator().set_state(state)
    except RuntimeError as exc:
        raise ValueError(f"the state's generator state is not a valid torch.Generator "
                         f"state: {str(exc).strip().splitlines()[0]}") from exc
    return state


def _layout_from_plain(plain: Any, s: int) -> BlockLayout:
    """The :class:`BlockLayout` of a state's plain ``layout``, checked to be one that
    :func:`momos.blocks.layout_of` makes for block size ``s``."""
    fields = ("name", "shape", "numel", "start", "n_blocks")
    if not (isinstance(plain, Mapping) and set(plain) == {"s", "spans"}
            and isinstance(plain["spans"], (list, tuple)) and plain["spans"]):
        raise ValueError("the state's layout must be a mapping of 's' and a non-empty "
                         f"sequence 'spans', got {plain!r}")
    if not is_int(plain["s"]) or plain["s"] != s:
        raise ValueError(f"the state's layout has block size {plain['s']!r}, this projector "
                         f"has s={s}")
    spans, start = [], 0
    for i, sp in enumerate(plain["spans"]):
        ok = (isinstance(sp, Mapping) and set(sp) == set(fields) and isinstance(sp["name"], str)
              and isinstance(sp["shape"], (list, tuple))
              and all(is_int(d) and d >= 0 for d in sp["shape"])
              and all(is_int(sp[f]) for f in fields[2:]))
        if ok:
            numel = 1
            for d in sp["shape"]:
                numel *= d
            ok = (numel == sp["numel"] >= 1 and sp["start"] == start
                  and sp["n_blocks"] == -(-numel // s))
        if not ok:
            raise ValueError(f"span {i} of the state's layout is not a tensor's blocks at "
                             f"block {start} for s={s}: {sp!r}")
        spans.append(Span(sp["name"], tuple(sp["shape"]), sp["numel"], start, sp["n_blocks"]))
        start += sp["n_blocks"]
    return BlockLayout(s, tuple(spans))


def _check_bank(motifs: Any, mosaic: Any, k_eff: int, m: int, s: int) -> None:
    """Check a state's bank and mosaic against its layout's ``m`` and ``k_eff``."""
    if not (isinstance(motifs, torch.Tensor) and motifs.is_floating_point()
            and tuple(motifs.shape) == (k_eff, s)):
        what = (f"{motifs.dtype} {tuple(motifs.shape)}" if isinstance(motifs, torch.Tensor)
                else type(motifs).__name__)
        raise ValueError(f"the state's motifs must be a floating ({k_eff}, {s}) bank for its "
                         f"layout's {m} blocks, got {what}")
    if not (isinstance(mosaic, torch.Tensor) and mosaic.dtype == torch.int64
            and tuple(mosaic.shape) == (m,)):
        what = (f"{mosaic.dtype} {tuple(mosaic.shape)}" if isinstance(mosaic, torch.Tensor)
                else type(mosaic).__name__)
        raise ValueError(f"the state's mosaic must be int64 ({m},), got {what}")
    if mosaic.device != motifs.device:
        raise ValueError(f"the state's mosaic is on {mosaic.device} but its motifs on "
                         f"{motifs.device}; move both to one device")
    if not (0 <= int(mosaic.min()) and int(mosaic.max()) < k_eff):
        raise ValueError(f"the state's mosaic has motif indices outside [0, {k_eff})")
