"""The paper's description-length bound of a MoMos model and its relative algorithmic
compression (RAC), and the number of motifs that a capacity gives.

With n weights, block size s, m = ceil(n / s) blocks and k motifs stored at q bits per
value, the bound is ``k*s*q + m*ceil(log2 k)`` bits (the bank, then one fixed-width index
per block; ``ceil(log2 1) = 0``) and ``RAC = n*q / bound``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

__all__ = ["motif_count", "bound_bits", "rac"]


# The two checks are shared with momos.projection: public names, but not in __all__ (they
# are momos's internals, not its API).

def check_int_at_least(name: str, value: object, minimum: int) -> int:
    """``value`` as a Python ``int`` if it is an integer ``>= minimum``.

    Unlike :func:`kcomplex.validation.check_int`, every refusal is a ``ValueError``, which
    is what the bounds and :class:`momos.MoMos` have always raised for their arguments.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        The argument.
    minimum : int
        Inclusive lower bound.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If ``value`` is not an integer (``bool`` is not) or is below ``minimum``.

    Examples
    --------
    >>> check_int_at_least("s", 4, 1)
    4
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_capacity(capacity: object) -> float:
    """``capacity`` as a float in (0, 1], or a ValueError naming the problem."""
    if isinstance(capacity, bool) or not isinstance(capacity, Real) or not 0 < capacity <= 1:
        raise ValueError(f"capacity must be a number in (0, 1] (k/m), got {capacity!r}")
    return float(capacity)


def check_k_or_capacity(k: object, capacity: object) -> tuple[int | None, float | None]:
    """Validate that exactly one of ``k`` / ``capacity`` is given, and each in range.

    Parameters
    ----------
    k : int or None
        Number of motifs, ``>= 1``.
    capacity : float or None
        ``k/m`` in (0, 1].

    Returns
    -------
    tuple of (int or None, float or None)
        ``(k, None)`` or ``(None, capacity)``, normalized to ``int`` / ``float``.

    Raises
    ------
    ValueError
        If both or neither are given, or the one given is out of range.

    Examples
    --------
    >>> check_k_or_capacity(None, 0.05)
    (None, 0.05)
    """
    if (k is None) == (capacity is None):
        raise ValueError(
            "give exactly one of k (number of motifs) or capacity (k/m in (0, 1]), "
            f"got k={k!r}, capacity={capacity!r}"
        )
    if k is not None:
        return check_int_at_least("k", k, 1), None
    return None, _check_capacity(capacity)


def motif_count(m: int, k: int | None = None, capacity: float | None = None) -> int:
    """Number of motifs actually used for a pool of ``m`` blocks.

    Parameters
    ----------
    m : int
        Number of blocks (>= 1).
    k : int, optional
        Requested number of motifs (>= 1); the result is ``max(1, min(k, m))``.
    capacity : float, optional
        ``k/m`` in (0, 1]; the result is ``max(1, min(m, floor(capacity * m)))``, with the
        product taken in floating point as the reference code does.

    Returns
    -------
    int
        The effective number of motifs, in ``[1, m]``.

    Raises
    ------
    ValueError
        If ``m < 1``, if not exactly one of ``k`` / ``capacity`` is given, or either is out
        of range.

    Examples
    --------
    >>> motif_count(493_317, capacity=0.05)
    24665
    >>> motif_count(10, k=50)
    10
    """
    m = check_int_at_least("m", m, 1)
    k, capacity = check_k_or_capacity(k, capacity)
    if capacity is not None:
        k = math.floor(capacity * m)
    return max(1, min(k, m))


def bound_bits(n: int, s: int, k: int | None = None, capacity: float | None = None,
               q: int = 32) -> int:
    """The paper's description-length bound ``k*s*q + m*ceil(log2 k)`` in bits.

    Parameters
    ----------
    n : int
        Number of weights (>= 1).
    s : int
        Block size (>= 1); ``m = ceil(n / s)``.
    k : int, optional
        Number of motifs; clipped to ``[1, m]`` as the projection does.
    capacity : float, optional
        ``k/m`` in (0, 1], instead of ``k``.
    q : int
        Bits per stored motif value (default 32).

    Returns
    -------
    int
        Bits of the bank plus one fixed-width index per block (O(1) terms left out).

    Raises
    ------
    ValueError
        On a non-integer or out-of-range ``n``, ``s``, ``q``, ``k`` or ``capacity``, or if
        not exactly one of ``k`` / ``capacity`` is given.

    Examples
    --------
    >>> bound_bits(986_634, 2, capacity=0.05)   # MLP of the paper: 24665*2*32 + 493317*15
    8978315
    """
    n = check_int_at_least("n", n, 1)
    s = check_int_at_least("s", s, 1)
    q = check_int_at_least("q", q, 1)
    m = -(-n // s)
    k = motif_count(m, k, capacity)
    return k * s * q + m * (k - 1).bit_length()  # (k-1).bit_length() == ceil(log2 k)


def rac(n: int, s: int, k: int | None = None, capacity: float | None = None,
        q: int = 32) -> float:
    """Relative algorithmic compression ``n*q / bound_bits(n, s, k, capacity, q)``.

    Parameters and errors are those of :func:`bound_bits`.

    Returns
    -------
    float
        How many times shorter the MoMos bound is than ``n*q`` raw bits.

    Examples
    --------
    >>> round(rac(986_634, 2, capacity=0.05), 2)   # MLP 3072-256-256-256-256-10
    3.52
    >>> round(rac(269_722, 2, capacity=0.05), 2)   # ResNet-20
    3.95
    """
    n, q = check_int_at_least("n", n, 1), check_int_at_least("q", q, 1)
    return n * q / bound_bits(n, s, k, capacity, q)
