"""Bit streams and the Elias codes: the bits a coder actually writes and reads.

:class:`BitWriter` and :class:`BitReader` write and read fields of any width and Elias
codewords; :func:`pack_fields` / :func:`unpack_fields` do many fields of one width at
once, vectorized. The Elias codes (gamma, delta, omega) are self-delimiting codes for the
integers >= 1: :func:`encode_elias` / :func:`decode_elias` give their bits, and
:func:`elias_gamma_length` and its siblings their exact lengths, which the MDL codes of
:mod:`kcomplex.mdl` use for headers and counts. Every stream is MSB first; all lengths are
in bits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .symbols import to_numpy
from .validation import integer_in, lookup

__all__ = [
    "BitReader", "BitWriter", "ELIAS_CODES", "MAX_FIELD_WIDTH", "decode_elias",
    "elias_delta_length", "elias_gamma_length", "elias_omega_length", "encode_elias",
    "pack_fields", "unpack_fields",
]

_U1 = np.uint64(1)
_INT64_MAX = 2**63 - 1


def _bit_length(a: Any) -> np.ndarray:
    """int.bit_length of every element, exactly (a float log2 rounds near 2^k)."""
    a, out = np.asarray(a).astype(np.uint64), 0
    for s in (32, 16, 8, 4, 2, 1):
        big = a >= (_U1 << np.uint64(s))
        out, a = out + big * s, np.where(big, a >> np.uint64(s), a)
    return np.asarray(out + (a > 0), dtype=np.int64)


def _lengths(n: Any, what: str, fn: Callable):
    """`fn(n, bit_length)` on integers >= 1: an int for a scalar, else an int64 array."""
    if isinstance(n, (int, np.integer)) and not isinstance(n, bool):
        integer_in(n, 1, math.inf, f"{what}'s n")
        return int(fn(int(n), lambda x: int(x).bit_length()))
    arr = to_numpy(n)
    if arr.dtype.kind not in "iu" and arr.size:
        raise TypeError(f"{what} needs integers, got dtype {arr.dtype}")
    if arr.size and arr.min() < 1:
        raise ValueError(f"{what} is defined for integers >= 1, got minimum {arr.min()}")
    return np.asarray(fn(arr.astype(np.uint64), _bit_length), dtype=np.int64)


def _omega_groups(n, bl) -> list:
    """The groups of the omega code of `n`, last written first: (value, width or 0)."""
    groups, m = [], n
    if isinstance(n, int):  # Python ints of any size stay out of numpy
        while m > 1:
            groups.append((m, bl(m)))
            m = bl(m) - 1
        return groups
    while np.any(m > 1):
        active, b = m > 1, bl(m)
        groups.append((m, np.where(active, b, 0)))
        m = np.where(active, b - 1, m).astype(np.uint64)
    return groups


def elias_gamma_length(n: Any):
    """Bits of the Elias gamma code of n >= 1: ``2 floor(log2 n) + 1``.

    Parameters
    ----------
    n : int or array_like of int
        Integers >= 1 (a Python int of any size, or an integer array).

    Returns
    -------
    int or numpy.ndarray
        Exact lengths: an int for a scalar, otherwise an int64 array of the same shape.

    Raises
    ------
    ValueError
        For n < 1 (TypeError for non-integers).

    Examples
    --------
    >>> elias_gamma_length(1), elias_gamma_length(5), elias_gamma_length([1, 2, 4])
    (1, 5, array([1, 3, 5]))
    """
    return _lengths(n, "elias_gamma_length", lambda n, bl: 2 * bl(n) - 1)


def elias_delta_length(n: Any):
    """Bits of the Elias delta code of n >= 1: ``N + 2 floor(log2(N + 1)) + 1``,
    ``N = floor(log2 n)``. Inputs and errors as :func:`elias_gamma_length`.

    >>> elias_delta_length(1), elias_delta_length(2), elias_delta_length(2**40)
    (1, 4, 51)
    """
    return _lengths(n, "elias_delta_length", lambda n, bl: bl(n) + 2 * bl(bl(n)) - 2)


def elias_omega_length(n: Any):
    """Bits of the Elias omega code of n >= 1: its recursive groups and a final 0.
    Inputs and errors as :func:`elias_gamma_length`.

    >>> elias_omega_length(1), elias_omega_length(2), elias_omega_length(16)
    (1, 3, 11)
    """
    return _lengths(
        n, "elias_omega_length", lambda n, bl: 1 + sum((w for _, w in _omega_groups(n, bl)), 0)
    )


#: Elias codes by name, with their length functions.
ELIAS_CODES: dict[str, Callable] = {
    "gamma": elias_gamma_length,
    "delta": elias_delta_length,
    "omega": elias_omega_length,
}


# --- bit streams ------------------------------------------------------------------


def _elias_fields(values: Any, code: str) -> tuple[np.ndarray, np.ndarray]:
    """(value, width <= 64) fields whose bits, in order, are the codewords of `values`."""
    lookup(ELIAS_CODES, code, "code")
    arr = np.atleast_1d(to_numpy(values)).reshape(-1)
    elias_gamma_length(arr)  # the checks: integers >= 1
    if arr.size and int(arr.max()) > _INT64_MAX:
        raise ValueError(f"Elias values must be < 2**63, got {int(arr.max())}")
    n = arr.astype(np.uint64)
    big_n, zero = _bit_length(n) - 1, np.zeros_like(n)
    if code == "gamma":  # N zeros, then n in N + 1 bits
        cols = [(zero, big_n), (n, big_n + 1)]
    elif code == "delta":  # gamma(N + 1), then n without its leading 1
        small = _bit_length(big_n + 1) - 1
        low = n - (_U1 << big_n.astype(np.uint64))
        cols = [(zero, small), (big_n + 1, small + 1), (low, big_n)]
    else:  # the groups innermost first, then a 0
        cols = [*reversed(_omega_groups(n, _bit_length)), (zero, np.ones_like(big_n))]
    vals = np.stack([np.broadcast_to(v, n.shape).astype(np.uint64) for v, _ in cols], axis=1)
    widths = np.stack([np.broadcast_to(w, n.shape) for _, w in cols], axis=1)
    return vals.reshape(-1), widths.reshape(-1).astype(np.int64)


def _pack_bits(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Fields of width <= 64 as a 0/1 uint8 array, each field MSB first."""
    parts = [np.zeros(0, dtype=np.uint8)]
    for i in range(0, values.size, 1 << 16):  # bounds the per-bit temporaries
        v, w = values[i : i + (1 << 16)], widths[i : i + (1 << 16)]
        ends = np.cumsum(w)
        shift = (np.repeat(ends - 1, w) - np.arange(ends[-1])).astype(np.uint64)
        parts.append(((np.repeat(v, w) >> shift) & _U1).astype(np.uint8))
    return np.concatenate(parts)


#: Widest field of :func:`unpack_fields`: a field and its offset in its first byte (<= 7
#: bits) must fit in the one 64-bit word read for it.
MAX_FIELD_WIDTH = 57
#: Fields per step of :func:`pack_fields` / :func:`unpack_fields`, a multiple of 8 (so
#: every step but the last ends on a byte boundary); bounds their scratch memory.
_FIELD_STEP = 1 << 16


def _field_width(width: Any, most: int) -> int:
    return integer_in(width, 0, most, "field width")


def pack_fields(values: Any, width: int) -> bytes:
    """Unsigned integers as consecutive `width`-bit fields, MSB first, the last byte
    zero-padded: what :meth:`BitWriter.write` gives field by field, vectorized.

    Parameters
    ----------
    values : array_like of int
        Integers in ``[0, 2**width)``, any shape, read in C order.
    width : int
        Bits per field, 0 to 64 (0 writes nothing).

    Returns
    -------
    bytes
        ``ceil(values.size * width / 8)`` bytes. Scratch memory is bounded (about 1 MiB
        per 1000 bits of `width`), whatever the number of values.

    Raises
    ------
    ValueError
        For a bad `width` or a value that does not fit (TypeError for non-integers).

    Examples
    --------
    >>> pack_fields([5, 1, 2], 3)
    b'\\xa5\\x00'
    """
    width = _field_width(width, 64)
    arr = to_numpy(values).reshape(-1)
    if arr.dtype.kind not in "iu" and arr.size:
        raise TypeError(f"pack_fields needs integers, got dtype {arr.dtype}")
    if width == 0 or arr.size == 0:
        return b""
    if int(arr.min()) < 0 or (width < 64 and int(arr.max()) >= 1 << width):
        raise ValueError(f"values must lie in [0, 2**{width}), got [{arr.min()}, {arr.max()}]")
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    parts = []
    for i in range(0, arr.size, _FIELD_STEP):
        v = arr[i : i + _FIELD_STEP].astype(np.uint64)
        parts.append(np.packbits(((v[:, None] >> shifts) & _U1).astype(np.uint8)).tobytes())
    return b"".join(parts)


def unpack_fields(data: bytes, count: int, width: int, bit_offset: int = 0) -> np.ndarray:
    """`count` unsigned `width`-bit fields, MSB first, from bit `bit_offset` of `data`:
    the inverse of :func:`pack_fields` at any bit offset, vectorized.

    Parameters
    ----------
    data : bytes
        The bits; only the bytes that hold the fields are read.
    count : int
        Fields to read, >= 0.
    width : int
        Bits per field, 0 to :data:`MAX_FIELD_WIDTH` (57).
    bit_offset : int
        Bit where the first field starts.

    Returns
    -------
    numpy.ndarray
        int64 array of `count` values. Scratch memory is bounded (about 2.5 MiB), however
        large `count`; the result itself takes 8 bytes per field.

    Raises
    ------
    ValueError
        For a bad `count`, `width` or `bit_offset`, or fields beyond the end of `data`.

    Examples
    --------
    >>> unpack_fields(b'\\xa5\\x00', 3, 3)
    array([5, 1, 2])
    >>> unpack_fields(b'\\x0f\\xf0', 1, 8, bit_offset=4)
    array([255])
    """
    count = integer_in(count, 0, math.inf, "count")
    width = _field_width(width, MAX_FIELD_WIDTH)
    bit_offset = integer_in(bit_offset, 0, math.inf, "bit_offset")
    if bit_offset + count * width > 8 * len(data):
        raise ValueError(f"truncated bit stream: {count} fields of {width} bits at bit "
                         f"{bit_offset} of {8 * len(data)}")
    out = np.zeros(count, dtype=np.int64)
    if width == 0:
        return out
    view, mask = memoryview(data), np.uint64((1 << width) - 1)
    for i in range(0, count, _FIELD_STEP):
        n, start = min(_FIELD_STEP, count - i), bit_offset + i * width
        first, last = start >> 3, (start + n * width + 7) >> 3
        buf = np.zeros(last - first + 8, dtype=np.uint8)  # 8 zero bytes: every gather in range
        buf[: last - first] = np.frombuffer(view[first:last], np.uint8)
        rel = (start & 7) + np.arange(n, dtype=np.int64) * width
        byte, word = rel >> 3, np.zeros(n, dtype=np.uint64)
        for j in range(8):  # the 64 bits from each field's first byte, big-endian
            word = (word << np.uint64(8)) | buf[byte + j]
        shift = (64 - width - (rel & 7)).astype(np.uint64)
        out[i : i + n] = (word >> shift) & mask
    return out


class BitWriter:
    """Collects bit fields MSB first; :meth:`getvalue` packs them, zero-padding the end.

    >>> bw = BitWriter()
    >>> bw.write(0b101, 3); bw.write_elias([1, 2], "gamma")
    >>> bw.getvalue(), bw.n_bits
    (b'\\xb4', 7)
    """

    def __init__(self) -> None:
        self._values: list[np.ndarray] = []
        self._widths: list[np.ndarray] = []
        self.n_bits = 0

    def write(self, value: int, width: int) -> None:
        """Append `value` as `width` (<= 64) bits; ValueError if it does not fit."""
        if not 0 <= int(width) <= 64 or not 0 <= int(value) < 1 << int(width):
            raise ValueError(f"value {value} does not fit in {width} bits (<= 64)")
        self._values.append(np.array([value], np.uint64))
        self._widths.append(np.array([width], np.int64))
        self.n_bits += int(width)

    def write_elias(self, values: Any, code: str = "gamma") -> None:
        """Append the Elias codewords of `values` (integers in [1, 2**63))."""
        vals, widths = _elias_fields(values, code)
        self._values.append(vals)
        self._widths.append(widths)
        self.n_bits += int(widths.sum())

    def getvalue(self) -> bytes:
        """All bits written so far, the last byte zero-padded."""
        vals = np.concatenate([np.zeros(0, np.uint64), *self._values])
        widths = np.concatenate([np.zeros(0, np.int64), *self._widths])
        return np.packbits(_pack_bits(vals, widths)).tobytes()


class BitReader:
    """Reads bit fields MSB first from the first `n_bits` (default all) bits of `data`;
    reading past them raises ValueError, so malformed input cannot loop forever.

    >>> br = BitReader(b'\\xb4')
    >>> br.read(3), br.read_elias("gamma"), br.read_elias("gamma"), br.pos
    (5, 1, 2, 7)
    """

    def __init__(self, data: bytes, n_bits: int | None = None) -> None:
        self._data, self.pos = bytes(data), 0
        self.n_bits = integer_in(
            8 * len(self._data) if n_bits is None else n_bits, 0, 8 * len(self._data), "n_bits"
        )

    def read(self, width: int) -> int:
        """The next `width` bits as an unsigned int."""
        end = self.pos + width
        if width < 0 or end > self.n_bits:
            raise ValueError(
                f"truncated bit stream: {width} bits wanted at bit {self.pos} of {self.n_bits}"
            )
        first, last = self.pos >> 3, (end + 7) >> 3
        word = int.from_bytes(self._data[first:last], "big")
        self.pos = end
        return (word >> ((last << 3) - end)) & ((1 << width) - 1)

    def read_fields(self, count: int, width: int) -> np.ndarray:
        """The next `count` fields of `width` bits as int64 (:func:`unpack_fields`)."""
        end = self.pos + integer_in(count, 0, math.inf, "count") * _field_width(
            width, MAX_FIELD_WIDTH)
        if end > self.n_bits:
            raise ValueError(
                f"truncated bit stream: {count} fields of {width} bits wanted at bit "
                f"{self.pos} of {self.n_bits}"
            )
        out = unpack_fields(self._data, count, width, self.pos)
        self.pos = end
        return out

    def _zeros(self) -> int:
        """Skip the 0 bits before the next 1 (left unread); their count."""
        i, stop = self.pos >> 3, (self.n_bits + 7) >> 3
        byte = self._data[i] & (0xFF >> (self.pos & 7)) if i < stop else 0
        while not byte and i + 1 < stop:
            i += 1
            byte = self._data[i]
        one = (i << 3) + 8 - byte.bit_length()
        if not byte or one >= self.n_bits:
            raise ValueError(f"truncated bit stream: no 1 bit after bit {self.pos}")
        count, self.pos = one - self.pos, one
        return count

    def read_elias(self, code: str = "gamma") -> int:
        """Decode one Elias codeword."""
        if code == "gamma":
            return self.read(self._zeros() + 1)
        if code == "delta":
            big_n = self.read(self._zeros() + 1) - 1
            low = self.read(big_n)  # first: it bounds big_n by the bits left
            return (1 << big_n) | low
        lookup(ELIAS_CODES, code, "code")
        n = 1  # omega: a group is a 1 and n more bits, and gives the next n
        while self.read(1):
            low = self.read(n)  # first: it bounds n by the bits left
            n = (1 << n) | low
        return n


def encode_elias(values: Any, code: str = "gamma") -> tuple[bytes, int]:
    """Elias codewords of `values`, concatenated MSB first.

    Parameters
    ----------
    values : array_like of int
        Integers in [1, 2**63), any shape, read in C order.
    code : {"gamma", "delta", "omega"}
        See :data:`ELIAS_CODES`.

    Returns
    -------
    (bytes, int)
        The bits, the last byte zero-padded, and their exact number.

    Raises
    ------
    ValueError
        For an unknown code or values out of range (TypeError for non-integers).

    Examples
    --------
    >>> encode_elias([1, 2, 3], "gamma")
    (b'\\xa6', 7)
    """
    writer = BitWriter()
    writer.write_elias(values, code)
    return writer.getvalue(), writer.n_bits


def decode_elias(data: bytes, count: int, code: str = "gamma") -> np.ndarray:
    """The first `count` Elias codewords of `data` as int64 (trailing bits ignored);
    ValueError if `data` ends first or a value reaches 2**63.

    >>> decode_elias(b'\\xa6', 3, "gamma")
    array([1, 2, 3])
    """
    lookup(ELIAS_CODES, code, "code")
    reader = BitReader(data)
    out = [reader.read_elias(code) for _ in range(integer_in(count, 0, math.inf, "count"))]
    if out and max(out) > _INT64_MAX:
        raise ValueError(f"malformed Elias {code} data: decoded value {max(out)} >= 2**63")
    return np.array(out, dtype=np.int64)
