"""Exact nearest-motif search: for every block, the motif at the least squared Euclidean
distance, ties to the lowest motif index.

"Exact" means the same index as the float64 brute force

    ((b[:, None, :] - z[None]) ** 2).sum(-1).argmin(1)      # b, z cast to float64

and, where two motifs are at exactly the same float64 distance, the lower index (which is
also what that brute force returns). The fast methods get there in two steps: a fast
search that also reports, for each block, how far the best candidate is ahead of the
second best; then the float64 brute force for the few blocks where that lead is within
the search's rounding error ("near ties"), so rounding can never pick another motif.
Identical motifs are merged first (keeping the lowest index), so duplicates in the bank
cost nothing.

Methods (``SEARCH_METHODS``):

- ``"kdtree_numba"``: a bucket KD-tree on the distinct motifs in numba, float64, all
  cores; blocks are searched grouped by the leaf they fall in. The fastest on CPU for
  small block sizes (about 2x ``"kdtree"``, see docs/performance.md).
- ``"kdtree"``: ``scipy.spatial.cKDTree`` on the distinct motifs, two neighbours per
  block, float64, ``workers=-1``.
- ``"matmul"``: chunked ``|z|^2 - 2 b z^T`` (``|b|^2`` is common to a block's motifs) in
  the input dtype (float32 on a GPU is the point) with a rigorous rounding-error bound on
  the lead (``_lead_bound_coef``); blocks within it get a float64 GEMM, and those still
  within its bound the brute force. CPU or CUDA; no host copies but small index tensors.
- ``"brute"``: the float64 brute force itself, chunked; the reference, and slow.
- ``"auto"``: ``"kdtree_numba"`` on CPU for ``s <= KDTREE_MAX_S``, else ``"matmul"``.

The KD-tree methods copy CUDA inputs to the host and the result back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numba
import numpy as np
import torch

from . import _kernels as _k

__all__ = ["KDTREE_MAX_S", "SEARCH_METHODS", "nearest_motif"]

#: ``"auto"`` uses the KD-tree on CPU up to this block size and ``"matmul"`` above. On the
#: paper's MLP (2 cores) the numba tree is 2-4x faster than the GEMM at s=8 and the GEMM
#: wins from s=12 on (docs/performance.md).
KDTREE_MAX_S = 8

#: Near-tie window of the KD-tree path, relative to the distance. The tree's float64
#: distances and the brute force's differ by a few ulps (about 1e-15 relative); a
#: window of 1e-10 is far wider, and still flags almost no block of real weights.
_KD_REL = 1e-10
#: ... plus an absolute floor, for distances in the subnormal range where relative
#: error bounds fail (sqrt of ~1e-300: the tree reports Euclidean, not squared, distances).
_KD_ABS = 1e-150

#: ... the same for squared distances (the numba tree works with those).
_KD_TINY = _KD_ABS**2

_KDTREE_LEAFSIZE = 16
#: Leaf size of the numba tree per coordinate (16 points at s=2, 32 at s=4).
_NB_LEAF_PER_DIM = 8


# -- public ---------------------------------------------------------------------------


def nearest_motif(
    blocks: torch.Tensor,
    motifs: torch.Tensor,
    method: str = "auto",
    memory_budget: int = 1 << 28,
) -> torch.Tensor:
    """Index of the nearest motif of each block, ties to the lowest index.

    Parameters
    ----------
    blocks : torch.Tensor
        ``(m, s)`` floating point, CPU or CUDA; ``m`` may be 0.
    motifs : torch.Tensor
        ``(k, s)`` floating point with ``k >= 1``, on the blocks' device.
    method : str
        ``"auto"`` or a key of ``SEARCH_METHODS``: ``"kdtree_numba"``, ``"kdtree"``,
        ``"matmul"``, ``"brute"``. All give the same (exact) answer.
    memory_budget : int
        Bytes for the largest temporary (a ``chunk x k`` distance matrix; the
        ``chunk x k x s`` differences of the brute force).

    Returns
    -------
    torch.Tensor
        ``int64`` of shape ``(m,)`` on the blocks' device. The inputs are not modified.

    Raises
    ------
    TypeError
        An input is not a tensor.
    ValueError
        Wrong ndim, different block sizes, no motif, different devices, a non-floating
        dtype, NaN or Inf values, an unknown method or a budget below one byte.

    Examples
    --------
    >>> b = torch.tensor([[0.1, 0.0], [0.9, 1.0], [0.5, 0.5]])
    >>> z = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    >>> nearest_motif(b, z).tolist()  # the last block is halfway: the lower index
    [0, 1, 0]
    """
    _check_inputs(blocks, motifs)
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 1:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
    name = _resolve(method, blocks)
    if blocks.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=blocks.device)
    with torch.no_grad():
        return SEARCH_METHODS[name](blocks.detach(), motifs.detach(), memory_budget)


# -- checks ---------------------------------------------------------------------------


def _check_inputs(blocks: torch.Tensor, motifs: torch.Tensor) -> None:
    for name, t in (("blocks", blocks), ("motifs", motifs)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 2:
            raise ValueError(f"{name} must be 2-D ({'m' if name == 'blocks' else 'k'}, s); "
                             f"got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must have a floating dtype, got {t.dtype}; "
                             "convert with .float() or .double()")
    if blocks.shape[1] != motifs.shape[1]:
        raise ValueError(f"block size mismatch: blocks have s={blocks.shape[1]}, "
                         f"motifs have s={motifs.shape[1]}")
    if motifs.shape[0] == 0:
        raise ValueError("motifs is empty (k == 0): need at least one motif")
    if blocks.device != motifs.device:
        raise ValueError(f"blocks are on {blocks.device} but motifs on {motifs.device}; "
                         "move both to one device")
    for name, t in (("blocks", blocks), ("motifs", motifs)):
        if t.numel() and not bool(torch.isfinite(t).all()):
            n_nan = int(torch.isnan(t).sum())
            n_inf = int(torch.isinf(t).sum())
            raise ValueError(f"{name} contain non-finite values: {n_nan} NaN and {n_inf} Inf")


def _resolve(method: str, blocks: torch.Tensor) -> str:
    if method == "auto":
        small = blocks.shape[1] <= KDTREE_MAX_S
        return "kdtree_numba" if blocks.device.type == "cpu" and small else "matmul"
    if not isinstance(method, str) or method not in SEARCH_METHODS:
        valid = ", ".join(repr(k) for k in ["auto", *SEARCH_METHODS])
        raise ValueError(f"unknown method {method!r}; valid: {valid}")
    return method


# -- float64 brute force (the reference, and the near-tie resolver) -------------------


def _brute(blocks: torch.Tensor, motifs: torch.Tensor, memory_budget: int) -> torch.Tensor:
    """First argmin of the float64 distances, chunked so that the ``chunk x k x s``
    differences fit the budget. On the blocks' device."""
    b = blocks.to(torch.float64)
    z = motifs.to(torch.float64)
    k, s = z.shape
    chunk = max(1, memory_budget // (8 * k * max(1, s)))
    out = torch.empty(b.shape[0], dtype=torch.int64, device=b.device)
    for i in range(0, b.shape[0], chunk):
        d = ((b[i : i + chunk, None, :] - z[None, :, :]) ** 2).sum(-1)
        out[i : i + chunk] = d.argmin(dim=1)  # argmin returns the first minimum
    return out


def _resolve_near_ties(
    out: torch.Tensor, near: torch.Tensor, blocks: torch.Tensor, motifs: torch.Tensor,
    memory_budget: int,
) -> torch.Tensor:
    """Overwrite ``out`` at the flagged blocks with the brute force against all motifs."""
    rows = near.nonzero().flatten()
    if rows.numel():
        out[rows] = _brute(blocks[rows], motifs, memory_budget)
    return out


# -- kdtree ---------------------------------------------------------------------------


def _distinct_rows_np(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``z`` (``-0.0`` counts as ``0.0``) and, for each, the lowest index
    at which it occurs, in order of that index."""
    z = z + 0.0  # -0.0 -> 0.0: equal distances to everything, so one motif
    order = np.lexsort(z.T[::-1])  # stable: equal rows keep increasing index
    zs = z[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = np.any(zs[1:] != zs[:-1], axis=1)
    first = np.sort(order[new])
    return z[first], first


def _kdtree(blocks: torch.Tensor, motifs: torch.Tensor, memory_budget: int) -> torch.Tensor:
    from scipy.spatial import cKDTree

    b64 = blocks.to("cpu", torch.float64)
    z64 = motifs.to("cpu", torch.float64)
    distinct, first = _distinct_rows_np(z64.numpy())
    m = b64.shape[0]
    if len(distinct) == 1:  # every block goes to the first motif
        return torch.full((m,), int(first[0]), dtype=torch.int64, device=blocks.device)
    tree = cKDTree(distinct, leafsize=_KDTREE_LEAFSIZE, compact_nodes=False,
                   balanced_tree=False)
    dist, idx = tree.query(b64.numpy(), k=2, eps=0, workers=-1)
    # Lead of the best over the second best within the window: resolve exactly.
    near = ~(dist[:, 1] > dist[:, 0] * (1.0 + _KD_REL) + _KD_ABS)
    out = torch.from_numpy(first[idx[:, 0]].astype(np.int64, copy=False))
    out = _resolve_near_ties(out, torch.from_numpy(near), b64, z64, memory_budget)
    return out.to(blocks.device)


# -- kdtree_numba: a bucket KD-tree searched leaf by leaf (kernels in momos._kernels) --


@contextmanager
def _torch_thread_budget() -> Iterator[None]:
    """Run numba's parallel kernels on torch's thread budget, and leave torch's intact.

    numba's OpenMP layer resets the process-wide OpenMP thread count, torch's included, at
    a parallel launch: a process limited to one thread (``torch.set_num_threads(1)``,
    ``OMP_NUM_THREADS=1`` as torchrun sets) would otherwise train on every core after its
    first projection, oversubscribing and changing results between identical calls.
    """
    budget = torch.get_num_threads()
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(budget, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)
        if torch.get_num_threads() != budget:
            torch.set_num_threads(budget)


def _kdtree_numba(blocks: torch.Tensor, motifs: torch.Tensor, memory_budget: int) -> torch.Tensor:
    with _torch_thread_budget():
        return _kdtree_numba_search(blocks, motifs, memory_budget)


def _kdtree_numba_search(blocks: torch.Tensor, motifs: torch.Tensor,
                         memory_budget: int) -> torch.Tensor:
    b64 = blocks.to("cpu", torch.float64)
    z64 = motifs.to("cpu", torch.float64)
    distinct, first = _distinct_rows_np(z64.numpy())
    m, s = b64.shape
    if len(distinct) == 1:  # every block goes to the first motif
        return torch.full((m,), int(first[0]), dtype=torch.int64, device=blocks.device)
    leaf = _NB_LEAF_PER_DIM * s
    (perm, pts, start, end, left, right, sdim, sval, lo, hi, clo, chi, leaves,
     leaf_no) = _k.kd_build(distinct, leaf)
    b_np = np.ascontiguousarray(b64.numpy())
    home = _k.kd_home(b_np, left, sdim, sval, right, leaf_no)
    order, offsets = _k.kd_group(home, len(leaves))
    best, near = _k.kd_search(b_np, perm, pts, start, end, left, right, lo, hi, clo, chi,
                            leaves, order, offsets, 16 * numba.get_num_threads(), leaf,
                            _KD_REL, _KD_TINY)
    out = torch.from_numpy(first[best])
    out = _resolve_near_ties(out, torch.from_numpy(near), b64, z64, memory_budget)
    return out.to(blocks.device)


# -- matmul ---------------------------------------------------------------------------


def _distinct_rows_torch(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of ``_distinct_rows_np``, on ``z``'s device."""
    z = z + 0.0
    uniq, inverse = torch.unique(z, dim=0, return_inverse=True)
    k = z.shape[0]
    first = torch.full((uniq.shape[0],), k, dtype=torch.int64, device=z.device)
    first.scatter_reduce_(0, inverse, torch.arange(k, device=z.device), reduce="amin")
    first, order = first.sort()
    return uniq[order], first


def _gemm_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype to run the GEMM in: the input's (float32 for half types), except that a
    float32 GEMM that torch is set to run in reduced precision (TF32 on CUDA, bf16 through
    oneDNN) runs in float64 instead: the error bound of TF32 or bf16 inputs would send
    almost every block to the float64 resolver anyway."""
    if dtype == torch.float64:
        return dtype
    return torch.float64 if _reduced_fp32_gemm(device) else torch.float32


def _reduced_fp32_gemm(device: torch.device) -> bool:
    """Whether a float32 GEMM on ``device`` may round its inputs below float32 precision:
    ``torch.backends[.cuda|.mkldnn].matmul.fp32_precision`` (the new API), or
    ``set_float32_matmul_precision`` / ``allow_tf32`` (the legacy one). Unsure (torch
    refuses to answer when both APIs were used) counts as reduced."""
    backend = (torch.backends.cuda if device.type == "cuda"
               else getattr(torch.backends, "mkldnn", None))
    for owner in (torch.backends, getattr(backend, "matmul", None)):
        setting = getattr(owner, "fp32_precision", None)
        if isinstance(setting, str) and setting.lower() in ("tf32", "bf16"):
            return True
    try:
        if torch.get_float32_matmul_precision() != "highest":
            return True
        return device.type == "cuda" and bool(torch.backends.cuda.matmul.allow_tf32)
    except RuntimeError:  # "mix of the legacy and new APIs"
        return True


def _lead_bound_coef(s: int, dtype: torch.dtype) -> float:
    """``c`` such that a lead ``d2 - d1 > c * (3|b| + |z1|)^2`` of the GEMM distances
    proves that the GEMM's best motif is the float64 brute force's.

    The GEMM gives ``e_j = |z_j|^2 - 2 b.z_j`` (``|b|^2`` is the same for every motif and
    left out) with an error of at most ``g (|b| + |z_j|)^2``, ``g = gamma_{s+2}`` of the
    dtype's unit roundoff (``s`` products summed in any order, ``|z|^2`` the same, one
    more rounding for the sum). The float64 reference ``r_j`` is within
    ``h = (s+3) 2^-53`` of the true distance ``d_j``, relatively. Let ``j1`` be the
    GEMM's best and ``jr != j1`` the reference's: then ``e_jr >= e_(2)``, the second best,
    and ``d_jr <= d_j1 (1 + 3h)``, so ``|z_jr| <= |b| + sqrt(d_jr) <= 2|b| + |z_j1|``
    (to first order) and

        e_(2) - e_(1) <= e_jr - e_j1 <= (d_jr - d_j1) + g(|b|+|z_jr|)^2 + g(|b|+|z_j1|)^2
                      <= (3h + 2g) (3|b| + |z_j1|)^2.

    A lead larger than that is impossible, so ``j1`` is the reference's answer. The
    returned ``c`` is that factor doubled, for the roundings of the bound itself.
    """
    u = torch.finfo(dtype).eps / 2
    n = s + 2
    gamma = n * u / (1.0 - n * u)
    return 2.0 * (2.0 * gamma + 3.0 * (s + 3) * 2.0**-53)


def _gemm_pass(
    b: torch.Tensor, distinct: torch.Tensor, first: torch.Tensor, memory_budget: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best motif of each block by chunked GEMM in ``b``'s dtype, mapped to the lowest
    original index, and whether its lead over the second best is within the bound."""
    m, s = b.shape
    ku = distinct.shape[0]
    zn = (distinct * distinct).sum(1)
    zt = distinct.T.contiguous()
    bnorm3 = 3.0 * torch.linalg.vector_norm(b, dim=1)
    znorm = zn.sqrt()
    coef = _lead_bound_coef(s, b.dtype)
    out = torch.empty(m, dtype=torch.int64, device=b.device)
    near = torch.empty(m, dtype=torch.bool, device=b.device)
    chunk = max(1, memory_budget // (ku * b.element_size()))
    for i in range(0, m, chunk):
        j = min(m, i + chunk)
        e = torch.addmm(zn, b[i:j], zt, beta=1.0, alpha=-2.0)  # |z|^2 - 2 b.z
        vals, idx = e.topk(2, dim=1, largest=False, sorted=True)
        del e
        best = idx[:, 0]
        scale = bnorm3[i:j] + znorm[best]
        # A lead within the bound is a near tie; NaN or Inf (overflow) is flagged too.
        near[i:j] = ~(vals[:, 1] - vals[:, 0] > coef * scale * scale)
        out[i:j] = first[best]
    return out, near


def _matmul(blocks: torch.Tensor, motifs: torch.Tensor, memory_budget: int) -> torch.Tensor:
    dtype = torch.promote_types(blocks.dtype, motifs.dtype)
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32  # half types: exact in float32
    dtype = _gemm_dtype(dtype, blocks.device)
    distinct, first = _distinct_rows_torch(motifs)
    m = blocks.shape[0]
    if distinct.shape[0] == 1:  # every block goes to the first motif
        return first[:1].expand(m).clone()
    out, near = _gemm_pass(blocks.to(dtype), distinct.to(dtype), first, memory_budget)
    if dtype != torch.float64:
        # float32 leads are often within the bound on real weights (distances far below
        # the norms): a float64 GEMM on those blocks settles nearly all of them.
        rows = near.nonzero().flatten()
        if rows.numel():
            out64, near64 = _gemm_pass(blocks[rows].to(torch.float64),
                                       distinct.to(torch.float64), first, memory_budget)
            out[rows] = out64
            near[rows] = near64
    return _resolve_near_ties(out, near, blocks, motifs, memory_budget)


#: The search methods by name; ``"auto"`` picks one of them.
SEARCH_METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "kdtree": _kdtree,
    "kdtree_numba": _kdtree_numba,
    "matmul": _matmul,
    "brute": _brute,
}
