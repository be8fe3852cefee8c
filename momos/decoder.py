"""Reading a .momos stream (``docs/format.md``) into tensors and its :class:`Sections`.

Every count read from the header is bounded by the data left before anything is
allocated, and the sections are decoded in chunks, so memory stays bounded whatever the
stream declares (``tests/momos/test_codec_limits.py``). The pieces that decode one section
in bounded steps (the two mosaic readers, zstd inflation) are in :mod:`momos.readers`.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

from kcomplex.bitstream import BitReader, unpack_fields
from kcomplex.mdl import dequantize_uniform

from .readers import CodedMosaic, FixedMosaic, check_zstd, inflate
from .sections import (
    DTYPES,
    MAGIC,
    PREFIX,
    VERSION,
    CodecError,
    LeftoverSection,
    PooledTensor,
    Sections,
)

__all__ = ["decode_stream"]

_MAX_NDIM = 32


def _read_int(br: BitReader, limit: int, what: str, hint: str = "") -> int:
    v = br.read_elias("delta") - 1
    if v > limit:
        raise CodecError(f"corrupt header: {what} = {v} exceeds its bound {limit}{hint}")
    return v


def _read_tensor(br: BitReader, budget: list[int]) -> tuple[str, tuple[int, ...]]:
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
    return raw.decode("utf-8"), shape


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


def _check_prefix(data) -> bytes:
    """The body of `data` after checking its prefix (magic, version, length, CRC)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < PREFIX.size or data[:5] != MAGIC:
        raise CodecError("not a MoMos stream: wrong magic or shorter than the 18-byte prefix")
    _, version, length, crc = PREFIX.unpack_from(data)
    if version != VERSION:
        raise CodecError(f"unsupported format version {version}; this reader knows {VERSION}")
    if length != len(data):
        raise CodecError(f"length mismatch: the prefix says {length} bytes, got {len(data)} "
                         "(truncated or trailing data)")
    body = data[PREFIX.size:]
    if zlib.crc32(body) != crc:
        raise CodecError("CRC32 mismatch: the stream is corrupted")
    return body


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
    body = _check_prefix(data)
    try:
        return _decode_body(body, max_numel, materialize, chunk)
    except CodecError:
        raise
    except Exception as exc:  # numpy, torch, constriction, zstd: all a CodecError
        raise CodecError(f"corrupt MoMos stream: {type(exc).__name__}: {exc}") from exc


def _decode_body(body: bytes, max_numel: int, materialize: bool,
                 chunk: int) -> tuple[dict[str, torch.Tensor], Sections]:
    br, budget = BitReader(body), [max_numel]
    n_coded = _read_int(br, br.n_bits, "tensor count")
    n_left = _read_int(br, br.n_bits, "leftover count")
    tensors = [_read_tensor(br, budget) for _ in range(n_coded + n_left)]
    if len({name for name, _ in tensors}) != len(tensors):
        raise CodecError("corrupt header: duplicate tensor names")
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
    bank_field_bits = br.pos - before_bank
    pooled = tuple(PooledTensor(name, math.prod(shape), -(-math.prod(shape) // s))
                   for name, shape in tensors[:n_coded])
    m = sum(t.n_blocks for t in pooled)
    coded = br.read(1)
    before_counts = br.pos
    if coded:
        counts = np.array([_read_int(br, m, "count") for _ in range(k)], dtype=np.int64)
        payload_len = 4 * _read_int(br, len(body) // 4, "payload words")
        if int(counts.sum()) != m:
            raise CodecError("corrupt header: motif counts do not add up to the block count")
    mosaic_field_bits = br.pos - before_counts
    mosaic_len = payload_len if coded else -(-m * (k - 1).bit_length() // 8)
    left_meta = [(br.read(1), _read_int(br, len(body), "blob length")) for _ in range(n_left)]
    header_bits = br.pos
    if br.read(-br.pos % 8):
        raise CodecError("corrupt header: nonzero padding")
    sections = Sections(
        s=s, k=k, q=q, pooled=pooled,
        leftovers=tuple(LeftoverSection(name, math.prod(shape), bool(mode), 8 * size)
                        for (name, shape), (mode, size) in zip(tensors[n_coded:], left_meta)),
        header_field_bits=header_bits - bank_field_bits - mosaic_field_bits,
        padding_bits=br.pos - header_bits, bank_field_bits=bank_field_bits,
        bank_value_bits=8 * bank_bytes, mosaic_coded=bool(coded),
        mosaic_field_bits=mosaic_field_bits, mosaic_value_bits=8 * mosaic_len)
    if sections.total_bits != 8 * (PREFIX.size + len(body)):
        raise CodecError("corrupt stream: the section lengths do not add up to its length")
    # Every leftover's size is checked against its blob before any tensor is allocated.
    pos = br.pos // 8
    left_at = pos + bank_bytes + mosaic_len
    blobs = []
    for (name, shape), (mode, size) in zip(tensors[n_coded:], left_meta):
        want, blob = 4 * math.prod(shape), body[left_at:left_at + size] if mode else b""
        if mode:
            check_zstd(blob, want, name)
        elif size != want:
            raise CodecError(f"corrupt leftover {name!r}: {size} bytes for {shape}")
        blobs.append((name, shape, left_at, blob))
        left_at += size
    bank = _decode_bank(body, pos, k, s, q, half, scale, chunk)
    pos += bank_bytes
    mosaic = (CodedMosaic(body[pos:pos + mosaic_len], counts) if coded
              else FixedMosaic(body, 8 * pos, m, k))
    out, step = {}, max(1, chunk // s)
    for name, shape in tensors[:n_coded]:
        numel = math.prod(shape)
        dest = np.empty(numel, dtype=np.float32) if materialize else None
        n_blocks = -(-numel // s)
        for lo in range(0, n_blocks, step):
            idx = mosaic.take(min(step, n_blocks - lo))
            if dest is not None:
                a, b = lo * s, min(numel, (lo + idx.size) * s)
                dest[a:b] = np.take(bank, idx, axis=0).reshape(-1)[:b - a]
        if dest is not None:
            out[name] = torch.from_numpy(dest).reshape(shape)
    mosaic.finish()
    for name, shape, at, blob in blobs:  # a zstd leftover has its blob, a raw one b""
        numel = math.prod(shape)
        if not materialize:
            if blob:
                inflate(blob, 4 * numel, name, None)
            continue
        if blob:
            values = np.empty(numel, dtype="<f4")
            inflate(blob, 4 * numel, name, values)
        else:
            values = np.frombuffer(body, "<f4", count=numel, offset=at).copy()
        out[name] = torch.from_numpy(values.astype(np.float32, copy=False)).reshape(shape)
    return out, sections
