"""General-purpose compressors: upper bounds on the description length of weights.

A compressed size is a description length: the decompressor plus the compressed bytes
reproduce the payload exactly. The payload is a byte layout of the weights (their float32
bytes, their sign bits, ...), and the codec one of gzip, bz2, lzma (the paper's three) or
zstd. Defaults match the paper: gzip level 9 with mtime 0, bz2 level 9, lzma preset 9, on
the float32 little-endian bytes of the flattened weights in C order. zstd (default level
3, as in :func:`kcomplex.analyze`) always writes one frame the way its streaming
compressor does when the total size is not known in advance: no content size, checksum
or dictionary id, single-threaded. Its output then depends on the payload and the level
alone, not on whether the payload arrives at once or in pieces, so a one-shot size and a
streamed one are the same number for every codec.

A compressed size is the real length of that codec's stream, ``8 * len(bytes)``, even in
the rare case that it exceeds the raw payload (incompressible data): each format has its
own header, and gzip, lzma (xz) and zstd store incompressible blocks raw, so the excess is
their framing (a few bytes per block), not a failure of the measure.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import zstandard

from .symbols import check_real

__all__ = [
    "CODECS",
    "PAYLOADS",
    "Codec",
    "compress",
    "compressed_bits",
    "compressed_bits_chunks",
    "decompress",
]


class _Stream(Protocol):
    def compress(self, data: Any) -> bytes: ...
    def flush(self) -> bytes: ...


class _GzipStream:
    """Incremental twin of ``gzip.compress(data, level, mtime=0)``, byte for byte.

    gzip.compress writes a fixed 10-byte header, one raw deflate stream and a CRC-32 /
    length trailer. The header depends only on the level, so it is taken from
    gzip.compress itself (its OS byte differs between Python versions); zlib's deflate
    output does not depend on how the input is split when nothing is flushed.
    """

    def __init__(self, level: int) -> None:
        self._header = gzip.compress(b"", compresslevel=level, mtime=0)[:10]
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = 0
        self._size = 0

    def compress(self, data: Any) -> bytes:
        self._crc = zlib.crc32(data, self._crc)
        self._size += memoryview(data).nbytes
        out = self._header + self._deflate.compress(data)
        self._header = b""
        return out

    def flush(self) -> bytes:
        tail = struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)
        return self._header + self._deflate.flush() + tail


# zstd --long's window: 128 MiB.
_LONG_WINDOW_LOG = 27


def _zstd_stream(level: int, long: bool = False) -> zstandard.ZstdCompressionObj:
    # No content size (a stream does not know it), no checksum, no dictionary id, one
    # thread. The streaming compressor buffers its input into whole blocks, so the frame
    # does not depend on how the input is cut. A one-shot call would tune the level's
    # parameters to the known size: another frame, up to 30 % longer or shorter on small
    # payloads, and then a tensor's bits would depend on how it was read.
    frame = {"write_content_size": False, "write_checksum": False, "write_dict_id": False}
    if not long:
        return zstandard.ZstdCompressor(level=level, **frame).compressobj()
    # Long-range matching finds repeats no farther back than the window: the level's own
    # window (2 to 8 MiB below level 20) would leave it little to find, so widen it to
    # 2**27 bytes as zstd --long does.
    window = max(_LONG_WINDOW_LOG, zstandard.ZstdCompressionParameters.from_level(level).window_log)
    params = zstandard.ZstdCompressionParameters.from_level(
        level, enable_ldm=True, window_log=window, **frame
    )
    return zstandard.ZstdCompressor(compression_params=params).compressobj()


def _zstd_compress(data: Any, level: int) -> bytes:
    stream = _zstd_stream(level)
    return stream.compress(data) + stream.flush()


def _zstd_decompress(data: bytes) -> bytes:
    # Frames carry no content size, so decompress as a stream, which must end the frame.
    stream = zstandard.ZstdDecompressor().decompressobj()
    out = stream.decompress(data)
    if not stream.eof or stream.unused_data:
        raise zstandard.ZstdError("truncated frame or data after it")
    return out


@dataclass(frozen=True)
class Codec:
    """A compressor: one-shot and incremental compression, and decompression.

    Attributes
    ----------
    name : str
        Registry name.
    default_level : int
        Level used when none is given.
    levels : range
        Valid levels.
    compress : callable
        ``(bytes-like, level) -> bytes``.
    decompress : callable
        ``bytes -> bytes``.
    stream : callable
        ``level -> object`` with ``compress(bytes-like) -> bytes`` and ``flush() -> bytes``;
        zstd's also takes ``long=True``: long-range matching over a 128 MiB window, as
        ``zstd --long``.
    """

    name: str
    default_level: int
    levels: range
    compress: Callable[[Any, int], bytes]
    decompress: Callable[[bytes], bytes]
    stream: Callable[..., _Stream]


#: Codecs by name. zstd defaults to level 3, zstd's own default and the level of
#: :func:`kcomplex.analyze`: fast enough for 10^8 weights (level 19 is some 50 times
#: slower on float32 weights).
CODECS: dict[str, Codec] = {
    "gzip": Codec(
        "gzip", 9, range(0, 10),
        lambda data, level: gzip.compress(data, compresslevel=level, mtime=0),
        gzip.decompress,
        _GzipStream,
    ),
    "bz2": Codec("bz2", 9, range(1, 10), bz2.compress, bz2.decompress, bz2.BZ2Compressor),
    "lzma": Codec(
        "lzma", 9, range(0, 10),
        lambda data, level: lzma.compress(data, preset=level),
        lzma.decompress,
        lambda level: lzma.LZMACompressor(preset=level),
    ),
    "zstd": Codec(
        "zstd", 3, range(1, 23),
        _zstd_compress,
        _zstd_decompress,
        _zstd_stream,
    ),
}


def _float32(w: np.ndarray) -> np.ndarray:
    return w.view(np.uint8)


def _sign(w: np.ndarray) -> np.ndarray:
    return np.packbits(w > 0)


def _sign_bytes(w: np.ndarray) -> np.ndarray:
    return (w > 0).view(np.uint8)


def _shuffle(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.view(np.uint8).reshape(-1, 4).T).reshape(-1)


#: Payload layouts by name: ``1-D little-endian float32 array -> 1-D uint8 array`` (a
#: bytes-like object; a view of the weights, without a copy, for "float32").
PAYLOADS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "float32": _float32,  # the raw little-endian bytes
    "sign": _sign,  # w > 0 as bits, 8 per byte, MSB first, last byte zero-padded
    "sign_bytes": _sign_bytes,  # w > 0 as one byte 0/1 per weight (the paper's)
    "shuffle": _shuffle,  # all byte 0s of the floats, then all byte 1s, ... (blosc, ZipNN)
}

# Streamable payloads and their granule: a chunk is laid out on its own once it holds a
# multiple of this many weights (the rest is carried over to the next chunk).
_GRANULE = {"float32": 1, "sign_bytes": 1, "sign": 8}


def _resolve(codec: str, level: int | None, payload: str) -> tuple[Codec, int]:
    for kind, name, registry in (("codec", codec, CODECS), ("payload", payload, PAYLOADS)):
        if name not in registry:
            valid = ", ".join(map(repr, registry))
            raise ValueError(f"unknown {kind} {name!r}; valid {kind}s: {valid}")
    c = CODECS[codec]
    if level is None:
        return c, c.default_level
    integer = isinstance(level, (int, np.integer)) and not isinstance(level, bool)
    if not integer or level not in c.levels:
        raise ValueError(
            f"{codec} level must be an integer in [{c.levels[0]}, {c.levels[-1]}], got {level!r}"
        )
    return c, int(level)


def _weights(w: Any, name: str, allow_empty: bool = False) -> np.ndarray:
    """`w` flattened in C order as little-endian float32, checked finite; never in place."""
    arr = check_real(w, name)
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} are empty: nothing to compress")
    with np.errstate(over="ignore"):
        w32 = np.ascontiguousarray(arr, dtype="<f4").reshape(-1)
    if arr.dtype != w32.dtype and not np.isfinite(w32).all():
        big = float(np.abs(arr.astype(np.float64)).max())
        raise ValueError(f"{name} do not fit float32: largest magnitude {big:g} > 3.4e38")
    return w32


def compress(
    w: Any, codec: str = "gzip", level: int | None = None, payload: str = "float32"
) -> bytes:
    """Compress a payload layout of the weights.

    Parameters
    ----------
    w : array_like or torch.Tensor
        Real weights of any shape, flattened in C order and converted to float32 (every
        payload is computed from the float32 values).
    codec : {"gzip", "bz2", "lzma", "zstd"}
        Compressor, see :data:`CODECS`.
    level : int, optional
        Compression level; default the codec's ``default_level`` (9, 9, 9, 3).
    payload : {"float32", "sign", "sign_bytes", "shuffle"}
        Byte layout, see :data:`PAYLOADS`.

    Returns
    -------
    bytes
        The compressed payload; :func:`decompress` gives the payload back.

    Raises
    ------
    ValueError
        Unknown codec or payload, bad level, empty weights, NaN/Inf, or values beyond
        the float32 range.
    TypeError
        If `w` is not real-valued.

    Examples
    --------
    >>> data = compress([1.0, -1.0, 2.0], "bz2")
    >>> np.frombuffer(decompress(data, "bz2"), "<f4")
    array([ 1., -1.,  2.], dtype=float32)
    """
    c, lvl = _resolve(codec, level, payload)
    return c.compress(PAYLOADS[payload](_weights(w, "weights")), lvl)


def decompress(data: bytes, codec: str = "gzip") -> bytes:
    """Invert :func:`compress`: the payload bytes.

    Raises
    ------
    ValueError
        Unknown codec, or `data` is corrupt or truncated.

    Examples
    --------
    >>> decompress(compress([3.0], "lzma", payload="sign_bytes"), "lzma")
    b'\\x01'
    """
    c, _ = _resolve(codec, None, "float32")
    try:
        return c.decompress(data)
    except (ValueError, OSError, EOFError, lzma.LZMAError, zlib.error, zstandard.ZstdError) as err:
        raise ValueError(f"corrupt or truncated {codec} data: {err}") from err


def compressed_bits(
    w: Any, codec: str = "gzip", level: int | None = None, payload: str = "float32"
) -> float:
    """Size in bits of the compressed weights, exactly ``8 * len(compress(...))``.

    Parameters and errors as :func:`compress`.

    Returns
    -------
    float
        Compressed size in bits, a whole number (a float like every ``*_bits`` of
        kcomplex).

    Examples
    --------
    >>> w = np.zeros(1000, dtype=np.float32)
    >>> compressed_bits(w, "gzip") < 32 * w.size
    True
    >>> compressed_bits(w, "zstd", level=3, payload="sign") == 8 * len(
    ...     compress(w, "zstd", 3, "sign"))
    True
    """
    return float(8 * len(compress(w, codec, level, payload)))


def compressed_bits_chunks(
    chunks: Iterable[Any],
    codec: str = "gzip",
    level: int | None = None,
    payload: str = "float32",
) -> float:
    """Bits of the compressed concatenation of `chunks`, streamed one chunk at a time.

    Memory stays at one chunk plus the compressor's state. For every codec the result
    equals ``compressed_bits(np.concatenate(chunks), ...)`` exactly, however the chunks
    are cut (gzip's output is byte-identical to ``gzip.compress(..., mtime=0)``, zstd's to
    :func:`compress`, which streams too).

    Parameters
    ----------
    chunks : iterable of array_like or torch.Tensor
        Pieces of the weight vector, each flattened in C order; empty pieces are allowed.
    codec, level
        As :func:`compress`.
    payload : {"float32", "sign", "sign_bytes"}
        ``"sign"`` packs across chunk boundaries as on the concatenation.

    Returns
    -------
    float
        Compressed size in bits, a whole number.

    Raises
    ------
    NotImplementedError
        For ``payload="shuffle"``: it groups byte positions over the whole array.
    ValueError
        As :func:`compress`, naming the chunk; or all chunks empty.

    Examples
    --------
    >>> parts = [np.arange(5, dtype=np.float32), np.ones(3, dtype=np.float32)]
    >>> compressed_bits_chunks(parts, "bz2") == compressed_bits(np.concatenate(parts), "bz2")
    True
    """
    c, lvl = _resolve(codec, level, payload)
    if payload not in _GRANULE:
        raise NotImplementedError(
            f"payload {payload!r} cannot be streamed: it reorders bytes across the whole "
            f"array; concatenate the chunks and call compressed_bits (streamable: "
            f"{', '.join(map(repr, _GRANULE))})"
        )
    layout, granule = PAYLOADS[payload], _GRANULE[payload]
    stream = c.stream(lvl)
    size, seen = 0, 0
    carry = np.empty(0, dtype="<f4")
    for i, chunk in enumerate(chunks):
        w = _weights(chunk, f"chunk {i}", allow_empty=True)
        seen += w.size
        if carry.size:
            w = np.concatenate([carry, w])
        cut = w.size - w.size % granule
        carry = w[cut:]
        if cut:
            size += len(stream.compress(layout(w[:cut])))
    if seen == 0:
        raise ValueError("chunks are empty: nothing to compress")
    if carry.size:
        size += len(stream.compress(layout(carry)))
    return float(8 * (size + len(stream.flush())))
