"""MoMos projection: replace every block of s weights by its nearest of k shared motifs.

One :meth:`MoMos.project` call is one projection step with the reference semantics of
``MOMOS.md``: the global block pool of :mod:`momos.blocks`; ``k_eff = max(1, min(k, m))``;
a motif bank of pool blocks at the first positions of one CPU ``torch.randperm(m)`` per
call (motif 0 the all-zero block under ``force_zero``); each block assigned to its nearest
motif (squared Euclidean, ties to the lowest index) by :func:`momos.assign.nearest_motif`
and replaced by it; padding trimmed; written back in place. ``motif_init="kmeans"`` is our
addition: Lloyd steps refine the sampled bank, kept only when not worse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral

import torch
from torch import nn

from . import assign as _assign
from .blocks import BlockLayout, layout_of, pool_parameters, to_blocks, write_blocks
from .bounds import _check_int, _check_k_or_capacity, motif_count

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
        Seeds ``self._generator = torch.Generator().manual_seed(seed)``, created once, so
        successive :meth:`project` calls draw successive permutations. ``None`` draws from
        torch's global RNG (reproducible under ``torch.manual_seed``).
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
        motif_init: str = "sample", kmeans_iters: int = 0,
    ) -> None:
        self.s = _check_int("block size s", s, 1)
        self.k, self.capacity = _check_k_or_capacity(k, capacity)
        self.force_zero = bool(force_zero)
        if motif_init not in MOTIF_INITS:
            raise ValueError(f"unknown motif_init {motif_init!r}; valid: {', '.join(MOTIF_INITS)}")
        self.motif_init = motif_init
        self.kmeans_iters = _check_int("kmeans_iters", kmeans_iters, 0)
        if self.kmeans_iters and motif_init != "kmeans":
            raise ValueError(
                f"kmeans_iters={kmeans_iters} needs motif_init='kmeans' (got {motif_init!r})"
            )
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
                f"kmeans_iters={self.kmeans_iters})")

    def project(self, model: nn.Module | Mapping[str, torch.Tensor]) -> ProjectionStats:
        """Project the weights of ``model`` onto a motif bank, in place.

        Parameters
        ----------
        model : nn.Module or Mapping[str, torch.Tensor]
            A module (its trainable, non-empty parameters in ``parameters()`` order) or a
            state dict (its non-empty floating tensors, in order). All pooled tensors must
            share one floating dtype and one device; everything is computed there.

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
        tensors = pool_parameters(model)
        layout = layout_of(tensors, self.s)
        _check_tensors(tensors)
        pool = to_blocks(tensors, layout)
        _check_finite(pool, tensors, layout)
        k_eff = motif_count(layout.m, self.k, self.capacity)
        mask = layout.real_mask(pool.device)

        motifs = self._sample(pool, k_eff)
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

    # -- steps ---------------------------------------------------------------------------

    def _sample(self, pool: torch.Tensor, k_eff: int) -> torch.Tensor:
        """The reference bank: one CPU permutation per call, motif 0 zero under force_zero."""
        perm = torch.randperm(pool.shape[0], generator=self._generator)
        if not self.force_zero:
            return pool[perm[:k_eff].to(pool.device)]
        zero = pool.new_zeros(1, pool.shape[1])
        return torch.cat([zero, pool[perm[: k_eff - 1].to(pool.device)]])

    def _nearest(self, pool: torch.Tensor, motifs: torch.Tensor) -> torch.Tensor:
        return _assign.nearest_motif(pool, motifs, method=self.assign)

    def _refine(self, pool, motifs, mosaic, distortion, mask):
        """``kmeans_iters`` Lloyd steps from the sampled bank; the refined bank, its mosaic
        and distortion if not worse than the sampled one's, else the sampled ones."""
        pool64 = pool.to(torch.float64)
        new_motifs, new_mosaic = motifs, mosaic
        for _ in range(self.kmeans_iters):
            new_motifs = _cluster_means(pool64, new_motifs, new_mosaic, self.force_zero)
            new_mosaic = self._nearest(pool, new_motifs)
        new_distortion = _distortion(pool, new_motifs[new_mosaic], mask)
        if new_distortion <= distortion:
            return new_motifs, new_mosaic, new_distortion
        return motifs, mosaic, distortion


def project(
    model: nn.Module | Mapping[str, torch.Tensor], s: int, k: int | None = None,
    capacity: float | None = None, force_zero: bool = True, seed: int | None = None,
    assign: str = "auto", motif_init: str = "sample", kmeans_iters: int = 0,
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
    momos = MoMos(s, k, capacity, force_zero, seed, assign, motif_init, kmeans_iters)
    return momos.project(model)


# -- helpers -----------------------------------------------------------------------------


def _check_assign(method) -> str:
    """Validate a nearest-motif method name against :data:`momos.assign.METHODS`."""
    if not isinstance(method, str) or (method != "auto" and method not in _assign.METHODS):
        valid = ", ".join(repr(k) for k in ["auto", *_assign.METHODS])
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
