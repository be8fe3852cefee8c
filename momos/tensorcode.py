"""Exact lossless codes of one float32 tensor: the shortest blob that decodes bit for bit.

A blob is one mode byte (the index of its code in :data:`TENSOR_CODES`) and the code's
data; the number of values is not in the blob, the caller stores it (``docs/tensor-codes.md``
gives every layout byte by byte). The codes:

- ``raw``: the float32 values, little-endian.
- ``zstd`` / ``lzma``: one zstd frame (level 19) / one raw LZMA2 stream (preset 9, with a
  dictionary the size of the data) of those bytes.
- ``shuffle-zstd`` / ``shuffle-lzma``: the same of the byte planes (every value's first
  byte, then every second byte, ...).
- ``uniform``: values that are exactly ``float32(level * scale)`` (:func:`exact_uniform`,
  what quantization-aware training computes with): q, the scale, and the levels coded the
  shortest of fixed width, categorical ANS with their counts, or ANS with a quantized
  Laplace or Gaussian model of two float32 parameters.
- ``palette``: at most :data:`MAX_PALETTE` distinct values (k-means quantization): the
  values, then one index per weight, fixed width or categorical ANS.

Decoding checks every count against ``numel`` and the bytes present before it allocates,
and any malformed blob raises :class:`momos.sections.CodecError`.

Examples
--------
>>> import numpy as np
>>> v = np.array([0.75, -0.25, 0.75, 0.0], dtype=np.float32)
>>> blob = encode_tensor(v)
>>> code_name(blob), len(blob)
('uniform', 9)
>>> out = np.empty(4, dtype=np.float32)
>>> decode_tensor(blob, 4, out)
array([ 0.75, -0.25,  0.75,  0.  ], dtype=float32)
"""

from __future__ import annotations

import lzma
import struct
from collections.abc import Callable, Sequence

import constriction
import numpy as np
import zstandard

from kcomplex.bitstream import BitReader, BitWriter, pack_fields, unpack_fields
from kcomplex.mdl import ans_encode
from kcomplex.validation import check_choice, check_int

from .readers import CodedMosaic, check_zstd, inflate
from .sections import CodecError

__all__ = ["MAX_PALETTE", "MAX_UNIFORM_BITS", "TENSOR_CODES", "code_name", "decode_tensor",
           "encode_candidates", "encode_tensor", "exact_uniform"]

#: The codes, by mode byte (the blob's first byte is the index here).
TENSOR_CODES: tuple[str, ...] = ("raw", "zstd", "lzma", "shuffle-zstd", "shuffle-lzma",
                                 "uniform", "palette")
#: The largest palette (distinct values) the ``palette`` code takes; it also needs at
#: most as many values as weights.
MAX_PALETTE = 1 << 16
#: The widest levels of the ``uniform`` code: q in 2..16.
MAX_UNIFORM_BITS = 16
#: How the ``uniform`` code writes its levels, by sub-mode byte.
LEVEL_CODES = ("fixed", "categorical", "laplace", "gaussian")
#: How the ``palette`` code writes its indices, by sub-mode byte.
INDEX_CODES = ("fixed", "categorical")

_ZSTD_LEVEL = 19
_LZMA_PRESET = 9
_LZMA_MIN_DICT, _LZMA_MAX_DICT = 1 << 12, 1 << 26
#: Values decoded (and bytes inflated) per step, so that checking a blob without an output
#: array takes bounded scratch memory.
_STEP = 1 << 16
#: The range a parametric model's location must lie in is [-qmax, qmax]; its scale lies
#: here (the encoder clamps to it), so constriction never sees a degenerate model.
_MIN_SPREAD, _MAX_SPREAD = 2.0 ** -4, 2.0 ** 20
_F32 = struct.Struct("<f")
_U16 = struct.Struct("<H")


# --- exact uniform quantization ------------------------------------------------------


def _scales(top: np.float32, qmax: int) -> list[np.float32]:
    """``float32(top / qmax)`` and its float32 neighbours up to 3 ulps, nearest first:
    the scales whose largest level could be ``top`` (QAT's scale and its rounding)."""
    s0 = np.float32(np.float64(top) / qmax)
    out, up, down = [s0], s0, s0
    for _ in range(3):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
        out += [up, down]
    return [s for s in out if 0 < s < np.inf]


def _levels_of(u: np.ndarray, scale: np.float32, qmax: int) -> np.ndarray | None:
    """The int64 levels that give exactly `u` at `scale`, or None."""
    levels = np.rint(u.astype(np.float64) / np.float64(scale))
    if np.abs(levels).max() > qmax:
        return None
    back = (levels * np.float64(scale)).astype(np.float32)
    if not np.array_equal(back.view(np.uint32), u.view(np.uint32)):
        return None
    return levels.astype(np.int64)


def exact_uniform(values: np.ndarray) -> tuple[int, float, np.ndarray] | None:
    """Write float32 values exactly as ``float32(level * scale)`` with few levels.

    For q = 2, 3, ..., 16 (``qmax = 2**(q-1) - 1``) the scales tried are
    ``float32(max|v| / qmax)`` and its float32 neighbours up to 3 ulps away (what
    :func:`momos.qat.quantize_weight` computes and its roundings); the first (q, scale)
    whose levels ``rint(v / scale)`` lie in ``[-qmax, qmax]`` and give back every value bit
    for bit wins, so q is the smallest such. All-zero (+0.0) values give ``(2, 0.0, 0)``,
    the one case with a zero scale.

    Parameters
    ----------
    values : numpy.ndarray
        float32, any shape (read in C order).

    Returns
    -------
    (int, float, numpy.ndarray) or None
        q, the scale (a float32 value as a Python float) and the int64 levels of
        ``values.size``, with ``(levels.astype(np.float64) * scale).astype(np.float32)``
        bit-equal to the values; None if there is none: no values, a NaN, an infinity, a
        -0.0 (a level times a positive scale is never -0.0) or values off such a grid.

    Raises
    ------
    TypeError
        If `values` is not a float32 array.

    Examples
    --------
    >>> import numpy as np
    >>> exact_uniform(np.array([0.75, -0.25, 0.0], dtype=np.float32))
    (3, 0.25, array([ 3, -1,  0]))
    >>> exact_uniform(np.array([0.1, -0.0], dtype=np.float32)) is None
    True
    """
    v = _flat(values)
    if not v.size or not np.isfinite(v).all():
        return None
    u, inverse = np.unique(v.view(np.uint32), return_inverse=True)
    u = u.view(np.float32)
    if (u.view(np.uint32) == 0x8000_0000).any():  # -0.0
        return None
    top = np.abs(u).max()
    if top == 0:
        return 2, 0.0, np.zeros(v.size, dtype=np.int64)
    # A few spread values reject most (q, scale) before the full check.
    probe = u[np.unique(np.linspace(0, u.size - 1, min(u.size, 64)).astype(np.int64))]
    for q in range(2, MAX_UNIFORM_BITS + 1):
        qmax = 2 ** (q - 1) - 1
        for scale in _scales(top, qmax):
            if _levels_of(probe, scale, qmax) is None:
                continue
            levels = _levels_of(u, scale, qmax)
            if levels is not None:
                return q, float(scale), levels[inverse.reshape(-1)]
    return None


# --- encoding ------------------------------------------------------------------------


def _flat(values: np.ndarray) -> np.ndarray:
    if not isinstance(values, np.ndarray) or values.dtype != np.float32:
        got = type(values).__name__ if not isinstance(values, np.ndarray) else values.dtype
        raise TypeError(f"values must be a float32 numpy array, got {got}; convert it "
                        "first (the code is exact only for float32 values)")
    return np.ascontiguousarray(values).reshape(-1)


def _lzma_filters(n_bytes: int) -> list[dict]:
    """The fixed LZMA2 chain for `n_bytes` of data: preset 9, its dictionary cut to the
    data (at least 4 KiB), so that decoding allocates no more than the data needs."""
    size = min(max(n_bytes, _LZMA_MIN_DICT), _LZMA_MAX_DICT)
    return [{"id": lzma.FILTER_LZMA2, "preset": _LZMA_PRESET, "dict_size": size}]


def _planes(data: bytes) -> bytes:
    return np.frombuffer(data, np.uint8).reshape(-1, 4).T.tobytes()


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(data)


def _lzma(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_lzma_filters(len(data)))


def _ans(symbols: np.ndarray, model) -> bytes:
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(symbols.astype(np.int32), model)
    return coder.get_compressed().astype("<u4").tobytes()


def _parametric(kind: str, qmax: int, loc: float, spread: float):
    cls = (constriction.stream.model.QuantizedLaplace if kind == "laplace"
           else constriction.stream.model.QuantizedGaussian)
    return cls(-qmax, qmax, loc, spread)


def _fit(kind: str, levels: np.ndarray, qmax: int) -> tuple[float, float]:
    """The model's float32 location and scale (the maximum-likelihood ones, clamped to the
    range the decoder accepts)."""
    if kind == "laplace":
        loc = float(np.median(levels))
        spread = float(np.abs(levels - loc).mean())
    else:
        loc, spread = float(levels.mean()), float(levels.std())
    loc = float(np.float32(min(max(loc, -qmax), qmax)))
    spread = float(np.float32(min(max(spread, _MIN_SPREAD), _MAX_SPREAD)))
    return loc, spread


def _counts_header(counts: np.ndarray, offset: bool) -> bytes:
    """Elias-delta counts, padded to the byte; `offset`: the counts may be 0 (written +1)
    and only the range from the first to the last nonzero one is written, after its start
    and length."""
    bw = BitWriter()
    if offset:
        nz = np.flatnonzero(counts)
        lo, hi = int(nz[0]), int(nz[-1])
        bw.write_elias([lo + 1, hi - lo + 1], "delta")
        bw.write_elias(counts[lo:hi + 1] + 1, "delta")
    else:
        bw.write_elias(counts, "delta")
    return bw.getvalue()


def _index_blobs(idx: np.ndarray, alphabet: int, width: int, counts: np.ndarray,
                 offset: bool) -> list[bytes]:
    """The fixed-width and the categorical-ANS body of `idx` (sub-modes 0 and 1)."""
    fixed = bytes([0]) + pack_fields(idx, width)
    return [fixed, bytes([1]) + _counts_header(counts, offset) + ans_encode(idx, alphabet)]


def _uniform(v: np.ndarray) -> bytes | None:
    found = exact_uniform(v)
    if found is None:
        return None
    q, scale, levels = found
    qmax = 2 ** (q - 1) - 1
    head = bytes([TENSOR_CODES.index("uniform"), q]) + _F32.pack(scale)
    shifted = levels + qmax
    bodies = _index_blobs(shifted, 2 * qmax + 1, q,
                          np.bincount(shifted, minlength=2 * qmax + 1), offset=True)
    for sub, kind in enumerate(LEVEL_CODES[2:], start=2):
        loc, spread = _fit(kind, levels, qmax)
        payload = _ans(levels, _parametric(kind, qmax, loc, spread))
        bodies.append(bytes([sub]) + _F32.pack(loc) + _F32.pack(spread) + payload)
    return head + min(bodies, key=len)


def _palette(v: np.ndarray) -> bytes | None:
    bits, idx = np.unique(v.view(np.uint32), return_inverse=True)
    k = bits.size
    if not 1 <= k <= min(v.size, MAX_PALETTE):
        return None
    idx = idx.reshape(-1)
    head = (bytes([TENSOR_CODES.index("palette")]) + _U16.pack(k - 1)
            + bits.astype("<u4").tobytes())
    bodies = _index_blobs(idx, k, (k - 1).bit_length(), np.bincount(idx, minlength=k),
                          offset=False)
    return head + min(bodies, key=len)


def _encoders() -> dict[str, Callable[[np.ndarray], bytes | None]]:
    def whole(coder):
        return lambda v: coder(v.astype("<f4").tobytes())

    def shuffled(coder):
        return lambda v: coder(_planes(v.astype("<f4").tobytes()))

    return {"raw": whole(bytes), "zstd": whole(_zstd), "lzma": whole(_lzma),
            "shuffle-zstd": shuffled(_zstd), "shuffle-lzma": shuffled(_lzma),
            "uniform": _uniform, "palette": _palette}


_ENCODERS = _encoders()


def _candidates(v: np.ndarray, codes: Sequence[str]) -> dict[str, bytes]:
    out = {}
    for name in TENSOR_CODES:
        if name in codes:
            data = _ENCODERS[name](v)
            if data is not None:
                out[name] = data if name in ("uniform", "palette") else bytes(
                    [TENSOR_CODES.index(name)]) + data
    return out


def encode_candidates(values: np.ndarray) -> dict[str, bytes]:
    """Every applicable code's blob of `values`, by code name, in :data:`TENSOR_CODES`
    order (``uniform`` and ``palette`` only where they apply).

    Parameters
    ----------
    values : numpy.ndarray
        float32, any shape (read in C order).

    Returns
    -------
    dict of str to bytes

    Raises
    ------
    TypeError
        If `values` is not a float32 array.

    Examples
    --------
    >>> import numpy as np
    >>> sorted(encode_candidates(np.array([1.5, 2.5], dtype=np.float32)))
    ['lzma', 'palette', 'raw', 'shuffle-lzma', 'shuffle-zstd', 'uniform', 'zstd']
    """
    return _candidates(_flat(values), TENSOR_CODES)


def encode_tensor(values: np.ndarray, codes: Sequence[str] | None = None) -> bytes:
    """The shortest exact blob of `values` among `codes`.

    Parameters
    ----------
    values : numpy.ndarray
        float32, any shape (read in C order); may be empty.
    codes : sequence of str, optional
        Names from :data:`TENSOR_CODES` to try (default all); ``uniform`` and ``palette``
        are skipped where they do not apply. Ties go to the earlier code in
        :data:`TENSOR_CODES`.

    Returns
    -------
    bytes
        The blob (deterministic); :func:`decode_tensor` with ``values.size`` gives the
        values back bit for bit.

    Raises
    ------
    TypeError
        If `values` is not a float32 array.
    ValueError
        For an unknown code name, or if none of `codes` applies (add ``"raw"``).

    Examples
    --------
    >>> import numpy as np
    >>> encode_tensor(np.array([1.0], dtype=np.float32), codes=["raw"]).hex()
    '000000803f'
    """
    v = _flat(values)
    names = TENSOR_CODES if codes is None else tuple(codes)
    for name in names:
        check_choice(name, "tensor code", TENSOR_CODES)
    found = _candidates(v, names)
    if not found:
        raise ValueError(f"none of the codes {list(names)} applies to these values; "
                         "include 'raw', which always does")
    return min(found.values(), key=len)  # dict order is TENSOR_CODES order: ties -> earlier


# --- decoding ------------------------------------------------------------------------


def code_name(blob: bytes) -> str:
    """The name of the code of `blob` (its first byte).

    Raises
    ------
    CodecError
        For an empty blob or an unknown mode byte.

    Examples
    --------
    >>> code_name(b"\\x05\\x02")
    'uniform'
    """
    if not len(blob):
        raise CodecError("empty tensor blob: it needs at least its mode byte")
    if blob[0] >= len(TENSOR_CODES):
        raise CodecError(f"unknown tensor code {blob[0]} (known: 0..{len(TENSOR_CODES) - 1})")
    return TENSOR_CODES[blob[0]]


def _sink(out: np.ndarray | None, numel: int) -> np.ndarray | None:
    if out is None:
        return None
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (numel,):
        raise ValueError(f"out must be a 1-D float32 array of {numel} values, got "
                         f"{getattr(out, 'dtype', type(out).__name__)} "
                         f"{getattr(out, 'shape', '')}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be a writeable C-contiguous array")
    return out


def _decode_raw(data: bytes, numel: int, out: np.ndarray | None) -> None:
    if len(data) != 4 * numel:
        raise CodecError(f"corrupt raw tensor: {len(data)} bytes for {numel} float32 values")
    if out is not None:
        out.view(np.uint8)[:] = np.frombuffer(data, np.uint8)


def _unzstd(data: bytes, want: int, out: np.ndarray | None) -> None:
    check_zstd(data, want, "zstd tensor")
    inflate(data, want, "zstd tensor", out)


def _unlzma(data: bytes, want: int, out: np.ndarray | None) -> None:
    """Inflate the raw LZMA2 stream `data` into `out`'s bytes, `_STEP * 4` bytes at a
    time, never more than `want` in all."""
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_lzma_filters(want))
    sink, got, chunk = None if out is None else out.view(np.uint8), 0, data
    while not dec.eof:
        part = dec.decompress(chunk, max_length=min(4 * _STEP, want - got + 1))
        chunk = b""
        if got + len(part) > want:
            raise CodecError(f"corrupt lzma tensor: more than the {want} bytes of its values")
        if sink is not None:
            sink[got:got + len(part)] = np.frombuffer(part, np.uint8)
        got += len(part)
        if not part and dec.needs_input:
            break
    if not dec.eof or dec.unused_data or got != want:
        raise CodecError(f"corrupt lzma tensor: {got} bytes for the {want} of its values "
                         "(a truncated stream or data after it)")


def _decode_bytes(inflater: Callable, shuffled: bool) -> Callable:
    def decode(data: bytes, numel: int, out: np.ndarray | None) -> None:
        if not shuffled or out is None:
            inflater(data, 4 * numel, out)
            return
        planes = np.empty(4 * numel, np.uint8)
        inflater(data, 4 * numel, planes)
        out.view(np.uint8).reshape(-1, 4)[:] = planes.reshape(4, -1).T

    return decode


def _fixed_indices(body: bytes, numel: int, width: int, alphabet: int,
                   what: str) -> Callable[[int, int], np.ndarray]:
    """A reader of the `numel` `width`-bit fields of `body` (checked for length, padding,
    and values below `alphabet` as they are read)."""
    n_bits = numel * width
    if len(body) != (n_bits + 7) // 8:
        raise CodecError(f"corrupt {what}: {len(body)} bytes for {numel} fields of {width} "
                         f"bits (needs {(n_bits + 7) // 8})")
    if n_bits % 8 and body[-1] & (0xFF >> (n_bits % 8)):
        raise CodecError(f"corrupt {what}: nonzero padding bits")

    def take(start: int, n: int) -> np.ndarray:
        idx = unpack_fields(body, n, width, start * width)
        if idx.size and int(idx.max()) >= alphabet:
            raise CodecError(f"corrupt {what}: a field out of range")
        return idx

    return take


def _read_counts(body: bytes, numel: int, alphabet: int, offset: bool,
                 what: str) -> tuple[np.ndarray, bytes]:
    """The counts header of :func:`_counts_header` (checked against `numel` while it is
    read) and the payload after it."""
    br = BitReader(body)
    if offset:
        lo, span = br.read_elias("delta") - 1, br.read_elias("delta")
        if lo + span > alphabet:
            raise CodecError(f"corrupt {what}: counts beyond the {alphabet} symbols")
    else:
        lo, span = 0, alphabet
    counts, total = np.zeros(alphabet, dtype=np.int64), 0
    for i in range(lo, lo + span):
        c = br.read_elias("delta") - int(offset)
        total += c
        if total > numel:
            raise CodecError(f"corrupt {what}: the counts exceed the {numel} values")
        counts[i] = c
    if total != numel or (offset and numel and (not counts[lo] or not counts[lo + span - 1])):
        raise CodecError(f"corrupt {what}: the counts give {total} values, not {numel}, "
                         "or the written range has empty ends")
    end = br.pos
    if end % 8 and body[end // 8] & (0xFF >> (end % 8)):
        raise CodecError(f"corrupt {what}: nonzero padding bits")
    payload = body[(end + 7) // 8:]
    if len(payload) % 4:
        raise CodecError(f"corrupt {what}: an ANS payload of {len(payload)} bytes, "
                         "not whole 32-bit words")
    return counts, payload


def _categorical(body: bytes, numel: int, alphabet: int, offset: bool,
                 what: str) -> tuple[Callable[[int, int], np.ndarray], Callable[[], None]]:
    counts, payload = _read_counts(body, numel, alphabet, offset, what)
    try:
        reader = CodedMosaic(payload, counts)
    except (CodecError, ValueError) as exc:
        raise CodecError(f"corrupt {what}: {exc}") from exc

    def take(start: int, n: int) -> np.ndarray:
        try:
            return reader.take(n)
        except CodecError as exc:
            raise CodecError(f"corrupt {what}: the ANS payload does not decode to its "
                             "counts") from exc

    def finish() -> None:
        try:
            reader.finish()
        except CodecError as exc:
            raise CodecError(f"corrupt {what}: the ANS payload does not decode to its "
                             "counts") from exc

    return take, finish


def _parametric_reader(kind: str, body: bytes, qmax: int,
                       what: str) -> tuple[Callable[[int, int], np.ndarray], Callable[[], None]]:
    if len(body) < 8 or (len(body) - 8) % 4:
        raise CodecError(f"corrupt {what}: a {kind} body of {len(body)} bytes (needs 8 "
                         "parameter bytes and whole 32-bit words)")
    loc, spread = _F32.unpack_from(body, 0)[0], _F32.unpack_from(body, 4)[0]
    if not (-qmax <= loc <= qmax and _MIN_SPREAD <= spread <= _MAX_SPREAD):
        raise CodecError(f"corrupt {what}: {kind} parameters ({loc}, {spread}) out of range")
    model = _parametric(kind, qmax, loc, spread)
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(body[8:], "<u4").astype(np.uint32))

    def take(start: int, n: int) -> np.ndarray:
        return coder.decode(model, n).astype(np.int64) + qmax

    def finish() -> None:
        if not coder.is_empty():
            raise CodecError(f"corrupt {what}: data left in the ANS payload")

    return take, finish


def _decode_indexed(body: bytes, numel: int, out: np.ndarray | None, alphabet: int,
                    width: int, to_values: Callable[[np.ndarray], np.ndarray], offset: bool,
                    what: str, parametric: dict) -> None:
    """Decode `numel` indices below `alphabet` from `body` (sub-mode byte first) `_STEP`
    at a time, map them to float32 with `to_values`, write them to `out` if given."""
    if not body:
        raise CodecError(f"corrupt {what}: no sub-mode byte")
    sub, rest = body[0], body[1:]
    finish: Callable[[], None] = lambda: None  # noqa: E731
    if sub == 0:
        take = _fixed_indices(rest, numel, width, alphabet, what)
    elif sub == 1:
        take, finish = _categorical(rest, numel, alphabet, offset, what)
    elif sub in parametric:
        take, finish = _parametric_reader(parametric[sub], rest, alphabet // 2, what)
    else:
        raise CodecError(f"corrupt {what}: unknown sub-mode {sub}")
    for start in range(0, numel, _STEP):
        n = min(_STEP, numel - start)
        values = to_values(take(start, n))
        if out is not None:
            out[start:start + n] = values
    finish()


def _decode_uniform(data: bytes, numel: int, out: np.ndarray | None) -> None:
    if len(data) < 5:
        raise CodecError(f"corrupt uniform tensor: {len(data)} header bytes (needs 5)")
    q, scale = data[0], np.float64(_F32.unpack_from(data, 1)[0])
    if not 2 <= q <= MAX_UNIFORM_BITS:
        raise CodecError(f"corrupt uniform tensor: q = {q} (must be 2..{MAX_UNIFORM_BITS})")
    if not (np.isfinite(scale) and scale >= 0):
        raise CodecError(f"corrupt uniform tensor: scale {scale} (must be finite, >= 0)")
    qmax = 2 ** (q - 1) - 1

    def to_values(shifted: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # a corrupt scale may overflow: still a value
            return ((shifted - qmax).astype(np.float64) * scale).astype(np.float32)

    _decode_indexed(data[5:], numel, out, 2 * qmax + 1, q, to_values, True,
                    "uniform tensor", {2: "laplace", 3: "gaussian"})


def _decode_palette(data: bytes, numel: int, out: np.ndarray | None) -> None:
    if len(data) < 2:
        raise CodecError("corrupt palette tensor: no palette size")
    k = _U16.unpack_from(data, 0)[0] + 1
    if k > numel or 2 + 4 * k > len(data):
        raise CodecError(f"corrupt palette tensor: {k} palette values for {numel} weights "
                         f"in {len(data)} bytes")
    bits = np.frombuffer(data, "<u4", k, 2).astype(np.uint32)
    if k > 1 and not (bits[1:] > bits[:-1]).all():
        raise CodecError("corrupt palette tensor: palette values not in increasing bit order")
    palette = bits.view(np.float32)
    _decode_indexed(data[2 + 4 * k:], numel, out, k, (k - 1).bit_length(),
                    lambda idx: palette[idx], False, "palette tensor", {})


_DECODERS: dict[str, Callable[[bytes, int, np.ndarray | None], None]] = {
    "raw": _decode_raw,
    "zstd": _decode_bytes(_unzstd, False),
    "lzma": _decode_bytes(_unlzma, False),
    "shuffle-zstd": _decode_bytes(_unzstd, True),
    "shuffle-lzma": _decode_bytes(_unlzma, True),
    "uniform": _decode_uniform,
    "palette": _decode_palette,
}


def decode_tensor(blob: bytes, numel: int, out: np.ndarray | None = None) -> np.ndarray | None:
    """Decode a blob of :func:`encode_tensor` into `numel` float32 values, or check it.

    Parameters
    ----------
    blob : bytes
        The whole blob (mode byte first); nothing may follow the code's data.
    numel : int
        The number of values (the caller stores it), >= 0. Every count in the blob is
        checked against it and against the bytes present before anything is allocated.
    out : numpy.ndarray, optional
        A writeable C-contiguous 1-D float32 array of `numel` values to decode into;
        without it the blob is only checked, in bounded scratch memory.

    Returns
    -------
    numpy.ndarray or None
        `out`, filled, or None when only checking.

    Raises
    ------
    CodecError
        For any malformed blob (unknown code, truncated, trailing bytes, counts that do not
        match `numel`, corrupt compressed data).
    TypeError, ValueError
        For a bad `numel` or `out` (the caller's error, not the blob's).

    Examples
    --------
    >>> import numpy as np
    >>> decode_tensor(bytes([0]) + np.float32(2.5).tobytes(), 1, np.empty(1, np.float32))
    array([2.5], dtype=float32)
    >>> decode_tensor(b"\\x00\\x01", 1)
    Traceback (most recent call last):
    ...
    momos.sections.CodecError: corrupt raw tensor: 1 bytes for 1 float32 values
    """
    numel = check_int(numel, "numel", minimum=0)
    sink = _sink(out, numel)
    data = bytes(blob)
    name = code_name(data)
    try:
        _DECODERS[name](data[1:], numel, sink)
    except CodecError:
        raise
    except (ValueError, OverflowError, lzma.LZMAError, zstandard.ZstdError) as exc:
        raise CodecError(f"corrupt {name} tensor: {exc}") from exc
    return out
