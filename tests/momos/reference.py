"""Slow, obvious twin of one MoMos projection step, exactly as ``docs/method.md`` states it: the
oracle the ``momos`` tests compare against.

Independent of ``momos``: its own choice of tensors, per-tensor zero padding, pool, motif
count, bank sampling from ``torch.randperm(m, generator=...)`` on the CPU (one draw per
step, whatever k is), float64 brute-force distances with the lowest index taken
explicitly among the minima, and its own statistics. Nothing is modified in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Step:
    """The outcome of one reference projection step (all on the CPU)."""

    weights: list[torch.Tensor]  # new value of every pooled tensor, its dtype and shape
    k: int
    distortion: float
    changed: int
    motif_counts: torch.Tensor   # int64 (k,)
    motifs: torch.Tensor         # (k, s), dtype of the weights
    mosaic: torch.Tensor         # int64 (m,)
    m: int


def pooled_tensors(source) -> list[torch.Tensor]:
    """Trainable non-empty parameters in ``parameters()`` order, or the non-empty floating
    tensors of a state dict in order."""
    if isinstance(source, nn.Module):
        return [p for p in source.parameters() if p.requires_grad and p.numel() > 0]
    return [t for t in source.values()
            if torch.is_tensor(t) and t.is_floating_point() and t.numel() > 0]


def n_motifs(m: int, k: int | None = None, capacity: float | None = None) -> int:
    """``k_eff = max(1, min(k, m))``, with ``k = floor(capacity * m)`` from a capacity."""
    if capacity is not None:
        k = math.floor(capacity * m)
    return max(1, min(k, m))


def nearest(pool: torch.Tensor, motifs: torch.Tensor) -> torch.Tensor:
    """Float64 brute force: index of the nearest motif of each block, the lowest index
    among equal squared distances."""
    b = pool.to(torch.float64)
    z = motifs.to(torch.float64)
    d = ((b[:, None, :] - z[None, :, :]) ** 2).sum(dim=2)
    k = z.shape[0]
    ids = torch.arange(k).expand_as(d)
    lowest = d.min(dim=1, keepdim=True).values
    return torch.where(d == lowest, ids, k).min(dim=1).values


def blocks_of(tensors: list[torch.Tensor], s: int) -> torch.Tensor:
    """Pool ``(m, s)`` in float64: each tensor flattened, zero-padded on its own to a
    multiple of ``s``, cut into rows; blocks never cross tensors."""
    rows = []
    for t in tensors:
        flat = t.detach().cpu().reshape(-1).to(torch.float64)
        n_blocks = math.ceil(flat.numel() / s)
        padded = torch.zeros(n_blocks * s, dtype=torch.float64)
        padded[: flat.numel()] = flat
        rows.extend(padded[j * s : (j + 1) * s] for j in range(n_blocks))
    return torch.stack(rows)


def project(tensors: list[torch.Tensor], s: int, k: int | None = None,
            capacity: float | None = None, force_zero: bool = True,
            generator: torch.Generator | None = None) -> Step:
    """One projection step of ``tensors`` (not modified); ``generator`` advances."""
    dtype = tensors[0].dtype
    pool = blocks_of(tensors, s)
    m = pool.shape[0]
    k_eff = n_motifs(m, k, capacity)
    perm = torch.randperm(m, generator=generator)
    if force_zero:
        bank = [torch.zeros(s, dtype=torch.float64)] + [pool[perm[i]] for i in range(k_eff - 1)]
    else:
        bank = [pool[perm[i]] for i in range(k_eff)]
    motifs = torch.stack(bank)
    mosaic = nearest(pool, motifs)
    new_pool = motifs[mosaic].reshape(-1)

    weights, distortion, changed, start = [], 0.0, 0, 0
    for t in tensors:
        old = t.detach().cpu().reshape(-1).to(torch.float64)
        new = new_pool[start : start + old.numel()]
        start += math.ceil(old.numel() / s) * s
        distortion += float(((new - old) ** 2).sum())
        changed += int((new != old).sum())
        weights.append(new.to(dtype).reshape(t.shape))
    counts = torch.bincount(mosaic, minlength=k_eff)
    return Step(weights, k_eff, distortion, changed, counts, motifs.to(dtype), mosaic, m)
