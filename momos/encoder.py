"""Writing a .momos stream (``docs/format.md``) together with its :class:`Sections`.

Both mosaic encodings (fixed-width indices and the ANS code) are itemized; the shorter
stream is written and the other one's itemization kept, so that ``DescriptionLength`` can
report both without encoding again.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import zstandard
from torch import nn

from kcomplex.bitstream import BitWriter, pack_fields
from kcomplex.mdl import coded_bits, quantize_uniform

from .blocks import BlockLayout
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

__all__ = ["Encoded", "encode_stream"]

_ZSTD_LEVEL = 3


@dataclass(frozen=True)
class Encoded:
    """A stream, its itemization, the itemization of the stream with the other mosaic
    encoding (not written), and the mosaic (int64, one index per block)."""

    data: bytes
    sections: Sections
    rejected: Sections
    mosaic: np.ndarray


def _dtype_code(t: torch.Tensor) -> int:
    return DTYPES.index(t.dtype) if t.dtype in DTYPES else 0


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


def _bank_section(motifs: torch.Tensor, q: int) -> tuple[bytes, list[tuple[int, int]]]:
    """(bank bytes, its header fields as (value, width))."""
    m32 = motifs.to(torch.float32)
    if not torch.equal(m32.to(motifs.dtype), motifs):
        raise CodecError("motif values are not exact float32 values: cast the model to float32")
    if q == 32:
        return m32.numpy().astype("<f4").tobytes(), []
    if q == 16:
        for kind, dt in enumerate((torch.float16, torch.bfloat16)):
            half = m32.to(dt)
            if torch.equal(half.to(torch.float32), m32):
                return half.view(torch.int16).numpy().astype("<i2").tobytes(), [(kind, 1)]
        raise CodecError("q=16 needs a bank exact in float16 or bfloat16; use q=32 or q < 16")
    ints, scale = quantize_uniform(m32.numpy(), q)
    levels = ints.reshape(-1).astype(np.int64) + (2 ** (q - 1) - 1)
    return pack_fields(levels, q), [(int(np.float32(scale).view(np.uint32)), 32)]


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


def encode_stream(model, momos, q: int) -> Encoded:
    """The stream of ``momos.codec.encode`` (arguments as there) and its itemization.

    Parameters
    ----------
    model : nn.Module or Mapping[str, torch.Tensor]
    momos : MoMos or tuple
    q : int

    Returns
    -------
    Encoded

    Raises
    ------
    CodecError
        If a value cannot be stored exactly.
    TypeError, ValueError
        For malformed arguments.
    """
    if isinstance(q, bool) or not isinstance(q, int) or not (q == 32 or 2 <= q <= 16):
        raise ValueError(f"q must be 32, 16 or an integer in [2, 15], got {q!r}")
    state, motifs, mosaic, layout = _source(model, momos)
    k, s, m = motifs.shape[0], layout.s, layout.m
    bank, bank_fields = _bank_section(motifs, q)
    left = _leftovers(state, layout)
    indices = mosaic.numpy()
    fixed = pack_fields(indices, (k - 1).bit_length())
    _, payload = coded_bits(indices, k) if m else (0, b"")
    counts = np.bincount(indices, minlength=k)
    pooled = tuple(PooledTensor(sp.name, sp.numel, sp.n_blocks) for sp in layout.spans)
    leftovers = tuple(LeftoverSection(name, t.numel(), bool(mode), 8 * len(blob))
                      for name, t, mode, blob in left)
    candidates = []
    for coded in (False, True):
        bw = BitWriter()
        bw.write_elias([len(layout.spans) + 1, len(left) + 1], "delta")
        for sp in layout.spans:
            _write_tensor(bw, sp.name, sp.shape, _dtype_code(state.get(sp.name, motifs)))
        for name, t, _, _ in left:
            _write_tensor(bw, name, tuple(t.shape), _dtype_code(t))
        bw.write_elias([s + 1, k + 1, q + 1], "delta")
        before_bank = bw.n_bits
        for value, width in bank_fields:  # q=16: the half kind; q<16: the scale
            bw.write(value, width)
        bank_field_bits = bw.n_bits - before_bank
        bw.write(int(coded), 1)
        before_counts = bw.n_bits
        if coded:
            bw.write_elias(np.append(counts + 1, len(payload) // 4 + 1), "delta")
        mosaic_field_bits = bw.n_bits - before_counts
        for _, _, mode, blob in left:
            bw.write(mode, 1)
            bw.write_elias([len(blob) + 1], "delta")
        sections = Sections(
            s=s, k=k, q=q, pooled=pooled, leftovers=leftovers,
            header_field_bits=bw.n_bits - bank_field_bits - mosaic_field_bits,
            padding_bits=-bw.n_bits % 8, bank_field_bits=bank_field_bits,
            bank_value_bits=8 * len(bank), mosaic_coded=coded,
            mosaic_field_bits=mosaic_field_bits,
            mosaic_value_bits=8 * len(payload if coded else fixed))
        candidates.append((sections, bw))
    (fixed_sec, fixed_bw), (coded_sec, coded_bw) = candidates
    coded = coded_sec.total_bits < fixed_sec.total_bits  # on a tie, fixed
    chosen, rejected, bw = ((coded_sec, fixed_sec, coded_bw) if coded
                            else (fixed_sec, coded_sec, fixed_bw))
    body = b"".join([bw.getvalue(), bank, payload if coded else fixed,
                     *(blob for *_, blob in left)])
    data = PREFIX.pack(MAGIC, VERSION, PREFIX.size + len(body), zlib.crc32(body)) + body
    return Encoded(data=data, sections=chosen, rejected=rejected, mosaic=indices)
