"""CTM of one short string or small binary matrix, and its algorithmic probability.

The counterpart of R's ``acss``: the complexity that the CTM tables give a single block
(a string of 1 to 12 symbols, or a binary square of side 1 to 4), with no block
decomposition around it. The value is the table's, looked up exactly as
:class:`kcomplex.BDM` looks up each block, so it equals pybdm's lookup of that block.
Longer strings and larger arrays are what :mod:`kcomplex.bdm` is for.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .bdm import BDM
from .ctm import TABLES, load_table
from .symbols import to_numpy
from .validation import check_int, is_int

__all__ = ["algorithmic_probability", "ctm_bits"]

_LONGER = "for longer strings or larger arrays use kcomplex.bdm (BDM adds up the CTM of blocks)"


def ctm_bits(x: Any, n_symbols: int = 2) -> float:
    """CTM complexity in bits of one string or one binary square: the table's value.

    Parameters
    ----------
    x : str, sequence of int, or integer array
        One block: a string of digits (``"0110"``), a sequence or 1-D array of 1 to 12
        symbols, or a 2-D binary array of shape ``(k, k)`` with ``1 <= k <= 4``. Symbols
        lie in ``[0, n_symbols)``; ``bool`` values are not symbols.
    n_symbols : int
        Alphabet size: 2, 4, 5, 6 or 9 for strings, 2 for squares. Only the symbols'
        pattern of repetition counts (``"0102"`` and ``"2120"`` are the same block), but
        the alphabet selects the table: CTM grows with the number of symbols a machine
        may write.

    Returns
    -------
    float
        CTM in bits. A block the table lacks (some strings of 11 and 12 symbols over 4
        or more symbols) scores the largest CTM of its length plus 1 bit, as in
        :class:`kcomplex.BDM` and pybdm.

    Raises
    ------
    TypeError
        If ``n_symbols`` is not an integer, or ``x`` holds something other than integers
        (floats, ``bool``, other objects).
    ValueError
        If a string holds a non-digit, a symbol lies outside ``[0, n_symbols)``, or ``x``
        is beyond the tables: empty, longer than 12, a 2-D array that is not square or is
        larger than 4x4, more than 2 axes, or an ``n_symbols`` with no table.

    Examples
    --------
    >>> round(ctm_bits("01011100"), 6)
    22.003007
    >>> ctm_bits("0000") == ctm_bits([1, 1, 1, 1])
    True
    """
    n_symbols = check_int(n_symbols, "n_symbols")
    arr = _symbols(x)
    _check_table(arr, n_symbols)
    table = load_table(arr.ndim, n_symbols)
    side = arr.shape[0]
    if side not in table.sizes:
        lo, hi = table.sizes[0], table.sizes[-1]
        what = f"strings of {lo} to {hi} symbols" if arr.ndim == 1 else (
            f"squares of side {lo} to {hi}")
        raise ValueError(
            f"x has shape {arr.shape}; the CTM table for ndim={arr.ndim}, "
            f"n_symbols={n_symbols} covers {what}: {_LONGER}"
        )
    # One block of the block's own side: BDM's counting yields its raw key, which the
    # table ranks and looks up as it does for every block of a decomposition.
    bdm = BDM(arr.ndim, n_symbols, shape=side)
    keys, _ = bdm.count(arr, name="x").groups[side]
    return float(bdm.table.lookup(side, keys)[0])


def algorithmic_probability(x: Any, n_symbols: int = 2) -> float:
    """Algorithmic probability ``2 ** -ctm_bits(x, n_symbols)`` of one short block.

    The probability that a random small Turing machine (of the CTM enumeration) outputs
    ``x``, as the coding theorem relates it to CTM; arguments, table coverage and errors
    are those of :func:`ctm_bits`.

    Parameters
    ----------
    x : str, sequence of int, or integer array
        One block (see :func:`ctm_bits`).
    n_symbols : int
        Alphabet size: 2, 4, 5, 6 or 9 for strings, 2 for squares.

    Returns
    -------
    float
        A probability in ``(0, 1)``.

    Raises
    ------
    TypeError, ValueError
        As :func:`ctm_bits`.

    Examples
    --------
    >>> f"{algorithmic_probability('01011100'):.6e}"
    '2.379222e-07'
    """
    return 2.0 ** -ctm_bits(x, n_symbols)


def _symbols(x: Any) -> np.ndarray:
    """``x`` as an integer array (symbols not yet range-checked), or a TypeError /
    ValueError naming what is not a symbol."""
    if isinstance(x, str):
        if x and not (x.isascii() and x.isdigit()):
            raise ValueError(
                f"x must be a string of digits such as '0110', got {x!r}; "
                "or pass a sequence of ints"
            )
        return np.frombuffer(x.encode("ascii"), dtype=np.uint8) - ord("0")
    if isinstance(x, Sequence) and not isinstance(x, bytes):
        # NumPy would turn [True, 0] into [1, 0]: check the elements themselves.
        for value in np.asarray(x, dtype=object).flat:
            if not is_int(value):
                hint = ("; bool is not a symbol" if isinstance(value, (bool, np.bool_))
                        else "; a nested x must be rectangular" if isinstance(value, Sequence)
                        else "")
                raise TypeError(
                    f"x must hold integer symbols, got {value!r} ({type(value).__name__})"
                    f"{hint}"
                )
        arr = np.asarray(x)
        if arr.size and arr.dtype.kind not in "iu":  # integers beyond 64 bits
            raise ValueError(f"x holds a symbol larger than any CTM alphabet: {x!r}")
        return arr
    if not isinstance(x, np.ndarray) and not _is_tensor(x):
        raise TypeError(
            "x must be a string of digits, a sequence of ints or an integer array, got "
            f"{type(x).__name__}"
        )
    arr = to_numpy(x)
    if arr.dtype == np.bool_:
        raise TypeError("x is a bool array; bool is not a symbol: pass x.astype(int)")
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"x has dtype {arr.dtype}; CTM needs integer symbols (binarize or symbolize "
            "real values first: kcomplex.binarize, kcomplex.symbolize)"
        )
    return arr


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _check_table(arr: np.ndarray, n_symbols: int) -> None:
    """A ValueError unless a CTM table exists for the shape of ``arr`` and ``n_symbols``
    and every symbol lies in ``[0, n_symbols)``."""
    if arr.ndim not in (1, 2) or arr.size == 0 or arr.ndim == 2 and (
            arr.shape[0] != arr.shape[1]):
        raise ValueError(
            f"x has shape {arr.shape}; the CTM tables cover one non-empty string (1-D) or "
            f"one square binary matrix (2-D, k x k): {_LONGER}"
        )
    if (arr.ndim, n_symbols) not in TABLES:
        alphabets = ", ".join(str(n) for d, n in TABLES if d == arr.ndim)
        raise ValueError(
            f"no CTM table for {arr.ndim}-D blocks over n_symbols={n_symbols}; "
            f"{arr.ndim}-D tables exist for n_symbols in {{{alphabets}}}"
        )
    bad = np.flatnonzero((arr < 0) | (arr >= n_symbols))
    if bad.size:
        where = np.unravel_index(bad[0], arr.shape)
        raise ValueError(
            f"x holds symbols outside [0, {n_symbols}), first {arr[where]} at index "
            f"{tuple(int(i) for i in where)}; pass the right n_symbols"
        )
