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
from momos.sections import PREFIX_BITS, PooledTensor, Sections, StoredTensor
from momos.tensorcode import encode_tensor


def _model(seed: int, stored: bool) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(7, 5), nn.LayerNorm(5), nn.Linear(5, 3))
    if stored:
        model[1].weight.requires_grad_(False)  # frozen: stored
        model[1].bias.requires_grad_(False)
        with torch.no_grad():
            model[1].bias.zero_()  # compresses
    return model


def _skewed():
    """A skewed mosaic (the coded one is shorter), with a compressible and a raw stored
    tensor."""
    layout = layout_of([("w", torch.zeros(4000))], 1)
    mosaic = torch.zeros(4000, dtype=torch.int64)
    mosaic[::50] = torch.arange(80) % 255 + 1
    bank = torch.arange(256, dtype=torch.float32).reshape(256, 1)
    state = {"z": torch.zeros(1000), "r": torch.randn(3)}
    return state, (bank, mosaic, layout)


def _cases():
    for q in (32, 16, 5):
        for stored in (False, True):
            model = _model(q, stored)
            mm = MoMos(s=2, k=4, seed=0)
            mm.project(model)
            src = (mm.motifs.half().float(), mm.mosaic, mm.layout) if q == 16 else mm
            yield pytest.param(model, src, q, id=f"q{q}-{'stored' if stored else 'none'}")
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
    for field in ("header_field_bits", "bank_bits", "stored", "pooled"):
        assert getattr(enc.rejected, field) == getattr(sec, field)  # the mosaic differs
    dl = description_length(model, src, q)
    fixed, coded = (enc.rejected, sec) if sec.mosaic_coded else (sec, enc.rejected)
    assert (dl.header_bits, dl.bank_bits, dl.mosaic_bits, dl.leftover_bits, dl.total_bits,
            dl.mosaic_coded, dl.mosaic_bits_fixed, dl.mosaic_bits_coded) == (
        sec.header_bits, sec.bank_bits, sec.mosaic_bits, sec.leftover_bits, sec.total_bits,
        sec.mosaic_coded, fixed.mosaic_bits, coded.mosaic_bits)
    assert dl.tensors == tuple(
        (t.name, t.numel, t.n_blocks, 0, "momos") for t in sec.pooled) + tuple(
        (t.name, t.numel, 0, t.bits, t.code) for t in sec.stored)
    assert stream_info(enc.data) == sec.info()
    assert sec.bank_field_bits == {32: 0, 16: 1}.get(q, 32)
    assert sec.padding_bits == -(sec.header_field_bits + sec.bank_field_bits
                                 + sec.mosaic_field_bits) % 8


def test_storage_of_stored_tensors():
    state, src = _skewed()
    sec = encode_stream(state, src, 32).sections
    assert sec.mosaic_coded and sec.mosaic_field_bits > 0
    z = sec.stored[0]
    assert [(t.name, t.numel) for t in sec.stored] == [("z", 1000), ("r", 3)]
    assert z.code != "raw" and z.bits == 8 * len(encode_tensor(state["z"].numpy()))
    assert z.bits < 8 * 4000 // 10  # 1000 zeros
    assert sec.stored[1].code == "raw"
    assert sec.stored[1].bits == 8 + 3 * 32  # the mode byte and the float32 values
    assert sec.codes == {z.code: z.bits, "raw": 104}
    model = _model(0, stored=False)
    mm = MoMos(s=2, k=4, seed=0)
    mm.project(model)
    sec = encode_stream(model, mm, 32).sections
    assert sec.stored == () and sec.leftover_bits == 0 and not sec.mosaic_coded
    assert sec.mosaic_field_bits == 0 and sec.codes == {}


@pytest.mark.parametrize("post", [None, {"0.weight": 4, "2.weight": 31}])
def test_one_itemization_without_momos_or_with_post_quantization(post):
    model = _model(1, stored=True)
    mm = MoMos(s=3, k=5, seed=0)
    mm.project(model)
    for src in (None, mm) if post is None else (mm,):
        enc = encode_stream(model, src, 32, post)
        _, decoded = decode_stream(enc.data, 1 << 28, False, 1 << 18)
        assert decoded == enc.sections and stream_info(enc.data) == enc.sections.info()
        assert enc.sections.total_bits == 8 * len(enc.data)
    assert [t.post_q for t in decoded.pooled] == [(post or {}).get(t.name, 0)
                                                 for t in decoded.pooled]
    if post is None:  # the last one: without MoMos
        sec = encode_stream(model, None, 32).sections
        assert (sec.s, sec.k, sec.q, sec.m, sec.bank_bits, sec.mosaic_bits) == (0,) * 6
        assert len(sec.stored) == len(model.state_dict())


def test_sections_arithmetic():
    sec = Sections(s=2, k=2, q=5, pooled=(PooledTensor("w", 6, 3),),
                   stored=(StoredTensor("b", 2, "raw", 64), StoredTensor("c", 9, "uniform", 24),
                           StoredTensor("d", 1, "raw", 40)), header_field_bits=80,
                   padding_bits=3, bank_field_bits=32, bank_value_bits=24,
                   mosaic_coded=True, mosaic_field_bits=9, mosaic_value_bits=32)
    assert sec.header_bits == PREFIX_BITS + 83
    assert (sec.bank_bits, sec.mosaic_bits, sec.leftover_bits, sec.m) == (56, 41, 128, 3)
    assert sec.total_bits == PREFIX_BITS + 83 + 56 + 41 + 128
    info = sec.info()
    assert info["n_weights"] == 18 and info["total_bits"] == sec.total_bits
    assert info["codes"] == {"raw": 104, "uniform": 24}
    assert sum(info["codes"].values()) == info["leftover_bits"]
