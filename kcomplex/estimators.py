"""The estimators that :func:`kcomplex.analyze` runs, by name, in one registry.

Each estimator gives the bits of one tensor and the bits of the concatenation of several
(the paper's weight vector), the latter streamed over the tensors without concatenating
them where the estimator allows it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import _kernels as _k
from .bdm import BDM
from .compressors import compressed_bits_chunks

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
    """Table of the distinct float32 values (32 bits each), then the sequence at its
    empirical order-0 entropy n*H = n log2 n - sum c log2 c."""
    return 32.0 * distinct + n * math.log2(n) - nlogn


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


def _codec(codec: str, level: int | None) -> Estimator:
    where = f"level {level}" if level is not None else "the paper's level"

    def total(arrays: Sequence[np.ndarray]) -> float:
        return float(compressed_bits_chunks(arrays, codec=codec, level=level))

    # One tensor is streamed like the whole vector: zstd's one-shot and streamed frames
    # may cut blocks differently, and a one-tensor model must read the same in both rows.
    return Estimator(
        name=codec,
        description=f"{codec} ({where}) of the float32 little-endian bytes: an upper bound",
        tensor=lambda w: total([w]),
        total=total,
    )


#: Every estimator by name. zstd runs at level 3 here: fast enough for 10^8 weights.
ESTIMATORS: dict[str, Estimator] = {
    "bdm": Estimator(
        "bdm",
        "BDM of the binarized weights (w > 0), 1-D binary CTM, blocks of 12, ignore",
        _bdm_tensor,
        _bdm_total,
    ),
    "entropy": Estimator(
        "entropy",
        "order-0 two-part code: table of distinct float32 values + n*H of the sequence",
        _entropy_tensor,
        _entropy_total,
    ),
    "gzip": _codec("gzip", None),
    "bz2": _codec("bz2", None),
    "lzma": _codec("lzma", None),
    "zstd": _codec("zstd", 3),
}

#: Named sets of estimators.
PRESETS: dict[str, tuple[str, ...]] = {
    "default": ("bdm", "zstd", "entropy"),
    "paper": ("bdm", "gzip", "bz2", "lzma"),
    "all": tuple(ESTIMATORS),
}


def resolve_estimators(estimators: str | Sequence[str]) -> list[Estimator]:
    """Estimators from a preset name or a list of names.

    Raises
    ------
    ValueError
        For an unknown name, listing the valid estimators and presets.
    """
    names = PRESETS[estimators] if isinstance(estimators, str) and estimators in PRESETS else (
        [estimators] if isinstance(estimators, str) else list(estimators)
    )
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown or not names:
        raise ValueError(
            f"unknown estimator(s) {unknown or names}; valid: {', '.join(ESTIMATORS)}; "
            f"presets: {', '.join(PRESETS)}"
        )
    return [ESTIMATORS[n] for n in dict.fromkeys(names)]
