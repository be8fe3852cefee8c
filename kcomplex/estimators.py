"""The estimators that :func:`kcomplex.analyze` runs, by name, in one registry.

Each estimator gives the bits of one tensor and the bits of the concatenation of several
(the paper's weight vector), the latter streamed over the tensors without concatenating
them where the estimator allows it. A tensor and the concatenation of tensors are
measured alike: for every estimator the total over pieces equals the estimate of their
concatenation, however it is cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from . import _kernels as _k
from .bdm import BDM
from .compressors import CODECS, compressed_bits_chunks

__all__ = ["Estimator", "ESTIMATORS", "PRESETS", "resolve_estimators"]


@dataclass(frozen=True)
class Estimator:
    """A complexity estimator in bits.

    Attributes
    ----------
    name : str
        Registry name; the report column is ``<name>_bits``.
    description : str
        One line for ``--help`` and the docs.
    tensor : callable
        ``float32 1-D array -> bits``.
    total : callable
        ``sequence of float32 1-D arrays -> bits`` of their concatenation.
    """

    name: str
    description: str
    tensor: Callable[[np.ndarray], float]
    total: Callable[[Sequence[np.ndarray]], float]


@lru_cache(maxsize=1)
def _bdm() -> BDM:
    return BDM()


def _bdm_tensor(w: np.ndarray) -> float:
    b = _bdm()
    if w.size < b.size:
        raise ValueError(f"fewer weights than one block ({b.size})")
    return b.bdm((w > 0).view(np.uint8))


def _bdm_total(arrays: Sequence[np.ndarray]) -> float:
    """BDM of the concatenation: each piece counted on the block grid of the whole, the
    few symbols past its last full block carried over to the next piece."""
    b = _bdm()
    counts, carry = None, np.empty(0, dtype=np.uint8)
    for w in arrays:
        bits = np.concatenate([carry, (w > 0).view(np.uint8)])
        cut = bits.size - bits.size % b.size
        if cut:
            part = b.count(bits[:cut])
            counts = part if counts is None else counts + part
        carry = bits[cut:]
    if counts is None:
        raise ValueError(f"fewer weights than one BDM block ({b.size})")
    return b.bdm_from_counts(counts)


def _entropy_bits(n: int, distinct: int, nlogn: float) -> float:
    """Bits of the entropy estimator from the counts of `n` float32 values.

    The cheaper of two codes, after one flag bit that says which::

        1 + min(32 * distinct + n log2 n - sum c log2 c,  32 * n)

    The first is a two-part code: the table of the distinct values (32 bits each), then
    the sequence of table indices at its empirical order-0 entropy n*H. The second is the
    raw float32 bits. Mostly distinct values (trained weights) make the table cost more
    than the raw bits, and the flag keeps the estimate at most 32 bits a weight plus one.

    Parameters
    ----------
    n : int
        Number of values, >= 1.
    distinct : int
        Number of distinct float32 bit patterns among them.
    nlogn : float
        ``sum c log2 c`` over the count ``c`` of each distinct value.

    Returns
    -------
    float
        Bits.
    """
    two_part = 32.0 * distinct + n * math.log2(n) - nlogn
    return 1.0 + min(two_part, 32.0 * n)


def _entropy_tensor(w: np.ndarray) -> float:
    # Bit patterns, not values: -0.0 and 0.0 are two entries of a lossless table.
    distinct, nlogn = _k.sorted_runs(np.sort(w.view(np.uint32)))
    return _entropy_bits(w.size, distinct, nlogn)


# Equal values share their low bits, so buckets by the low bits split the distinct
# values exactly; one bucket at a time bounds the extra memory to 1/8 of the weights.
_BUCKET_BITS = 3


def _entropy_total(arrays: Sequence[np.ndarray]) -> float:
    mask = (1 << _BUCKET_BITS) - 1
    words = [w.view(np.uint32) for w in arrays]
    sizes = sum(np.bincount(u & mask, minlength=mask + 1) for u in words)
    distinct, nlogn = 0, 0.0
    for bucket, size in enumerate(sizes):
        out = np.empty(int(size), dtype=np.uint32)
        pos = 0
        for u in words:
            pos = _k.gather_bucket(u, np.uint32(mask), np.uint32(bucket), out, pos)
        out.sort()
        d, s = _k.sorted_runs(out)
        distinct, nlogn = distinct + d, nlogn + s
    return _entropy_bits(sum(u.size for u in words), distinct, nlogn)


def _codec(codec: str, note: str) -> Estimator:
    """The codec at its default level, the level :func:`kcomplex.compressed_bits` uses."""
    level = CODECS[codec].default_level
    setting = f"preset {level}" if codec == "lzma" else f"level {level}"

    def total(arrays: Sequence[np.ndarray]) -> float:
        return float(compressed_bits_chunks(arrays, codec=codec, level=level))

    return Estimator(
        name=codec,
        description=f"{codec} {setting}{note} of the float32 little-endian bytes: the "
        "stream's length, an upper bound",
        tensor=lambda w: total([w]),
        total=total,
    )


#: Every estimator by name. The codecs run at their default levels: 9 for the paper's
#: gzip, bz2 and lzma, 3 for zstd (fast enough for 10^8 weights).
ESTIMATORS: dict[str, Estimator] = {
    "bdm": Estimator(
        "bdm",
        "BDM of the binarized weights (w > 0), 1-D binary CTM, blocks of 12, ignore",
        _bdm_tensor,
        _bdm_total,
    ),
    "entropy": Estimator(
        "entropy",
        "order-0 two-part code (table of distinct float32 values + n*H) or the raw 32 "
        "bits per weight, whichever is shorter, + 1 flag bit",
        _entropy_tensor,
        _entropy_total,
    ),
    "gzip": _codec("gzip", " (the paper's)"),
    "bz2": _codec("bz2", " (the paper's)"),
    "lzma": _codec("lzma", " (the paper's)"),
    "zstd": _codec("zstd", ""),
}

#: Named sets of estimators.
PRESETS: dict[str, tuple[str, ...]] = {
    "default": ("bdm", "zstd", "entropy"),
    "paper": ("bdm", "gzip", "bz2", "lzma"),
    "all": tuple(ESTIMATORS),
}


def _valid() -> str:
    return f"valid: {', '.join(ESTIMATORS)}; presets: {', '.join(PRESETS)}"


def resolve_estimators(estimators: str | Sequence[str]) -> list[Estimator]:
    """Estimators from a preset name, one estimator name, or a list of names.

    Parameters
    ----------
    estimators : str or sequence of str
        A preset of :data:`PRESETS` or a name of :data:`ESTIMATORS`, or a non-empty list
        (or tuple) of distinct estimator names, in the order of the report's columns.

    Returns
    -------
    list of Estimator

    Raises
    ------
    TypeError
        If `estimators` is not a string or a sequence of strings (None, a number, a set).
    ValueError
        For an unknown name, a preset inside a list, an empty list, or a name given
        twice. Every message lists the valid estimators and presets.

    Examples
    --------
    >>> [e.name for e in resolve_estimators("paper")]
    ['bdm', 'gzip', 'bz2', 'lzma']
    >>> [e.name for e in resolve_estimators(["zstd", "bdm"])]
    ['zstd', 'bdm']
    """
    if isinstance(estimators, str):
        if estimators in PRESETS:
            return [ESTIMATORS[n] for n in PRESETS[estimators]]
        names: list[Any] = [estimators]
    elif isinstance(estimators, Sequence) and not isinstance(estimators, (bytes, bytearray)):
        names = list(estimators)
    else:
        raise TypeError(
            "estimators must be a preset name or a list of estimator names, got "
            f"{type(estimators).__name__} {estimators!r}; {_valid()}"
        )
    if not names:
        raise ValueError(f"no estimators given; {_valid()}")
    for name in names:
        if not isinstance(name, str):
            raise TypeError(
                f"estimator names must be strings, got {type(name).__name__} {name!r}; "
                f"{_valid()}"
            )
    presets = [n for n in names if n in PRESETS]
    if presets:
        raise ValueError(
            f"preset {presets[0]!r} inside a list of estimators: give a preset alone "
            f"(estimators={presets[0]!r}) or list estimator names; {_valid()}"
        )
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator(s) {unknown}; {_valid()}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(
            f"estimator(s) {twice} given more than once: each is one column of the "
            f"report; {_valid()}"
        )
    return [ESTIMATORS[n] for n in names]
