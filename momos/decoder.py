"""Reading a .momos stream (``docs/format.md``, versions 1 and 2) into tensors and its
:class:`Sections`.

Every count read from the header is bounded by the data left before anything is
allocated, and the sections are decoded in chunks, so memory stays bounded whatever the
stream declares (``tests/momos/test_codec_limits.py``). The pieces that decode one section
in bounded steps (the two mosaic readers, zstd inflation) are in :mod:`momos.readers`; a
version 2 stored tensor is a :mod:`momos.tensorcode` blob, which checks itself.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

from kcomplex.bitstream import BitReader, unpack_fields
from kcomplex.mdl import dequantize_uniform

from .qat import quantize_weight
from .readers import CodedMosaic, FixedMosaic, check_zstd, inflate
from .sections import (
    DTYPES,
    MAGIC,
    MAX_POST_Q,
    PREFIX,
    VERSIONS,
    CodecError,
    PooledTensor,
    Sections,
    StoredTensor,
)
from .tensorcode import code_name, decode_tensor

__all__ = ["decode_stream"]

_MAX_NDIM = 32


def _read_int(br: BitReader, limit: int, what: str, hint: str = "") -> int:
    v = br.read_elias("delta") - 1
    if v > limit:
        raise CodecError(f"corrupt header: {what} = {v} exceeds its bound {limit}{hint}")
    return v


def _read_tensor(br: BitReader, budget: list[int],
                 pooled_v2: bool) -> tuple[str, tuple[int, ...], int]:
    """(name, shape, post-quantization width) of one tensor record."""
    left = lambda: (br.n_bits - br.pos) // 8  # noqa: E731
    raw = bytes(br.read_fields(_read_int(br, left(), "name length"), 8).astype(np.uint8))
    ndim = _read_int(br, _MAX_NDIM, "ndim")
    hint = " (the weights left under max_numel: pass a larger max_numel for a bigger model)"
    shape = tuple(_read_int(br, budget[0], "dim", hint) for _ in range(ndim))
    numel = math.prod(shape)
    if numel > budget[0]:
        raise CodecError(f"corrupt header: more than max_numel weights ({shape}); pass a "
                         "larger max_numel for a bigger model")
    budget[0] -= numel
    _read_int(br, len(DTYPES) - 1, "dtype")
    post_q = _read_int(br, MAX_POST_Q, "post-quantization width") if pooled_v2 else 0
    if post_q == 1:
        raise CodecError("corrupt header: post-quantization width 1")
    return raw.decode("utf-8"), shape, post_q


def _decode_bank(body: bytes, pos: int, k: int, s: int, q: int, half: int, scale,
                 chunk: int) -> np.ndarray:
    """The ``(k, s)`` float32 bank at byte `pos` (its bytes are known to be there)."""
    n = k * s
    if q == 32:
        bank = np.frombuffer(body, "<f4", count=n, offset=pos).astype(np.float32)
    elif q == 16:  # numpy has no bfloat16
        bits = torch.from_numpy(np.frombuffer(body, "<i2", count=n, offset=pos).astype(np.int16))
        bank = bits.view(torch.bfloat16 if half else torch.float16).to(torch.float32).numpy()
    else:
        top, values = 2 ** (q - 1) - 1, np.empty(n, dtype=np.float32)
        for i in range(0, n, chunk):
            ints = unpack_fields(body, min(chunk, n - i), q, 8 * pos + i * q) - top
            if int(np.abs(ints).max()) > top:
                raise CodecError("corrupt bank: a level out of range")
            values[i:i + ints.size] = dequantize_uniform(ints, float(scale))
        bank = values
    return bank.reshape(k, s)


def _check_prefix(data) -> tuple[int, bytes]:
    """The version and the body of `data` after checking its prefix (magic, version,
    length, CRC)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < PREFIX.size or data[:5] != MAGIC:
        raise CodecError("not a MoMos stream: wrong magic or shorter than the 18-byte prefix")
    _, version, length, crc = PREFIX.unpack_from(data)
    if version not in VERSIONS:
        raise CodecError(f"unsupported format version {version}; this reader knows "
                         f"{', '.join(map(str, VERSIONS))}")
    if length != len(data):
        raise CodecError(f"length mismatch: the prefix says {length} bytes, got {len(data)} "
                         "(truncated or trailing data)")
    body = data[PREFIX.size:]
    if zlib.crc32(body) != crc:
        raise CodecError("CRC32 mismatch: the stream is corrupted")
    return version, body


def decode_stream(data, max_numel: int, materialize: bool,
                  chunk: int) -> tuple[dict[str, torch.Tensor], Sections]:
    """Decode and check a whole stream: its tensors (none unless `materialize`) and its
    itemization, whose total is checked to be ``8 * len(data)``.

    Parameters
    ----------
    data : bytes
        The whole stream.
    max_numel : int
        The most weights (all tensors together) to accept, an integer >= 0.
    materialize : bool
        Keep the decoded tensors (else only check them).
    chunk : int
        Weights per step of the chunked decoding, which bounds its scratch memory.

    Returns
    -------
    (dict[str, torch.Tensor], Sections)

    Raises
    ------
    CodecError
        For anything but a complete, valid stream.
    """
    version, body = _check_prefix(data)
    try:
        return _decode_body(body, version, max_numel, materialize, chunk)
    except CodecError:
        raise
    except Exception as exc:  # numpy, torch, constriction, zstd: all a CodecError
        raise CodecError(f"corrupt MoMos stream: {type(exc).__name__}: {exc}") from exc


def _decode_body(body: bytes, version: int, max_numel: int, materialize: bool,
                 chunk: int) -> tuple[dict[str, torch.Tensor], Sections]:
    br, budget = BitReader(body), [max_numel]
    n_pooled = _read_int(br, br.n_bits, "tensor count")
    n_stored = _read_int(br, br.n_bits, "stored tensor count")
    records = [_read_tensor(br, budget, version > 1 and i < n_pooled)
               for i in range(n_pooled + n_stored)]
    if len({name for name, _, _ in records}) != len(records):
        raise CodecError("corrupt header: duplicate tensor names")
    # Version 1 always has the MoMos fields; version 2 only with pooled tensors.
    has_bank = version == 1 or n_pooled > 0
    s = k = q = half = coded = bank_bytes = mosaic_len = 0
    scale = counts = None
    before_bank = before_counts = br.pos
    if has_bank:
        s = _read_int(br, br.n_bits, "s")
        k = _read_int(br, br.n_bits, "k")
        q = _read_int(br, 32, "q")
        if s < 1 or k < 1 or not (q == 32 or 2 <= q <= 16):
            raise CodecError(f"corrupt header: s={s}, k={k}, q={q}")
        bank_bytes = -(-k * s * q // 8)
        if bank_bytes > len(body):
            raise CodecError("corrupt header: the bank is longer than the stream")
        before_bank = br.pos
        half = br.read(1) if q == 16 else 0
        scale = np.uint32(br.read(32)).view(np.float32) if q < 16 else None
        if version > 1 and scale is not None and not (np.isfinite(scale)
                                                      and not np.signbit(scale)):
            raise CodecError(f"corrupt bank: scale {scale} is not a finite float32 >= +0")
    bank_field_bits = br.pos - before_bank
    pooled = tuple(PooledTensor(name, math.prod(shape), -(-math.prod(shape) // s), post_q)
                   for name, shape, post_q in records[:n_pooled])
    m = sum(t.n_blocks for t in pooled)
    if has_bank:
        coded = br.read(1)
        before_counts = br.pos
        if coded:
            counts = np.array([_read_int(br, m, "count") for _ in range(k)], dtype=np.int64)
            mosaic_len = 4 * _read_int(br, len(body) // 4, "payload words")
            if int(counts.sum()) != m:
                raise CodecError("corrupt header: motif counts do not add up to the block "
                                 "count")
        else:
            mosaic_len = -(-m * (k - 1).bit_length() // 8)
    mosaic_field_bits = br.pos - before_counts
    # (v1 mode: 0 raw, 1 zstd; v2: None, the code is the blob's first byte), blob length
    stored_meta = [(br.read(1) if version == 1 else None,
                    _read_int(br, len(body), "blob length")) for _ in range(n_stored)]
    header_bits = br.pos
    if br.read(-br.pos % 8):
        raise CodecError("corrupt header: nonzero padding")
    pos = br.pos // 8
    if pos + bank_bytes + mosaic_len + sum(size for _, size in stored_meta) != len(body):
        raise CodecError("corrupt stream: the section lengths do not add up to its length")
    # Every stored tensor's blob is located (and a v1 one's size checked) before any
    # tensor is allocated.
    at, blobs, stored = pos + bank_bytes + mosaic_len, [], []
    for (name, shape, _), (mode, size) in zip(records[n_pooled:], stored_meta):
        want, blob = 4 * math.prod(shape), body[at:at + size]
        if version > 1:
            if not blob:
                raise CodecError(f"corrupt stored tensor {name!r}: an empty blob")
            code = code_name(blob)
        elif mode:
            check_zstd(blob, want, name)
            code = "zstd"
        elif size != want:
            raise CodecError(f"corrupt leftover {name!r}: {size} bytes for {shape}")
        else:
            code = "raw"
        stored.append(StoredTensor(name, math.prod(shape), code, 8 * size))
        blobs.append((name, shape, code, blob))
        at += size
    sections = Sections(
        s=s, k=k, q=q, pooled=pooled, stored=tuple(stored),
        header_field_bits=header_bits - bank_field_bits - mosaic_field_bits,
        padding_bits=br.pos - header_bits, bank_field_bits=bank_field_bits,
        bank_value_bits=8 * bank_bytes, mosaic_coded=bool(coded),
        mosaic_field_bits=mosaic_field_bits, mosaic_value_bits=8 * mosaic_len)
    out = _decode_pool(body, pos, records[:n_pooled], sections, half, scale, counts,
                       materialize, chunk) if has_bank else {}
    for name, shape, code, blob in blobs:
        numel = math.prod(shape)
        values = np.empty(numel, dtype=np.float32) if materialize else None
        if version > 1:
            decode_tensor(blob, numel, values)
        elif code == "zstd":
            inflate(blob, 4 * numel, name, values)
        elif values is not None:
            values[:] = np.frombuffer(blob, "<f4")
        if values is not None:
            out[name] = torch.from_numpy(values).reshape(shape)
    return out, sections


def _decode_pool(body: bytes, pos: int, records, sec: Sections, half: int, scale, counts,
                 materialize: bool, chunk: int) -> dict[str, torch.Tensor]:
    """The pooled tensors (none unless `materialize`) from the bank at byte `pos` and the
    mosaic after it, post-quantized where their record says so."""
    s, k = sec.s, sec.k
    bank = _decode_bank(body, pos, k, s, sec.q, half, scale, chunk)
    pos += sec.bank_value_bits // 8
    mosaic = (CodedMosaic(body[pos:pos + sec.mosaic_value_bits // 8], counts)
              if sec.mosaic_coded else FixedMosaic(body, 8 * pos, sec.m, k))
    out, step = {}, max(1, chunk // s)
    for name, shape, post_q in records:
        numel = math.prod(shape)
        dest = np.empty(numel, dtype=np.float32) if materialize else None
        n_blocks = -(-numel // s)
        for lo in range(0, n_blocks, step):
            idx = mosaic.take(min(step, n_blocks - lo))
            if dest is not None:
                a, b = lo * s, min(numel, (lo + idx.size) * s)
                dest[a:b] = np.take(bank, idx, axis=0).reshape(-1)[:b - a]
        if dest is not None:
            t = torch.from_numpy(dest).reshape(shape)
            out[name] = quantize_weight(t, post_q) if post_q else t
    mosaic.finish()
    return out
