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

import numpy as np
import torch
import zstandard
from torch import nn

from kcomplex.files import write_atomic
from kcomplex.mdl import (BitReader, BitWriter, coded_bits, decode_coded, dequantize_uniform,
                          elias_delta_length, quantize_uniform, two_part_bits)

from .blocks import BlockLayout
from .bounds import bound_bits

__all__ = ["CodecError", "DescriptionLength", "MAGIC", "VERSION", "decode",
           "description_length", "encode", "stream_info", "write_atomic"]

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


def _unpack(data: bytes, count: int, width: int) -> np.ndarray:
    if width == 0:
        return np.zeros(count, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(data, np.uint8), count=count * width)
    weights = (np.int64(1) << np.arange(width - 1, -1, -1, dtype=np.int64))
    return bits.reshape(count, width).astype(np.int64) @ weights


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


def _read_int(br: BitReader, limit: int, what: str) -> int:
    v = br.read_elias("delta") - 1
    if v > limit:
        raise CodecError(f"corrupt header: {what} = {v} exceeds its bound {limit}")
    return v


def decode(data: bytes, *, max_numel: int = 1 << 30) -> dict[str, torch.Tensor]:
    """Decode a stream of :func:`encode` into ``{name: float32 tensor}``.

    Pooled tensors come first (pool order), then the leftovers. Every count read from the
    header is bounded by the data left (and the total number of weights by `max_numel`)
    before anything is allocated.

    Raises
    ------
    CodecError
        For anything but a complete, valid stream: wrong magic or version, a length or CRC
        mismatch (checked before parsing), or any inconsistency in the body.
    """
    return _decode(data, max_numel)[0]


def stream_info(data: bytes, *, max_numel: int = 1 << 30) -> dict:
    """The itemized size of a stream, read from the stream alone (it is fully decoded
    and checked): ``s``, ``k``, ``q``, ``mosaic_coded``, tensor counts, and
    ``header_bits``, ``bank_bits``, ``mosaic_bits``, ``leftover_bits``, ``total_bits``.

    Raises
    ------
    CodecError
        As :func:`decode`.
    """
    return _decode(data, max_numel)[1]


def _decode(data: bytes, max_numel: int) -> tuple[dict[str, torch.Tensor], dict]:
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
        return _decode_body(body, max_numel)
    except CodecError:
        raise
    except Exception as exc:  # every parsing failure is a CodecError
        raise CodecError(f"corrupt MoMos stream: {exc}") from exc


def _read_tensor(br: BitReader, budget: list[int]) -> tuple[str, tuple[int, ...]]:
    left = lambda: (br.n_bits - br.pos) // 8  # noqa: E731
    raw = bytes(br.read(8) for _ in range(_read_int(br, left(), "name length")))
    ndim = _read_int(br, _MAX_NDIM, "ndim")
    shape = tuple(_read_int(br, budget[0], "dim") for _ in range(ndim))
    numel = math.prod(shape)
    if numel > budget[0]:
        raise CodecError(f"corrupt header: more than max_numel weights ({shape})")
    budget[0] -= numel
    _read_int(br, len(_DTYPES) - 1, "dtype")
    return raw.decode("utf-8"), shape


def _decode_body(body: bytes, max_numel: int) -> tuple[dict[str, torch.Tensor], dict]:
    br, budget = BitReader(body), [max_numel]
    n_coded = _read_int(br, br.n_bits, "tensor count")
    n_left = _read_int(br, br.n_bits, "leftover count")
    tensors = [_read_tensor(br, budget) for _ in range(n_coded + n_left)]
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
    width = (k - 1).bit_length()
    mosaic_len = payload_len if coded else -(-m * width // 8)
    left_meta = [(br.read(1), _read_int(br, len(body), "blob length")) for _ in range(n_left)]
    if br.read(-br.pos % 8):
        raise CodecError("corrupt header: nonzero padding")
    pos = br.pos // 8
    if pos + bank_bytes + mosaic_len + sum(n for _, n in left_meta) != len(body):
        raise CodecError("corrupt stream: the section lengths do not add up to its length")
    bank_raw, pos = body[pos:pos + bank_bytes], pos + bank_bytes
    if q == 32:
        bank = torch.from_numpy(np.frombuffer(bank_raw, "<f4").astype(np.float32))
    elif q == 16:
        bits = torch.from_numpy(np.frombuffer(bank_raw, "<i2").astype(np.int16))
        bank = bits.view(torch.bfloat16 if half else torch.float16).to(torch.float32)
    else:
        ints = _unpack(bank_raw, k * s, q) - (2 ** (q - 1) - 1)
        if ints.size and int(np.abs(ints).max()) > 2 ** (q - 1) - 1:
            raise CodecError("corrupt bank: a level out of range")
        bank = torch.from_numpy(dequantize_uniform(ints, float(scale)))
    bank = bank.reshape(k, s)
    mosaic_raw, pos = body[pos:pos + mosaic_len], pos + mosaic_len
    mosaic = decode_coded(mosaic_raw, counts) if coded else _unpack(mosaic_raw, m, width)
    if mosaic.size and int(mosaic.max()) >= k:
        raise CodecError("corrupt mosaic: an index out of range")
    flat = bank[torch.from_numpy(mosaic)].reshape(-1)
    out, start = {}, 0
    for name, shape in tensors[:n_coded]:
        numel = math.prod(shape)
        out[name] = flat[start:start + numel].reshape(shape).clone()
        start += -(-numel // s) * s
    for (name, shape), (mode, size) in zip(tensors[n_coded:], left_meta):
        blob, pos = body[pos:pos + size], pos + size
        numel = math.prod(shape)
        if mode:
            blob = zstandard.ZstdDecompressor().decompress(blob, max_output_size=4 * numel)
        if len(blob) != 4 * numel:
            raise CodecError(f"corrupt leftover {name!r}: {len(blob)} bytes for {shape}")
        out[name] = torch.from_numpy(np.frombuffer(blob, "<f4").astype(np.float32)).reshape(shape)
    if len(out) != n_coded + n_left:
        raise CodecError("corrupt header: duplicate tensor names")
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
