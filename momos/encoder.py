"""Writing a .momos stream (``docs/format.md``, version 2) together with its :class:`Sections`.

Both mosaic encodings (fixed-width indices and the ANS code) are itemized; the shorter
stream is written and the other one's itemization kept, so that ``DescriptionLength`` can
report both without encoding again. Every tensor that is not pooled is one blob of
:mod:`momos.tensorcode` (its shortest exact code).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kcomplex.bitstream import BitWriter, pack_fields
from kcomplex.mdl import ans_encode, dequantize_uniform
from kcomplex.validation import check_int

from .blocks import BlockLayout
from .qat import quantize_weight
from .sections import (
    DTYPES,
    MAGIC,
    MAX_POST_Q,
    PREFIX,
    VERSION,
    CodecError,
    PooledTensor,
    Sections,
    StoredTensor,
)
from .tensorcode import code_name, encode_tensor, exact_uniform

__all__ = ["Encoded", "encode_stream"]


@dataclass(frozen=True)
class Encoded:
    """A stream, its itemization, the itemization of the stream with the other mosaic
    encoding (not written; the same as ``sections`` without pooled tensors), and the
    mosaic (int64, one index per block)."""

    data: bytes
    sections: Sections
    rejected: Sections
    mosaic: np.ndarray


def _dtype_code(t: torch.Tensor) -> int:
    return DTYPES.index(t.dtype) if t.dtype in DTYPES else 0


def _state_dict(model) -> dict:
    if isinstance(model, nn.Module):
        return model.state_dict()
    if isinstance(model, Mapping):
        return dict(model)
    raise TypeError(f"expected an nn.Module or a state dict, got {type(model).__name__}")


def _projection(momos) -> tuple[torch.Tensor, torch.Tensor, BlockLayout]:
    """(motifs, mosaic, layout) of a MoMos or a tuple, checked."""
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
    return motifs, mosaic, layout


def _post_widths(post_quantize: Mapping[str, int] | None, pooled: list[str]) -> dict[str, int]:
    """``{pooled name: width}`` with 0 for none; 32 and more mean none, as for QAT."""
    if post_quantize is None:
        return {}
    if not isinstance(post_quantize, Mapping):
        raise TypeError("post_quantize must be a mapping {pooled tensor name: bits}, got "
                        f"{type(post_quantize).__name__}")
    names, out = set(pooled), {}
    for name, bits in post_quantize.items():
        if name not in names:
            raise ValueError(f"post_quantize names {name!r}, which is not a pooled tensor: "
                             "only the tensors of the MoMos layout can be post-quantized")
        bits = check_int(bits, f"post_quantize[{name!r}]", minimum=0)
        if bits == 1:
            raise ValueError(f"post_quantize[{name!r}] = 1: use 2..{MAX_POST_Q} bits, or 0 "
                             "(or >= 32) for none")
        out[name] = 0 if bits > MAX_POST_Q else bits
    return out


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-equal float32 values, both read flat."""
    return np.array_equal(np.ascontiguousarray(a, np.float32).reshape(-1).view(np.int32),
                          np.ascontiguousarray(b, np.float32).reshape(-1).view(np.int32))


def _bank_levels(bank: torch.Tensor, q: int) -> tuple[np.ndarray, np.float32]:
    """(int64 levels, float32 scale) of a float32 bank at ``2 <= q < 16``: exact when the
    bank is already uniform at ``q`` bits or fewer, else ``quantize_weight(bank, q)``."""
    top, values = 2 ** (q - 1) - 1, bank.numpy().reshape(-1)
    found = exact_uniform(values)
    if found is not None and found[0] <= q:
        levels, scale = np.asarray(found[2], np.int64).reshape(-1), np.float32(found[1])
        if (np.abs(levels) <= top).all() and _same_bits(dequantize_uniform(levels, scale),
                                                        values):
            return levels, scale
    scale = bank.abs().amax() / top  # as quantize_weight computes it, in float32
    if scale > 0:
        levels = torch.clamp(torch.round(bank / scale), -top, top).to(torch.int64)
    else:
        levels = torch.zeros_like(bank, dtype=torch.int64)
    levels, scale = levels.numpy().reshape(-1), np.float32(scale.item())
    if not _same_bits(dequantize_uniform(levels, scale), quantize_weight(bank, q).numpy()):
        raise CodecError(f"the bank's quantize_weight(bank, {q}) is not levels * scale "
                         "(an all-zero bank with -0.0?): use q=32")
    return levels, scale


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
    levels, scale = _bank_levels(m32.contiguous(), q)
    return pack_fields(levels + (2 ** (q - 1) - 1), q), [(int(scale.view(np.uint32)), 32)]


def _stored(state: Mapping, pooled: set[str]) -> list[tuple[str, torch.Tensor, bytes]]:
    """(name, tensor, tensor-code blob) of each floating tensor not pooled."""
    out = []
    for name, t in state.items():
        if name in pooled or not isinstance(t, torch.Tensor) or not t.is_floating_point():
            continue
        t32 = t.detach().cpu().to(torch.float32)
        if not torch.equal(t32.to(t.dtype), t.detach().cpu()):
            raise CodecError(f"tensor {name!r} is not exact in float32: cast it first")
        out.append((name, t, encode_tensor(t32.contiguous().numpy().reshape(-1))))
    return out


def _write_tensor(bw: BitWriter, name: str, shape, dtype_code: int, *post_q: int) -> None:
    raw = name.encode("utf-8")
    bw.write_elias([len(raw) + 1], "delta")
    for b in raw:
        bw.write(b, 8)
    bw.write_elias([len(shape) + 1, *(d + 1 for d in shape), dtype_code + 1,
                    *(p + 1 for p in post_q)], "delta")


def encode_stream(model, momos, q: int,
                  post_quantize: Mapping[str, int] | None = None) -> Encoded:
    """The stream of ``momos.codec.encode`` (arguments as there) and its itemization.

    Parameters
    ----------
    model : nn.Module or Mapping[str, torch.Tensor]
    momos : MoMos, tuple or None
    q : int
    post_quantize : Mapping[str, int] or None

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
    state = _state_dict(model)
    if momos is None:
        motifs, mosaic, spans, s = torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64), (), 0
    else:
        motifs, mosaic, layout = _projection(momos)
        spans, s = layout.spans, layout.s
    post = _post_widths(post_quantize, [sp.name for sp in spans])
    stored = _stored(state, {sp.name for sp in spans})
    pooled = tuple(PooledTensor(sp.name, sp.numel, sp.n_blocks, post.get(sp.name, 0))
                   for sp in spans)
    sections_stored = tuple(StoredTensor(name, t.numel(), code_name(blob), 8 * len(blob))
                            for name, t, blob in stored)
    indices = mosaic.numpy()
    if pooled:
        k = motifs.shape[0]
        bank, bank_fields = _bank_section(motifs, q)
        mosaics = (pack_fields(indices, (k - 1).bit_length()),
                   ans_encode(indices, k) if indices.size else b"")
        counts = np.bincount(indices, minlength=k)
    else:
        k = q = 0
        bank, bank_fields, mosaics, counts = b"", [], (b"",), None
    candidates = []
    for coded, mosaic_bytes in enumerate(mosaics):
        bw = BitWriter()
        bw.write_elias([len(pooled) + 1, len(stored) + 1], "delta")
        for sp, t in zip(spans, pooled):
            _write_tensor(bw, sp.name, sp.shape, _dtype_code(state.get(sp.name, motifs)),
                          t.post_q)
        for name, t, _ in stored:
            _write_tensor(bw, name, tuple(t.shape), _dtype_code(t))
        bank_field_bits = mosaic_field_bits = 0
        if pooled:
            bw.write_elias([s + 1, k + 1, q + 1], "delta")
            before_bank = bw.n_bits
            for value, width in bank_fields:  # q=16: the half kind; q<16: the scale
                bw.write(value, width)
            bank_field_bits = bw.n_bits - before_bank
            bw.write(coded, 1)
            before_counts = bw.n_bits
            if coded:
                bw.write_elias(np.append(counts + 1, len(mosaic_bytes) // 4 + 1), "delta")
            mosaic_field_bits = bw.n_bits - before_counts
        for *_, blob in stored:
            bw.write_elias([len(blob) + 1], "delta")
        sections = Sections(
            s=s, k=k, q=q, pooled=pooled, stored=sections_stored,
            header_field_bits=bw.n_bits - bank_field_bits - mosaic_field_bits,
            padding_bits=-bw.n_bits % 8, bank_field_bits=bank_field_bits,
            bank_value_bits=8 * len(bank), mosaic_coded=bool(coded),
            mosaic_field_bits=mosaic_field_bits, mosaic_value_bits=8 * len(mosaic_bytes))
        candidates.append((sections, bw, mosaic_bytes))
    # the shorter mosaic; on a tie, fixed
    chosen = min(candidates, key=lambda c: c[0].total_bits)
    rejected = next((c[0] for c in candidates if c is not chosen), chosen[0])
    sections, bw, mosaic_bytes = chosen
    body = b"".join([bw.getvalue(), bank, mosaic_bytes, *(blob for *_, blob in stored)])
    data = PREFIX.pack(MAGIC, VERSION, PREFIX.size + len(body), zlib.crc32(body)) + body
    return Encoded(data=data, sections=sections, rejected=rejected, mosaic=indices)
