"""One itemization of a .momos stream: the encoder's Sections, the decoder's Sections,
``description_length`` and ``stream_info`` are the same numbers, and they add up to
``8 * len(data)``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from momos.blocks import layout_of
from momos.codec import description_length, stream_info
from momos.decoder import decode_stream
from momos.encoder import encode_stream
from momos.projection import MoMos
from momos.sections import PREFIX_BITS, LeftoverSection, PooledTensor, Sections


def _model(seed: int, leftovers: bool) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(7, 5), nn.LayerNorm(5), nn.Linear(5, 3))
    if leftovers:
        model[1].weight.requires_grad_(False)  # frozen: a leftover
        model[1].bias.requires_grad_(False)
        with torch.no_grad():
            model[1].bias.zero_()  # compresses: stored as zstd
    return model


def _skewed():
    """A skewed mosaic (the coded one is shorter), with a raw and a zstd leftover."""
    layout = layout_of([("w", torch.zeros(4000))], 1)
    mosaic = torch.zeros(4000, dtype=torch.int64)
    mosaic[::50] = torch.arange(80) % 255 + 1
    bank = torch.arange(256, dtype=torch.float32).reshape(256, 1)
    state = {"z": torch.zeros(1000), "r": torch.randn(3)}
    return state, (bank, mosaic, layout)


def _cases():
    for q in (32, 16, 5):
        for leftovers in (False, True):
            model = _model(q, leftovers)
            mm = MoMos(s=2, k=4, seed=0)
            mm.project(model)
            src = (mm.motifs.half().float(), mm.mosaic, mm.layout) if q == 16 else mm
            yield pytest.param(model, src, q, id=f"q{q}-{'left' if leftovers else 'none'}")
    for q in (32, 16, 5):
        state, (bank, mosaic, layout) = _skewed()
        yield pytest.param(state, (bank, mosaic, layout), q, id=f"q{q}-coded")


@pytest.mark.parametrize("model, src, q", list(_cases()))
def test_one_itemization(model, src, q):
    enc = encode_stream(model, src, q)
    _, decoded = decode_stream(enc.data, 1 << 28, False, 1 << 18)
    sec = enc.sections
    assert decoded == sec
    assert sec.total_bits == 8 * len(enc.data)
    assert enc.rejected.mosaic_coded != sec.mosaic_coded
    assert enc.rejected.total_bits >= sec.total_bits
    for field in ("header_field_bits", "bank_bits", "leftovers", "pooled"):
        assert getattr(enc.rejected, field) == getattr(sec, field)  # the mosaic differs
    dl = description_length(model, src, q)
    fixed, coded = (enc.rejected, sec) if sec.mosaic_coded else (sec, enc.rejected)
    assert (dl.header_bits, dl.bank_bits, dl.mosaic_bits, dl.leftover_bits, dl.total_bits,
            dl.mosaic_coded, dl.mosaic_bits_fixed, dl.mosaic_bits_coded) == (
        sec.header_bits, sec.bank_bits, sec.mosaic_bits, sec.leftover_bits, sec.total_bits,
        sec.mosaic_coded, fixed.mosaic_bits, coded.mosaic_bits)
    assert dl.tensors == tuple((t.name, t.numel, t.n_blocks, 0) for t in sec.pooled) + tuple(
        (t.name, t.numel, 0, t.bits) for t in sec.leftovers)
    assert stream_info(enc.data) == sec.info()
    assert sec.bank_field_bits == {32: 0, 16: 1}.get(q, 32)
    assert sec.padding_bits == -(sec.header_field_bits + sec.bank_field_bits
                                 + sec.mosaic_field_bits) % 8


def test_storage_of_leftovers():
    state, src = _skewed()
    sec = encode_stream(state, src, 32).sections
    assert sec.mosaic_coded and sec.mosaic_field_bits > 0
    assert [(t.name, t.numel, t.zstd) for t in sec.leftovers] == [("z", 1000, True),
                                                                   ("r", 3, False)]
    assert sec.leftovers[1].bits == 3 * 32
    model = _model(0, leftovers=False)
    mm = MoMos(s=2, k=4, seed=0)
    mm.project(model)
    sec = encode_stream(model, mm, 32).sections
    assert sec.leftovers == () and sec.leftover_bits == 0 and not sec.mosaic_coded
    assert sec.mosaic_field_bits == 0


def test_sections_arithmetic():
    sec = Sections(s=2, k=2, q=5, pooled=(PooledTensor("w", 6, 3),),
                   leftovers=(LeftoverSection("b", 2, False, 64),), header_field_bits=80,
                   padding_bits=3, bank_field_bits=32, bank_value_bits=24,
                   mosaic_coded=True, mosaic_field_bits=9, mosaic_value_bits=32)
    assert sec.header_bits == PREFIX_BITS + 83
    assert (sec.bank_bits, sec.mosaic_bits, sec.leftover_bits, sec.m) == (56, 41, 64, 3)
    assert sec.total_bits == PREFIX_BITS + 83 + 56 + 41 + 64
    info = sec.info()
    assert info["n_weights"] == 8 and info["total_bits"] == sec.total_bits
