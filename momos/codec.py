"""A bit-exact file format for a MoMos-projected model, and its itemized length.

The byte and bit layout is specified in ``docs/format.md`` (version 1). In short: an
18-byte prefix (magic ``b"MOMOS"``, version, total length, CRC32 of the rest), a header of
Elias-delta integers, the motif bank at ``q`` bits per value, the mosaic (fixed-width
indices or a two-part ANS code, whichever is shorter) and the tensors MoMos did not pool
(raw float32 or zstd, whichever is shorter).

Examples
--------
>>> import torch
>>> from torch import nn
>>> from momos import MoMos
>>> _ = torch.manual_seed(0)
>>> model = nn.Linear(5, 3)
>>> mm = MoMos(s=2, k=4, seed=0); _ = mm.project(model)
>>> data = encode(model, mm)
>>> out = decode(data)
>>> all(torch.equal(out[n], p) for n, p in model.state_dict().items())
True
>>> description_length(model, mm).total_bits == 8 * len(data)
True
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import constriction
import numpy as np
import torch
import zstandard
from torch import nn

from kcomplex.mdl import (
    BitReader,
    BitWriter,
    coded_bits,
    dequantize_uniform,
    elias_delta_length,
    quantize_uniform,
    two_part_bits,
)
from kcomplex.validation import check_int

from .blocks import BlockLayout
from .bounds import bound_bits

__all__ = ["CodecError", "DescriptionLength", "MAGIC", "VERSION", "decode",
           "description_length", "encode", "stream_info"]

MAGIC = b"MOMOS"
VERSION = 1
_PREFIX = struct.Struct("<5sBQI")  # magic, version, total length, CRC32 of the body
_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_MAX_NDIM = 32
_ZSTD_LEVEL = 3


class CodecError(ValueError):
    """Data that is not a valid MoMos stream (truncated, corrupted or foreign), or a
    model that this format cannot represent exactly."""


# -- encoding -------------------------------------------------------------------------


def _dtype_code(t: torch.Tensor) -> int:
    return _DTYPES.index(t.dtype) if t.dtype in _DTYPES else 0


def _source(model, momos):
    """(state dict, motifs, mosaic, layout) from the two arguments of :func:`encode`."""
    if isinstance(model, nn.Module):
        state = model.state_dict()
    elif isinstance(model, Mapping):
        state = dict(model)
    else:
        raise TypeError(f"expected an nn.Module or a state dict, got {type(model).__name__}")
    if isinstance(momos, tuple):
        if len(momos) != 3:
            raise TypeError("expected a MoMos or a tuple (motifs, mosaic, layout)")
        motifs, mosaic, layout = momos
    else:
        motifs, mosaic, layout = momos.motifs, momos.mosaic, momos.layout
        if motifs is None:
            raise ValueError("the MoMos has no bank yet: call .project(model) first")
    if not isinstance(layout, BlockLayout):
        raise TypeError(f"layout must be a BlockLayout, got {type(layout).__name__}")
    motifs = torch.as_tensor(motifs).detach().cpu()
    mosaic = torch.as_tensor(mosaic).detach().cpu().reshape(-1).to(torch.int64)
    if motifs.ndim != 2 or motifs.shape[1] != layout.s or motifs.shape[0] < 1:
        raise ValueError(f"motifs of shape {tuple(motifs.shape)}; expected (k, {layout.s})")
    if mosaic.numel() != layout.m:
        raise ValueError(f"mosaic of {mosaic.numel()} indices; the layout has {layout.m} blocks")
    if mosaic.numel() and (int(mosaic.min()) < 0 or int(mosaic.max()) >= motifs.shape[0]):
        raise ValueError(f"mosaic indices must lie in [0, {motifs.shape[0]})")
    return state, motifs, mosaic, layout


def _bank_section(motifs: torch.Tensor, q: int) -> tuple[bytes, int, torch.Tensor, list]:
    """(bank bytes, header bits, decoded float32 bank, header fields as (value, width))."""
    extra: list[tuple[int, int]] = []
    m32 = motifs.to(torch.float32)
    if not torch.equal(m32.to(motifs.dtype), motifs):
        raise CodecError("motif values are not exact float32 values: cast the model to float32")
    if q == 32:
        return m32.numpy().astype("<f4").tobytes(), 0, m32, extra
    if q == 16:
        for kind, dt in enumerate((torch.float16, torch.bfloat16)):
            half = m32.to(dt)
            if torch.equal(half.to(torch.float32), m32):
                extra.append((kind, 1))
                return half.view(torch.int16).numpy().astype("<i2").tobytes(), 1, m32, extra
        raise CodecError("q=16 needs a bank exact in float16 or bfloat16; use q=32 or q < 16")
    ints, scale = quantize_uniform(m32.numpy(), q)
    extra.append((int(np.float32(scale).view(np.uint32)), 32))
    levels = (ints.reshape(-1).astype(np.int64) + (2 ** (q - 1) - 1)).astype(np.uint64)
    bank = torch.from_numpy(dequantize_uniform(ints, scale)).reshape(m32.shape)
    return _pack(levels, q), 32, bank, extra


def _pack(values: np.ndarray, width: int) -> bytes:
    """Unsigned `values` as `width`-bit fields, MSB first, zero-padded to a byte."""
    if width == 0 or values.size == 0:
        return b""
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    bits = ((values.astype(np.uint64)[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits.reshape(-1)).tobytes()


def _unpack(data: bytes, count: int, width: int, offset: int = 0) -> np.ndarray:
    """`count` unsigned `width`-bit fields (width <= 57), MSB first, from bit `offset` of
    `data`, as int64. Scratch: about 40 bytes per field, so callers pass chunks."""
    if width == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    first, last = offset // 8, -(-(offset + count * width) // 8)
    buf = np.zeros(last - first + 8, dtype=np.uint8)  # 8 zero bytes: every gather in range
    buf[:last - first] = np.frombuffer(data, np.uint8, count=last - first, offset=first)
    rel = offset - 8 * first + np.arange(count, dtype=np.int64) * width
    byte = rel >> 3
    word = np.zeros(count, dtype=np.uint64)
    for j in range(8):  # the 64 bits from each field's first byte, big-endian
        word = (word << np.uint64(8)) | buf[byte + j]
    shift = (64 - width - (rel & 7)).astype(np.uint64)
    return ((word >> shift) & np.uint64((1 << width) - 1)).astype(np.int64)


def _leftovers(state: Mapping, layout: BlockLayout) -> list[tuple[str, torch.Tensor, int, bytes]]:
    """(name, tensor, mode 0 raw / 1 zstd, blob) of each floating tensor not pooled."""
    pooled, out = {sp.name for sp in layout.spans}, []
    for name, t in state.items():
        if name in pooled or not isinstance(t, torch.Tensor) or not t.is_floating_point():
            continue
        t32 = t.detach().cpu().to(torch.float32)
        if not torch.equal(t32.to(t.dtype), t.detach().cpu()):
            raise CodecError(f"tensor {name!r} is not exact in float32: cast it first")
        raw = t32.contiguous().numpy().astype("<f4").tobytes()
        packed = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(raw)
        out.append((name, t, 1, packed) if len(packed) < len(raw) else (name, t, 0, raw))
    return out


def _write_tensor(bw: BitWriter, name: str, shape, dtype_code: int) -> None:
    raw = name.encode("utf-8")
    bw.write_elias([len(raw) + 1], "delta")
    for b in raw:
        bw.write(b, 8)
    bw.write_elias([len(shape) + 1, *(d + 1 for d in shape), dtype_code + 1], "delta")


def _streams(model, momos, q: int) -> dict:
    """Every section of both candidate streams and their sizes."""
    if isinstance(q, bool) or not isinstance(q, int) or not (q == 32 or 2 <= q <= 16):
        raise ValueError(f"q must be 32, 16 or an integer in [2, 15], got {q!r}")
    state, motifs, mosaic, layout = _source(model, momos)
    k, s, m = motifs.shape[0], layout.s, layout.m
    bank, bank_hdr_bits, _, bank_extra = _bank_section(motifs, q)
    left = _leftovers(state, layout)
    width = (k - 1).bit_length()
    fixed = _pack(mosaic.numpy(), width)
    _, payload = coded_bits(mosaic.numpy(), k) if m else (0, b"")
    counts = np.bincount(mosaic.numpy(), minlength=k)
    candidates = {}
    for coded in (False, True):
        bw = BitWriter()
        bw.write_elias([len(layout.spans) + 1, len(left) + 1], "delta")
        for sp in layout.spans:
            _write_tensor(bw, sp.name, sp.shape, _dtype_code(state.get(sp.name, motifs)))
        for name, t, _, _ in left:
            _write_tensor(bw, name, tuple(t.shape), _dtype_code(t))
        bw.write_elias([s + 1, k + 1, q + 1], "delta")
        for value, width in bank_extra:  # q=16: the half kind; q<16: the scale
            bw.write(value, width)
        bw.write(int(coded), 1)
        if coded:
            bw.write_elias(np.append(counts + 1, len(payload) // 4 + 1), "delta")
        for _, _, mode, blob in left:
            bw.write(mode, 1)
            bw.write_elias([len(blob) + 1], "delta")
        body = b"".join([bw.getvalue(), bank, payload if coded else fixed,
                         *(blob for *_, blob in left)])
        candidates[coded] = body
    coded = len(candidates[True]) < len(candidates[False])
    count_bits = int(elias_delta_length(np.append(counts + 1, len(payload) // 4 + 1)).sum())
    return dict(body=candidates[coded], coded=coded, k=k, s=s, m=m, q=q, layout=layout,
                mosaic=mosaic, left=left, bank_bits=8 * len(bank) + bank_hdr_bits,
                fixed_bits=8 * len(fixed), coded_bits=8 * len(payload) + count_bits)


def encode(model_or_state_dict, momos_or_bank_and_mosaic, q: int = 32) -> bytes:
    """Encode a projected model as bytes (format: ``docs/format.md``).

    Parameters
    ----------
    model_or_state_dict : nn.Module or Mapping[str, torch.Tensor]
        The model (its ``state_dict()``) or a state dict. Its floating tensors that are not
        in the layout are stored as leftovers (raw float32 or zstd); the pooled ones are
        taken from the bank and mosaic only. Non-floating tensors are not stored.
    momos_or_bank_and_mosaic : MoMos or tuple
        A ``MoMos`` after ``project()``, or ``(motifs, mosaic, layout)``.
    q : int
        Bits per motif value: 32 (float32), 16 (float16 or bfloat16, only if exact, else
        CodecError) or 2..15 (uniform symmetric levels ``kcomplex.mdl.quantize_uniform``
        with a float32 scale: then :func:`decode` returns the *quantized* projection,
        ``dequantize_uniform(*quantize_uniform(motifs, q))[mosaic]``).

    Returns
    -------
    bytes
        The stream; the mosaic is fixed-width or entropy-coded, whichever is shorter.

    Raises
    ------
    CodecError
        If a value cannot be stored exactly (a bank not exact at q=16, non-float32 values).
    TypeError, ValueError
        For malformed arguments.
    """
    body = _streams(model_or_state_dict, momos_or_bank_and_mosaic, q)["body"]
    return _PREFIX.pack(MAGIC, VERSION, _PREFIX.size + len(body), zlib.crc32(body)) + body


# -- decoding -------------------------------------------------------------------------

#: Default bound on the number of weights a stream may declare: 2^28 weights decode to
#: 1 GiB of float32 tensors. A k = 1 or a skewed coded mosaic costs almost no bits, so
#: the data length cannot bound the weights; this does (pass a larger ``max_numel``).
_MAX_NUMEL = 1 << 28
#: Weights per step of the chunked decoding, which bounds its scratch memory.
_CHUNK = 1 << 18
#: Compressed bytes fed to zstd per step: a 4-byte RLE block inflates to 128 KiB, so one
#: step yields at most about 8 MiB, checked against the expected size before the next.
_ZSTD_PIECE = 256
_ZSTD_MAX_RATIO = 1 << 15


def _read_int(br: BitReader, limit: int, what: str, hint: str = "") -> int:
    v = br.read_elias("delta") - 1
    if v > limit:
        raise CodecError(f"corrupt header: {what} = {v} exceeds its bound {limit}{hint}")
    return v


def decode(data: bytes, *, max_numel: int = _MAX_NUMEL) -> dict[str, torch.Tensor]:
    """Decode a stream of :func:`encode` into ``{name: float32 tensor}``.

    Pooled tensors come first (pool order), then the leftovers. Every count read from the
    header is bounded by the data left before anything is allocated; the total number of
    weights, which a k = 1 or skewed coded mosaic can declare in a few bytes, by
    `max_numel`.

    Parameters
    ----------
    data : bytes
        The whole stream.
    max_numel : int
        The most weights (all tensors together) to accept; default 2^28. Peak memory is
        the decoded tensors (4 bytes per weight, so at most ``4 * max_numel`` bytes), the
        bank, about twice the stream, and a bounded scratch (about 16 MiB); the time is
        linear in the weights.

    Returns
    -------
    dict[str, torch.Tensor]

    Raises
    ------
    CodecError
        For anything but a complete, valid stream: wrong magic or version, a length or CRC
        mismatch (checked before parsing), any inconsistency in the body, or more than
        `max_numel` weights.
    TypeError, ValueError
        If `max_numel` is not an integer >= 0.
    """
    return _decode(data, max_numel, materialize=True)[0]


def stream_info(data: bytes, *, max_numel: int = _MAX_NUMEL) -> dict:
    """The itemized size of a stream, read from the stream alone (it is fully decoded
    and checked, without keeping the tensors): ``s``, ``k``, ``q``, ``mosaic_coded``,
    tensor counts, and ``header_bits``, ``bank_bits``, ``mosaic_bits``,
    ``leftover_bits``, ``total_bits``.

    Parameters
    ----------
    data : bytes
        The whole stream.
    max_numel : int
        As :func:`decode`; the memory does not grow with it here (only the time).

    Returns
    -------
    dict

    Raises
    ------
    CodecError
        As :func:`decode`.
    TypeError, ValueError
        If `max_numel` is not an integer >= 0.
    """
    return _decode(data, max_numel, materialize=False)[1]


def _decode(data: bytes, max_numel: int,
            materialize: bool) -> tuple[dict[str, torch.Tensor], dict]:
    max_numel = check_int(max_numel, "max_numel", minimum=0)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREFIX.size or data[:5] != MAGIC:
        raise CodecError("not a MoMos stream: wrong magic or shorter than the 18-byte prefix")
    _, version, length, crc = _PREFIX.unpack_from(data)
    if version != VERSION:
        raise CodecError(f"unsupported format version {version}; this reader knows {VERSION}")
    if length != len(data):
        raise CodecError(f"length mismatch: the prefix says {length} bytes, got {len(data)} "
                         "(truncated or trailing data)")
    body = data[_PREFIX.size:]
    if zlib.crc32(body) != crc:
        raise CodecError("CRC32 mismatch: the stream is corrupted")
    try:
        return _decode_body(body, max_numel, materialize)
    except CodecError:
        raise
    except Exception as exc:  # numpy, torch, constriction, zstd: all a CodecError
        raise CodecError(f"corrupt MoMos stream: {type(exc).__name__}: {exc}") from exc


def _read_tensor(br: BitReader, budget: list[int]) -> tuple[str, tuple[int, ...]]:
    left = lambda: (br.n_bits - br.pos) // 8  # noqa: E731
    raw = bytes(br.read(8) for _ in range(_read_int(br, left(), "name length")))
    ndim = _read_int(br, _MAX_NDIM, "ndim")
    hint = " (the weights left under max_numel: pass a larger max_numel for a bigger model)"
    shape = tuple(_read_int(br, budget[0], "dim", hint) for _ in range(ndim))
    numel = math.prod(shape)
    if numel > budget[0]:
        raise CodecError(f"corrupt header: more than max_numel weights ({shape}); pass a "
                         "larger max_numel for a bigger model")
    budget[0] -= numel
    _read_int(br, len(_DTYPES) - 1, "dtype")
    return raw.decode("utf-8"), shape


class _FixedMosaic:
    """The fixed-width mosaic, read `n` indices at a time."""

    def __init__(self, body: bytes, offset: int, m: int, k: int) -> None:
        self.body, self.offset, self.m, self.k = body, offset, m, k
        self.width, self.done = (k - 1).bit_length(), 0

    def take(self, n: int) -> np.ndarray:
        idx = _unpack(self.body, n, self.width, self.offset + self.done * self.width)
        self.done += n
        if idx.size and int(idx.max()) >= self.k:
            raise CodecError("corrupt mosaic: an index out of range")
        return idx

    def finish(self) -> None:
        end = self.offset + self.m * self.width
        if end % 8 and self.body[end // 8] & (0xFF >> (end % 8)):
            raise CodecError("corrupt mosaic: nonzero padding")


class _CodedMosaic:
    """The ANS-coded mosaic, decoded `n` indices at a time; it fails as soon as the payload
    cannot give the header's counts, not after decoding all `m` symbols."""

    def __init__(self, payload: bytes, counts: np.ndarray) -> None:
        self.present = np.flatnonzero(counts)
        self.want = counts[self.present]
        self.got = np.zeros_like(self.want)
        self.left = int(counts.sum())
        self.coder = self.model = None
        self.constant: int | None = 0  # the rank every further symbol has, once known
        if self.present.size < 2:
            if payload:
                raise CodecError("corrupt mosaic: a payload for fewer than two motifs")
            return
        # The model of kcomplex.mdl.coded_bits (docs/format.md): the counts of the motifs
        # that occur, quantized by constriction.
        self.model = constriction.stream.model.Categorical(self.want.astype(np.float64),
                                                           perfect=False)
        self.coder = constriction.stream.stack.AnsCoder(
            np.frombuffer(payload, "<u4").astype(np.uint32))
        self.constant = None

    def take(self, n: int) -> np.ndarray:
        if self.constant is None:
            ranks = self.coder.decode(self.model, n).astype(np.int64)
        else:
            ranks = np.full(n, self.constant, dtype=np.int64)
        self.got += np.bincount(ranks, minlength=self.present.size)
        self.left -= n
        if (self.got > self.want).any():
            raise CodecError("corrupt mosaic: the payload does not decode to the motif counts")
        if self.constant is None and self.left:
            self._probe()
        return self.present[ranks]

    def _probe(self) -> None:
        """Detect a decoder that can no longer change: no words left and a state that
        decoding leaves as is (a deterministic decoder then repeats its symbol forever), so
        a corrupt payload fails now instead of after the remaining symbols."""
        pos = self.coder.pos()
        if pos[0]:
            return
        probe = self.coder.clone()
        rank = int(probe.decode(self.model, 1)[0])
        if probe.pos() != pos:
            return
        self.constant = rank
        final = self.got.copy()
        final[rank] += self.left
        if not self.coder.is_empty() or not np.array_equal(final, self.want):
            raise CodecError("corrupt mosaic: the payload does not decode to the motif counts")

    def finish(self) -> None:
        if not np.array_equal(self.got, self.want) or (
                self.coder is not None and not self.coder.is_empty()):
            raise CodecError("corrupt mosaic: the payload does not decode to the motif counts")


def _check_zstd(blob: bytes, want: int, name: str) -> None:
    """Before anything is inflated: `blob` must be able to hold `want` bytes, and a frame
    that declares its size must declare `want`."""
    if want > _ZSTD_MAX_RATIO * len(blob):
        raise CodecError(f"corrupt leftover {name!r}: {len(blob)} zstd bytes cannot hold "
                         f"the {want} bytes of its shape")
    try:
        declared = zstandard.frame_content_size(blob)
    except zstandard.ZstdError as exc:
        raise CodecError(f"corrupt leftover {name!r}: not a zstd frame ({exc})") from exc
    if declared not in (-1, want):  # -1: a frame without its content size
        raise CodecError(f"corrupt leftover {name!r}: its zstd frame declares {declared} "
                         f"bytes, its shape needs {want}")


def _inflate(blob: bytes, want: int, name: str, out: np.ndarray | None) -> None:
    """Decompress the one zstd frame `blob` (checked by :func:`_check_zstd`) into the
    bytes of `out` (or only check it), in small steps, so that no more than `want` bytes
    (plus one step) are ever produced."""
    dobj, got = zstandard.ZstdDecompressor().decompressobj(), 0
    sink = None if out is None else out.view(np.uint8)
    for i in range(0, len(blob), _ZSTD_PIECE):
        chunk = dobj.decompress(blob[i:i + _ZSTD_PIECE])
        if got + len(chunk) > want:
            raise CodecError(f"corrupt leftover {name!r}: its zstd frame holds more than "
                             f"the {want} bytes of its shape")
        if sink is not None:
            sink[got:got + len(chunk)] = np.frombuffer(chunk, np.uint8)
        got += len(chunk)
        if dobj.eof:
            if dobj.unused_data or i + _ZSTD_PIECE < len(blob):
                raise CodecError(f"corrupt leftover {name!r}: data after its zstd frame")
            break
    if not dobj.eof or got != want:
        raise CodecError(f"corrupt leftover {name!r}: {got} bytes for the {want} of its "
                         "shape (or a truncated zstd frame)")


def _decode_bank(body: bytes, pos: int, k: int, s: int, q: int, half: int,
                 scale) -> np.ndarray:
    """The ``(k, s)`` float32 bank at byte `pos` (its bytes are known to be there)."""
    n = k * s
    if q == 32:
        bank = np.frombuffer(body, "<f4", count=n, offset=pos).astype(np.float32)
    elif q == 16:  # numpy has no bfloat16
        bits = torch.from_numpy(np.frombuffer(body, "<i2", count=n, offset=pos).astype(np.int16))
        bank = bits.view(torch.bfloat16 if half else torch.float16).to(torch.float32).numpy()
    else:
        top, values = 2 ** (q - 1) - 1, np.empty(n, dtype=np.float32)
        for i in range(0, n, _CHUNK):
            ints = _unpack(body, min(_CHUNK, n - i), q, 8 * pos + i * q) - top
            if int(np.abs(ints).max()) > top:
                raise CodecError("corrupt bank: a level out of range")
            values[i:i + ints.size] = dequantize_uniform(ints, float(scale))
        bank = values
    return bank.reshape(k, s)


def _decode_body(body: bytes, max_numel: int,
                 materialize: bool) -> tuple[dict[str, torch.Tensor], dict]:
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
    half = br.read(1) if q == 16 else 0
    scale = np.uint32(br.read(32)).view(np.float32) if q < 16 else None
    m = sum(-(-math.prod(shape) // s) for _, shape in tensors[:n_coded])
    coded = br.read(1)
    if coded:
        counts = np.array([_read_int(br, m, "count") for _ in range(k)], dtype=np.int64)
        payload_len = 4 * _read_int(br, len(body) // 4, "payload words")
        if int(counts.sum()) != m:
            raise CodecError("corrupt header: motif counts do not add up to the block count")
    mosaic_len = payload_len if coded else -(-m * (k - 1).bit_length() // 8)
    left_meta = [(br.read(1), _read_int(br, len(body), "blob length")) for _ in range(n_left)]
    if br.read(-br.pos % 8):
        raise CodecError("corrupt header: nonzero padding")
    pos = br.pos // 8
    if pos + bank_bytes + mosaic_len + sum(n for _, n in left_meta) != len(body):
        raise CodecError("corrupt stream: the section lengths do not add up to its length")
    # Every leftover's size is checked against its blob before any tensor is allocated.
    left_at = pos + bank_bytes + mosaic_len
    blobs = []
    for (name, shape), (mode, size) in zip(tensors[n_coded:], left_meta):
        want, blob = 4 * math.prod(shape), body[left_at:left_at + size] if mode else b""
        if mode:
            _check_zstd(blob, want, name)
        elif size != want:
            raise CodecError(f"corrupt leftover {name!r}: {size} bytes for {shape}")
        blobs.append((name, shape, left_at, blob))
        left_at += size
    bank = _decode_bank(body, pos, k, s, q, half, scale)
    pos += bank_bytes
    mosaic = (_CodedMosaic(body[pos:pos + mosaic_len], counts) if coded
              else _FixedMosaic(body, 8 * pos, m, k))
    out, step = {}, max(1, _CHUNK // s)
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
                _inflate(blob, 4 * numel, name, None)
            continue
        if blob:
            values = np.empty(numel, dtype="<f4")
            _inflate(blob, 4 * numel, name, values)
        else:
            values = np.frombuffer(body, "<f4", count=numel, offset=at).copy()
        out[name] = torch.from_numpy(values.astype(np.float32, copy=False)).reshape(shape)
    # Attributed as DescriptionLength does: the q=16 kind bit / q<16 scale to the bank, the
    # coded mosaic's usage counts and payload size to the mosaic, the rest to the header.
    bank_bits = 8 * bank_bytes + {32: 0, 16: 1}.get(q, 32)
    mosaic_bits = 8 * mosaic_len + (
        int(elias_delta_length(np.append(counts + 1, payload_len // 4 + 1)).sum()) if coded else 0)
    leftover_bits = 8 * sum(n for _, n in left_meta)
    total_bits = 8 * (_PREFIX.size + len(body))
    info = {
        "s": s, "k": k, "q": q, "m": m, "mosaic_coded": bool(coded),
        "n_coded_tensors": n_coded, "n_leftover_tensors": n_left,
        "n_weights": sum(math.prod(shape) for _, shape in tensors),
        "header_bits": total_bits - bank_bits - mosaic_bits - leftover_bits,
        "bank_bits": bank_bits, "mosaic_bits": mosaic_bits, "leftover_bits": leftover_bits,
        "total_bits": total_bits,
    }
    return out, info


# -- description length ---------------------------------------------------------------


@dataclass(frozen=True)
class DescriptionLength:
    """Itemized length of :func:`encode`'s stream, in bits.

    ``header_bits + bank_bits + mosaic_bits + leftover_bits == total_bits`` where
    ``mosaic_bits`` is the chosen one of ``mosaic_bits_fixed`` (``m*ceil(log2 k)``,
    byte-padded) and ``mosaic_bits_coded`` (the Elias-delta counts and payload size + the
    ANS payload). ``header_bits`` holds the 18-byte prefix, names, shapes and padding;
    ``bank_bits`` includes the q=16 kind bit or the q<16 scale. ``mosaic_bits_ideal`` is
    ``kcomplex.mdl.two_part_bits(mosaic, k)`` (m times the empirical entropy + the
    counts' cost), not a real code.
    """

    header_bits: int
    bank_bits: int
    mosaic_bits_fixed: int
    mosaic_bits_coded: int
    mosaic_bits_ideal: float
    mosaic_coded: bool
    leftover_bits: int
    total_bits: int
    bound_bits: int
    trivial_bits: int
    rac_bound: float
    rac_exact: float
    tensors: tuple[tuple[str, int, int, int], ...]  # (name, numel, n_blocks, leftover bits)

    @property
    def mosaic_bits(self) -> int:
        """Bits of the mosaic as stored."""
        return self.mosaic_bits_coded if self.mosaic_coded else self.mosaic_bits_fixed

    def to_json(self) -> str:
        """All fields as a JSON object."""
        return json.dumps(asdict(self) | {"mosaic_bits": self.mosaic_bits})

    def table(self):
        """A pandas DataFrame, one row per tensor and a last ``(header)`` row.

        A pooled tensor is attributed the bank and mosaic bits in proportion to its
        blocks (``n_blocks / m``, so the bank is shared by block share); a leftover its
        stored blob; the header row the rest. The ``bits`` column sums to ``total_bits``
        up to float rounding.
        """
        import pandas as pd

        m = sum(nb for _, _, nb, _ in self.tensors) or 1
        shared = self.bank_bits + self.mosaic_bits
        rows = [dict(name=n, numel=ne, n_blocks=nb, bits=lb + shared * nb / m,
                     bits_per_weight=(lb + shared * nb / m) / ne if ne else math.nan)
                for n, ne, nb, lb in self.tensors]
        rows.append(dict(name="(header)", numel=0, n_blocks=0, bits=float(self.header_bits),
                         bits_per_weight=math.nan))
        return pd.DataFrame(rows)


def description_length(model, momos, q: int = 32) -> DescriptionLength:
    """The exact, itemized length of ``encode(model, momos, q)``; arguments as there.

    Examples
    --------
    >>> from momos.blocks import layout_of
    >>> lay = layout_of([("w", torch.zeros(6))], 2)
    >>> bank, mosaic = torch.tensor([[0., 0.], [1., 2.]]), torch.tensor([1, 0, 1])
    >>> dl = description_length({}, (bank, mosaic, lay))
    >>> dl.bank_bits, dl.mosaic_bits_fixed, dl.total_bits
    (128, 8, 328)
    """
    st = _streams(model, momos, q)
    layout, k, s = st["layout"], st["k"], st["s"]
    total = 8 * (_PREFIX.size + len(st["body"]))
    left_bits = {name: 8 * len(blob) for name, _, _, blob in st["left"]}
    mosaic = st["coded_bits"] if st["coded"] else st["fixed_bits"]
    leftover = sum(left_bits.values())
    n = layout.n
    tensors = tuple((sp.name, sp.numel, sp.n_blocks, 0) for sp in layout.spans) + tuple(
        (name, t.numel(), 0, left_bits[name]) for name, t, _, _ in st["left"])
    ideal = two_part_bits(st["mosaic"].numpy(), k) if st["m"] else 0.0
    bound = bound_bits(n, s, k=k, q=q)
    return DescriptionLength(
        header_bits=total - st["bank_bits"] - mosaic - leftover, bank_bits=st["bank_bits"],
        mosaic_bits_fixed=st["fixed_bits"], mosaic_bits_coded=st["coded_bits"],
        mosaic_bits_ideal=float(ideal), mosaic_coded=st["coded"], leftover_bits=leftover,
        total_bits=total, bound_bits=bound, trivial_bits=32 * n,
        rac_bound=32 * n / bound, rac_exact=32 * n / total, tensors=tensors)
