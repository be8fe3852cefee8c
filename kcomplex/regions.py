"""Where the structure of a weight matrix is: its BDM shared out over its blocks.

The map of a matrix ``W`` has one value per block of the 2-D BDM partition of its signs
(``W > 0``; square blocks tiled from the top-left corner, incomplete edge blocks dropped:
partition ``"ignore"``, as the default :class:`kcomplex.BDM`). A block whose type (its
4x4 pattern) occurs ``n`` times in the matrix gets

    (CTM(type) + log2(n)) / n

bits: each distinct type's term of the BDM sum, shared equally among its copies. The map
therefore sums exactly (to float rounding) to ``BDM(ndim=2).bdm(binarize(W))``. A block
that repeats a common pattern gets little, a unique block its whole CTM value.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .bdm import BDM
from .plot import pyplot, save_figure
from .symbols import binarize

__all__ = ["complexity_map", "plot_complexity_map"]


def complexity_map(w: Any, block: int | tuple[int, int] = (4, 4)) -> np.ndarray:
    """Regional BDM of a weight matrix: bits per block of the BDM partition of its signs.

    Parameters
    ----------
    w : array_like or torch.Tensor
        A real 2-D weight matrix.
    block : int or (int, int)
        Square block side, one of the 2-D CTM table's (4, the default, or smaller).

    Returns
    -------
    numpy.ndarray
        float64 of shape ``(rows // side, cols // side)``; entry ``(i, j)`` is the share
        of the block at rows ``side*i ...`` and columns ``side*j ...`` (module notes).
        ``map.sum()`` equals ``kcomplex.BDM(ndim=2, shape=block).bdm(kcomplex.binarize(w))``.

    Raises
    ------
    TypeError
        If ``w`` is not real, or ``block`` not integers.
    ValueError
        If ``w`` is not 2-D, holds NaN or Inf, is smaller than one block, or ``block``
        is not square or not in the table.

    Examples
    --------
    >>> import numpy as np
    >>> m = complexity_map(np.ones((8, 8)))  # four copies of one block
    >>> m.shape, bool(np.all(m == m[0, 0]))
    ((2, 2), True)
    """
    bdm = BDM(ndim=2, shape=block)
    bits = binarize(w)
    if bits.ndim != 2:
        raise ValueError(f"weights must be a 2-D matrix, got shape {bits.shape}")
    s = bdm.size
    rows, cols = bits.shape[0] // s, bits.shape[1] // s
    if rows == 0 or cols == 0:
        raise ValueError(
            f"weights of shape {bits.shape} are smaller than one {s}x{s} block: use a "
            "smaller block"
        )
    blocks = bits[: rows * s, : cols * s].reshape(rows, s, cols, s).swapaxes(1, 2)
    # A block's key: its symbols read row-major, the first one most significant.
    weights = np.left_shift(1, np.arange(s * s - 1, -1, -1), dtype=np.int64)
    keys = blocks.reshape(rows * cols, s * s).astype(np.int64) @ weights
    types, which, n = np.unique(keys, return_inverse=True, return_counts=True)
    share = (bdm.table.lookup(s, types) + np.log2(n)) / n
    return share[which.reshape(-1)].reshape(rows, cols)


def plot_complexity_map(
    cmap: np.ndarray, path: str | os.PathLike | None = None, ax: Any = None,
    title: str = "Complexity map",
):
    """Heatmap of a :func:`complexity_map`, bits per block, with a colour bar.

    Parameters
    ----------
    cmap : numpy.ndarray
        A 2-D map.
    path : path, optional
        Save the figure there (atomically; format from the suffix).
    ax : matplotlib Axes, optional
        Draw into it instead of a new figure.
    title : str
        Title of the axes; the total (the matrix's BDM) is added to it.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``cmap`` is not a 2-D array.
    """
    cmap = np.asarray(cmap, dtype=np.float64)
    if cmap.ndim != 2:
        raise ValueError(f"a complexity map is 2-D, got shape {cmap.shape}")
    plt = pyplot()
    if ax is None:
        rows, cols = cmap.shape
        fig, ax = plt.subplots(figsize=(min(12, 3 + cols / 8), min(12, 2.5 + rows / 8)))
    else:
        fig = ax.figure
    image = ax.imshow(cmap, cmap="viridis", interpolation="nearest", aspect="auto")
    fig.colorbar(image, ax=ax, label="bits per block")
    ax.set_xlabel("block column")
    ax.set_ylabel("block row")
    ax.set_title(f"{title} (total {cmap.sum():.6g} bits)")
    return save_figure(fig, path)
