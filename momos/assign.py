"""Exact nearest-motif search: for every block, the motif at the least squared Euclidean
distance, ties to the lowest motif index."""

from __future__ import annotations

import torch

__all__ = ["nearest_motif"]


def nearest_motif(
    blocks: torch.Tensor, motifs: torch.Tensor, method: str = "auto",
    memory_budget: int = 1 << 28,
) -> torch.Tensor:
    """Index of the nearest motif of each block (float64 brute force, chunked).

    Parameters
    ----------
    blocks : torch.Tensor
        ``(m, s)``.
    motifs : torch.Tensor
        ``(k, s)``, on the same device.
    method : str
        Search method (only the brute force for now).
    memory_budget : int
        Bytes for the ``chunk x k`` distance matrix.

    Returns
    -------
    torch.Tensor
        ``int64`` of shape ``(m,)`` on the blocks' device.
    """
    b = blocks.to(torch.float64)
    z = motifs.to(torch.float64)
    chunk = max(1, memory_budget // (8 * max(1, z.shape[0])))
    out = torch.empty(b.shape[0], dtype=torch.int64, device=blocks.device)
    for i in range(0, b.shape[0], chunk):
        d = ((b[i : i + chunk, None, :] - z[None, :, :]) ** 2).sum(-1)
        out[i : i + chunk] = d.argmin(dim=1)  # argmin returns the first minimum
    return out
