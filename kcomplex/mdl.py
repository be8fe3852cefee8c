"""Minimum description length codes: code lengths for integers and symbol sequences.

Rissanen's log* gives an ideal universal code length for integers. Sequence codes give the
bits of a string of symbols ``0 .. alphabet - 1``: its order-0 empirical entropy (ideal),
a two-part code, the adaptive Krichevsky-Trofimov and Laplace codes, and the payload and
length of a real entropy coder (constriction's ANS). Uniform quantization turns weights
into such symbols. All lengths in bits; ``docs/mdl.md`` describes each code with an example.

The bit streams and the Elias codes live in :mod:`kcomplex.bitstream`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import constriction
import numpy as np
from scipy.special import betaln, gammaln

# The bit streams were defined here before kcomplex.bitstream existed; they stay importable
# from kcomplex.mdl (and listed in __all__) so that users' ``kcomplex.mdl.BitWriter`` works.
from .bitstream import (
    ELIAS_CODES,
    MAX_FIELD_WIDTH,
    BitReader,
    BitWriter,
    decode_elias,
    elias_delta_length,
    elias_gamma_length,
    elias_omega_length,
    encode_elias,
    pack_fields,
    unpack_fields,
)
from .symbols import check_real, to_numpy
from .validation import integer_in, lookup

__all__ = [
    "LOG_STAR_C0", "QUANTIZED_CODES", "ans_encode", "categorical_model", "coded_bits",
    "decode_coded", "dequantize_uniform", "entropy_bits", "kt_bits", "laplace_bits", "log_star",
    "quantize_uniform", "quantized_bits", "two_part_bits",
    # Re-exported from kcomplex.bitstream (see the import above).
    "BitReader", "BitWriter", "ELIAS_CODES", "MAX_FIELD_WIDTH", "decode_elias",
    "elias_delta_length", "elias_gamma_length", "elias_omega_length", "encode_elias",
    "pack_fields", "unpack_fields",
]

#: Rissanen's constant c0: with it, 2^-log*(n) sums to 1 over n >= 1.
LOG_STAR_C0 = 2.865064
_LN2 = math.log(2)
_INT64_MAX = 2**63 - 1


def log_star(n: int) -> float:
    """Rissanen's universal code length log*(n) = log2 c0 + log2 n + log2 log2 n + ...

    Only the positive terms are summed; c0 = :data:`LOG_STAR_C0` = 2.865064 makes these
    the lengths of a complete prefix code for the integers n >= 1.

    >>> round(log_star(1), 4), round(log_star(16) - log_star(1), 4)
    (1.5186, 7.0)
    """
    total, x = math.log2(LOG_STAR_C0), math.log2(integer_in(n, 1, math.inf, "log_star's n"))
    while x > 0:
        total, x = total + x, math.log2(x)
    return total


# --- codes for symbol sequences ---------------------------------------------------


def _symbols(symbols: Any, alphabet: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The flattened symbols (int64) and the counts of those that occur."""
    s = to_numpy(symbols)
    if s.dtype.kind not in "biu" and s.size:
        raise TypeError(f"symbols must be integers, got dtype {s.dtype}")
    if alphabet is not None:
        integer_in(alphabet, 1, math.inf, "alphabet")
    s = s.reshape(-1)
    if s.size == 0:
        return s.astype(np.int64), np.zeros(0, dtype=np.int64)
    lo, hi = int(s.min()), int(s.max())
    if lo < 0 or hi >= (_INT64_MAX if alphabet is None else alphabet):
        bad = lo if lo < 0 else hi
        where = int(np.flatnonzero(s == bad)[0])
        raise ValueError(
            f"symbols must lie in [0, {alphabet or '2**63 - 1'}), found {bad} at index {where}"
        )
    s = s.astype(np.int64, copy=False)
    # bincount allocates max + 1 counters: fine up to a few per symbol, else sort.
    small = hi <= max(4 * s.size, 1 << 16)
    counts = np.bincount(s) if small else np.unique(s, return_counts=True)[1]
    return s, counts[counts > 0].astype(np.int64)


def _log_rising(x: float, n: int) -> float:
    """ln(G(x + n) / G(x)); as G(n) / B(n, x), which keeps its digits when x >> n."""
    return float(gammaln(n) - betaln(n, x)) if n else 0.0


def entropy_bits(symbols: Any, alphabet: int | None = None) -> float:
    """Length times order-0 empirical entropy, n H = -sum c log2(c / n): the ideal code
    length when the decoder knows the empirical distribution for free.

    Parameters
    ----------
    symbols : array_like of int
        Symbols ``>= 0``, any shape, read in C order; may be empty.
    alphabet : int, optional
        Alphabet size: symbols must be below it. Required by the other sequence codes.

    Returns
    -------
    float
        Bits, >= 0.

    Raises
    ------
    ValueError
        For symbols out of range or a bad `alphabet` (TypeError for non-integers).

    Examples
    --------
    >>> entropy_bits([0, 1, 0, 1])  # a fair coin: 1 bit a symbol
    4.0
    """
    s, c = _symbols(symbols, alphabet)
    return float(s.size * math.log2(s.size) - (c * np.log2(c)).sum()) if s.size else 0.0


def laplace_bits(symbols: Any, alphabet: int) -> float:
    """Adaptive add-one (Laplace) code: symbol t costs -log2((c_x + 1) / (t + a)).

    The product is ``(a - 1)! prod c_i! / (n + a - 1)!``, computed with log-gamma.

    >>> round(laplace_bits([0, 1, 0, 1], 2), 6)  # log2(5! / (2! 2!)) = log2 30
    4.906891
    """
    s, c = _symbols(symbols, alphabet)
    nats = _log_rising(alphabet, s.size) - gammaln(c + 1.0).sum()
    return float(max(nats, 0.0) / _LN2)  # a = 1 costs 0, which rounding may make -1e-16


def two_part_bits(symbols: Any, alphabet: int) -> float:
    """Two-part code: n, the counts, then the sequence given the counts.

    ``elias_delta_length(n + 1)`` (so n = 0 is codable) + ``log2 C(n + a - 1, a - 1)``
    (which of the ways to write n as `a` ordered counts) + ``log2(n! / prod c_i!)``
    (which sequence with these counts), with log-gamma. The last two terms add up to
    :func:`laplace_bits`.

    >>> round(two_part_bits([0, 1, 0, 1], 2), 6)  # 5 bits for n + 1, log2 5, log2 6
    9.906891
    """
    s, _ = _symbols(symbols, alphabet)
    return laplace_bits(s, alphabet) + elias_delta_length(s.size + 1)


def kt_bits(symbols: Any, alphabet: int) -> float:
    """Adaptive Krichevsky-Trofimov code: symbol t costs -log2((c_x + 1/2) / (t + a/2)).

    The product is the Dirichlet(1/2) mixture, computed as
    ``log2[G(n + a/2) G(1/2)^a / (G(a/2) prod G(c_i + 1/2))]`` with log-gamma.

    >>> kt_bits([0, 1], 2)  # (1/2) (1/2 / 2) = 1/8
    3.0
    """
    s, c = _symbols(symbols, alphabet)
    nats = _log_rising(alphabet / 2, s.size) - (gammaln(c + 0.5) - gammaln(0.5)).sum()
    return float(max(nats, 0.0) / _LN2)  # a = 1 costs 0, which rounding may make -1e-16


def categorical_model(counts: Any):
    """The entropy model of :func:`ans_encode` and :func:`decode_coded`: a constriction
    ``Categorical`` with `counts` as probabilities (quantized; ``perfect=False``).

    Parameters
    ----------
    counts : array_like of int
        The counts of the symbols that occur (all > 0), in symbol order: the model's
        symbols are their ranks ``0 .. len(counts) - 1``.

    Returns
    -------
    constriction.stream.model.Categorical

    Examples
    --------
    >>> model = categorical_model([1, 3])
    >>> coder = constriction.stream.stack.AnsCoder()
    >>> coder.encode_reverse(np.array([1, 0, 1, 1], dtype=np.int32), model)
    >>> coder.decode(model, 4)
    array([1, 0, 1, 1], dtype=int32)
    """
    return constriction.stream.model.Categorical(
        np.asarray(counts).astype(np.float64), perfect=False)


def ans_encode(symbols: Any, alphabet: int) -> bytes:
    """Encode the symbols with an ANS coder and their empirical distribution.

    The model is a constriction ``Categorical`` over the symbols that occur, with their
    counts as probabilities (quantized to 24 bits; ``perfect=False``). The decoder needs
    the counts, which are not in the payload nor in its length: :func:`decode_coded`
    inverts this given them. Above :func:`entropy_bits` this costs at most 64 bits
    (initial state, last word) plus the quantization loss.

    Parameters
    ----------
    symbols, alphabet
        As :func:`entropy_bits`; `alphabet` at most 2**24 - 1.

    Returns
    -------
    bytes
        The payload: constriction's 32-bit words, little-endian. Fewer than two distinct
        symbols take no bytes.

    Raises
    ------
    ValueError
        As :func:`entropy_bits`, or for too large an alphabet.

    Examples
    --------
    >>> payload = ans_encode([0, 2, 2, 1, 2, 2], 3)
    >>> decode_coded(payload, [1, 1, 4])
    array([0, 2, 2, 1, 2, 2])
    """
    s, _ = _symbols(symbols, alphabet)
    if alphabet >= 1 << 24:  # constriction gives every symbol >= 2^-24 of probability
        raise ValueError(f"ans_encode supports alphabets below 2**24, got {alphabet}")
    counts = np.bincount(s, minlength=alphabet)
    present = np.flatnonzero(counts)
    if present.size < 2:
        return b""
    rank = np.zeros(alphabet, dtype=np.int32)
    rank[present] = np.arange(present.size, dtype=np.int32)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(rank[s], categorical_model(counts[present]))
    return coder.get_compressed().astype("<u4").tobytes()


def coded_bits(symbols: Any, alphabet: int) -> float:
    """Bits a real entropy coder writes: ``8 * len(ans_encode(symbols, alphabet))``.

    The counts the decoder needs are not included (see :func:`ans_encode`).

    Parameters
    ----------
    symbols, alphabet
        As :func:`ans_encode`.

    Returns
    -------
    float
        Bits, a multiple of 32; 0.0 for fewer than two distinct symbols.

    Raises
    ------
    ValueError
        As :func:`ans_encode`.

    Examples
    --------
    >>> coded_bits([0, 2, 2, 1, 2, 2], 3), coded_bits([1, 1, 1], 3)
    (32.0, 0.0)
    """
    return float(8 * len(ans_encode(symbols, alphabet)))


def decode_coded(payload: bytes, counts: Any) -> np.ndarray:
    """Invert :func:`ans_encode` given all `alphabet` counts (``np.bincount``).

    Raises ValueError for bad counts or a payload that does not decode to exactly them.
    """
    c = check_real(counts, "counts")
    if c.ndim != 1 or c.dtype.kind not in "iu" or (c.size and c.min() < 0):
        raise ValueError(f"counts must be a 1-D array of integers >= 0, got {c.dtype} {c.shape}")
    present = np.flatnonzero(c)
    if len(payload) % 4 or (present.size < 2 and payload):
        raise ValueError(f"corrupt payload of {len(payload)} bytes for these counts")
    if present.size < 2:
        return np.repeat(present, c[present]).astype(np.int64)
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(payload, "<u4").astype(np.uint32))
    out = present[coder.decode(categorical_model(c[present]), int(c.sum()))]
    if not coder.is_empty() or not np.array_equal(np.bincount(out, minlength=c.size), c):
        raise ValueError("corrupt payload: it does not decode to exactly the given counts")
    return out.astype(np.int64)


# --- uniform quantization -----------------------------------------------------------


def quantize_uniform(w: Any, q: int) -> tuple[np.ndarray, float]:
    """Symmetric per-tensor uniform quantization to ``2^q - 1`` levels (the paper's QAT).

    ``scale = max|w| / (2^(q-1) - 1)`` rounded up to a float32 (it is stored in 32 bits),
    ``ints = round(w / scale)`` (half to even, in float64), clipped to
    ``±(2^(q-1) - 1)``. All-zero weights give scale 0.

    Parameters
    ----------
    w : array_like or torch.Tensor
        Real weights, any shape, not empty.
    q : int
        Bits per weight, 2 to 32.

    Returns
    -------
    (numpy.ndarray, float)
        int32 levels of the shape of `w`, and the scale.

    Raises
    ------
    ValueError
        For a bad `q`, empty weights, NaN/Inf or a scale beyond float32.

    Examples
    --------
    >>> quantize_uniform([-1.0, 0.2, 0.6], 3)
    (array([-3,  1,  2], dtype=int32), 0.3333333432674408)
    """
    q = integer_in(q, 2, 32, "q")
    arr = check_real(w, "weights").astype(np.float64)
    if arr.size == 0:
        raise ValueError("weights are empty: nothing to quantize")
    levels = 2 ** (q - 1) - 1
    exact = float(np.abs(arr).max()) / levels
    scale = np.float32(exact)
    if float(scale) < exact:  # rounded up, max|w| / scale <= levels: nothing is clipped
        scale = np.nextafter(scale, np.float32(np.inf))
    if not np.isfinite(scale):
        raise ValueError(f"weights too large for a float32 scale: max |w| = {exact * levels:g}")
    if scale == 0:
        return np.zeros(arr.shape, dtype=np.int32), 0.0
    ints = np.clip(np.rint(arr / float(scale)), -levels, levels)
    return ints.astype(np.int32), float(scale)


def dequantize_uniform(ints: Any, scale: float) -> np.ndarray:
    """``ints * scale`` as float32 (the product in float64, then rounded once).

    >>> dequantize_uniform([-2, 0, 1], 0.5)
    array([-1. ,  0. ,  0.5], dtype=float32)
    """
    i = to_numpy(ints)
    if i.dtype.kind not in "iu" and i.size:
        raise TypeError(f"ints must be integers, got dtype {i.dtype}")
    return (i.astype(np.float64) * float(scale)).astype(np.float32)


#: Codes for quantized weights: ``(levels shifted to [0, 2^q - 1), q) -> bits``.
QUANTIZED_CODES: dict[str, Callable[[np.ndarray, int], float]] = {
    "fixed": lambda s, q: float(s.size * q),
    "entropy": lambda s, q: entropy_bits(s),
    "two_part": lambda s, q: two_part_bits(s, 2**q - 1),
}


def quantized_bits(w: Any, q: int, code: str = "fixed") -> float:
    """Bits of the weights quantized by :func:`quantize_uniform`: 32 (the scale) + a code
    of the levels: q bits each (``"fixed"``), :func:`entropy_bits` (``"entropy"``, the
    distribution free) or :func:`two_part_bits` (``"two_part"``). Each is the length of
    that code: ``"two_part"`` pays for n and the counts, and on a few weights exceeds
    ``"fixed"`` (one weight at q = 8: 44.0 bits against 40); ``"entropy"`` never does.

    >>> quantized_bits(np.ones(10), 8), quantized_bits(np.ones(10), 8, "entropy")
    (112.0, 32.0)
    """
    fn = lookup(QUANTIZED_CODES, code, "code")
    ints, _ = quantize_uniform(w, q)
    return fn(ints.reshape(-1).astype(np.int64) + 2 ** (q - 1) - 1, q) + 32.0
