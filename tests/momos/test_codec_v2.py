"""Format version 2: one stream codes the weights of every training method bit for bit
(baseline, QAT / post-training quantization, k-means palettes, MoMos, MoMos + QAT), and
its length is exactly the itemization of ``description_length`` and ``stream_info``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from momos.blocks import layout_of
from momos.bounds import bound_bits
from momos.codec import CodecError, decode, description_length, encode, stream_info
from momos.projection import MoMos
from momos.qat import attach_qat, quantize_weight
from momos.tensorcode import decode_tensor, encode_tensor


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().float().contiguous().view(torch.int32)


def _assert_exact(out: dict, want: dict) -> None:
    assert list(out) == list(want)
    for name, t in want.items():
        assert out[name].dtype == torch.float32 and out[name].shape == t.shape, name
        assert torch.equal(_bits(out[name]), _bits(t)), name


def _check_lengths(data: bytes, dl) -> dict:
    """``8 * len(data) == total_bits`` and stream_info itemized as description_length."""
    info = stream_info(data)
    assert 8 * len(data) == dl.total_bits == info["total_bits"]
    assert dl.header_bits + dl.bank_bits + dl.mosaic_bits + dl.leftover_bits == dl.total_bits
    assert (info["header_bits"], info["bank_bits"], info["mosaic_bits"], info["leftover_bits"],
            info["mosaic_coded"]) == (dl.header_bits, dl.bank_bits, dl.mosaic_bits,
                                      dl.leftover_bits, dl.mosaic_coded)
    stored = [t for t in dl.tensors if t[4] != "momos"]
    codes: dict[str, int] = {}
    for _, _, _, bits, code in stored:
        codes[code] = codes.get(code, 0) + bits
    assert info["codes"] == codes and sum(codes.values()) == dl.leftover_bits
    assert info["n_leftover_tensors"] == len(stored)
    assert info["n_weights"] == sum(t[1] for t in dl.tensors)
    assert dl.table()["bits"].sum() == pytest.approx(dl.total_bits)
    return info


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


# -- no MoMos ----------------------------------------------------------------------------


def test_baseline_state_dict():
    model = _net(0)
    model[1].running_mean.uniform_()
    state = dict(model.state_dict())
    state["half"] = torch.randn(5).half()  # exact in float32: stored, decoded as float32
    state["double"] = torch.tensor([0.1, -3.0], dtype=torch.float32).double()
    data = encode(state)
    want = {n: t.float() for n, t in state.items() if t.is_floating_point()}
    _assert_exact(decode(data), want)
    dl = description_length(state)
    info = _check_lengths(data, dl)
    n = sum(t.numel() for t in want.values())
    assert (info["s"], info["k"], info["q"], info["m"], info["n_coded_tensors"]) == (0,) * 5
    assert (dl.bank_bits, dl.mosaic_bits_fixed, dl.mosaic_bits_coded, dl.mosaic_coded) == (
        0, 0, 0, False)
    assert dl.bound_bits == dl.trivial_bits == 32 * n and dl.rac_bound == 1.0
    assert dl.rac_exact == 32 * n / dl.total_bits
    # each blob is the shortest exact one: never longer than raw float32 and its mode byte
    assert all(bits <= 8 + 32 * ne for _, ne, _, bits, _ in dl.tensors)
    assert "1.num_batches_tracked" not in decode(data)


def test_baseline_refuses_values_not_exact_in_float32():
    with pytest.raises(CodecError, match="'x' is not exact in float32"):
        encode({"x": torch.tensor([0.1], dtype=torch.float64)})


def test_qat_quantized_model():
    """Weights as QAT computes them (quantize_weight at 4 bits), float biases: the weights
    take the uniform code, near 4 bits per weight, and decode bit for bit."""
    model = _net(1)
    with torch.no_grad():
        for i in (0, 3):
            model[i].weight.copy_(quantize_weight(model[i].weight, 4))
    state = model.state_dict()
    data = encode(model)
    _assert_exact(decode(data), {n: t for n, t in state.items() if t.is_floating_point()})
    dl = description_length(model)
    _check_lengths(data, dl)
    rows = {name: (numel, bits, code) for name, numel, _, bits, code in dl.tensors}
    for name in ("0.weight", "3.weight"):
        numel, bits, code = rows[name]
        assert code == "uniform"
        assert bits <= 4 * numel + 8 * 16  # the levels at most 4 bits, plus a small header
    assert rows["0.bias"][2] != "uniform"


def test_kmeans_palette_tensor():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal(13).astype(np.float32)
    w = torch.from_numpy(centers[rng.integers(0, 13, (40, 30))])
    data = encode({"w": w})
    _assert_exact(decode(data), {"w": w})
    dl = description_length({"w": w})
    _check_lengths(data, dl)
    (_, numel, _, bits, code), = dl.tensors
    assert code == "palette"
    assert bits <= numel * math.ceil(math.log2(13)) + 32 * 13 + 8 * 16


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(values=st.lists(st.floats(width=32, allow_nan=False), min_size=0, max_size=40),
       q=st.integers(2, 16))
def test_stored_round_trip_property(values, q):
    """Any float32 values (and their QAT quantization) round-trip bit for bit, with the
    stored blob exactly the tensor code's."""
    t = torch.tensor(values, dtype=torch.float32)
    if t.numel() and torch.isfinite(t).all():
        state = {"t": t, "tq": quantize_weight(t, q)}
    else:
        state = {"t": t}
    data = encode(state)
    _assert_exact(decode(data), state)
    dl = description_length(state)
    _check_lengths(data, dl)
    for (name, _, _, bits, _), t in zip(dl.tensors, state.values(), strict=True):
        assert bits == 8 * len(encode_tensor(t.numpy()))
        out = np.empty(t.numel(), np.float32)
        decode_tensor(encode_tensor(t.numpy()), t.numel(), out)


# -- MoMos ----------------------------------------------------------------------------


def test_momos_q32_with_every_stored_tensor():
    model = _net(2)
    model[0].bias.requires_grad_(False)  # frozen: stored
    mm = MoMos(s=3, k=6, seed=0)
    mm.project(model)
    data = encode(model, mm)
    _assert_exact(decode(data), {sp.name: model.state_dict()[sp.name] for sp in mm.layout.spans}
                  | {n: t for n, t in model.state_dict().items()
                     if t.is_floating_point() and n not in {sp.name for sp in mm.layout.spans}})
    dl = description_length(model, mm)
    info = _check_lengths(data, dl)
    assert (info["s"], info["k"], info["q"], info["m"]) == (3, 6, 32, mm.layout.m)
    assert [t[4] for t in dl.tensors[:len(mm.layout.spans)]] == ["momos"] * len(
        mm.layout.spans)
    assert dl.trivial_bits == 32 * mm.layout.n


def _bank_and_mosaic(seed: int):
    torch.manual_seed(seed)
    layout = layout_of([("a", torch.zeros(10, 7)), ("b", torch.zeros(33))], 2)
    bank = torch.randn(12, 2)
    mosaic = torch.randint(0, 12, (layout.m,))
    return bank, mosaic, layout


def _spans(flat: torch.Tensor, layout) -> dict[str, torch.Tensor]:
    return {sp.name: flat[sp.start * layout.s:sp.start * layout.s + sp.numel].reshape(sp.shape)
            for sp in layout.spans}


def test_bank_quantized_at_q_is_exact():
    """A bank that is quantize_weight(bank, 8) stores exactly at q = 8 (and at any wider
    q < 16), and the post-quantized tensors decode as quantize_weight of their span."""
    bank, mosaic, layout = _bank_and_mosaic(0)
    bank_q = quantize_weight(bank, 8)
    assert not torch.equal(quantize_weight(bank_q, 11), bank_q)  # q = 11: not the lossy path
    for q in (8, 11):
        _assert_exact(decode(encode({}, (bank_q, mosaic, layout), q=q)),
                      _spans(bank_q[mosaic].reshape(-1), layout))
    post = {"a": 8, "b": 3}
    data = encode({}, (bank_q, mosaic, layout), q=8, post_quantize=post)
    spans = _spans(bank_q[mosaic].reshape(-1), layout)
    _assert_exact(decode(data), {n: quantize_weight(t, post[n]) for n, t in spans.items()})
    dl = description_length({}, (bank_q, mosaic, layout), q=8, post_quantize=post)
    _check_lengths(data, dl)
    n = sum(sp.numel for sp in layout.spans)
    assert dl.bound_bits == bound_bits(n, 2, k=12, q=8) == 12 * 2 * 8 + layout.m * 4
    # the bank costs the bound's k*s*q plus its 32-bit scale; both sections are padded
    assert dl.bank_bits == 12 * 2 * 8 + 32
    assert dl.total_bits <= dl.bound_bits + dl.header_bits + 32 + 2 * 7


def test_bank_not_uniform_decodes_as_quantize_weight():
    """A bank that is not uniform at q bits is stored as quantize_weight(bank, q): lossy,
    exactly that."""
    bank, mosaic, layout = _bank_and_mosaic(1)
    for q in (2, 5, 15):
        out = decode(encode({}, (bank, mosaic, layout), q=q))
        _assert_exact(out, _spans(quantize_weight(bank, q)[mosaic].reshape(-1), layout))
        assert not torch.equal(out["a"], _spans(bank[mosaic].reshape(-1), layout)["a"])


def test_momos_qat_network_weights_exactly():
    """MoMos + QAT: the stream decodes to the weights the QAT network computes with."""
    model = _net(3)
    attach_qat(model, 6)
    mm = MoMos(s=2, k=10, seed=0, bank_bits=6)
    mm.project(model)
    post = {sp.name: 6 for sp in mm.layout.spans if sp.name.endswith("weight.original")}
    assert len(post) == 3  # the BatchNorm module "1" is not excluded by name
    data = encode(model, mm, q=6, post_quantize=post)
    out = decode(data)
    for i in (0, 1, 3):
        name = f"{i}.parametrizations.weight.original"
        assert torch.equal(_bits(out[name]), _bits(model[i].weight)), name
    for sp in mm.layout.spans:
        if sp.name not in post:
            assert torch.equal(_bits(out[sp.name]), _bits(model.state_dict()[sp.name]))
    dl = description_length(model, mm, q=6, post_quantize=post)
    _check_lengths(data, dl)
    assert dl.total_bits <= dl.bound_bits + dl.header_bits + dl.leftover_bits + 32 + 2 * 7


# -- arguments --------------------------------------------------------------------------


def test_post_quantize_arguments():
    bank, mosaic, layout = _bank_and_mosaic(4)
    src = (bank, mosaic, layout)
    state = {"c": torch.ones(3)}
    with pytest.raises(ValueError, match="'zz', which is not a pooled tensor"):
        encode(state, src, post_quantize={"zz": 4})
    with pytest.raises(ValueError, match="'c', which is not a pooled tensor"):
        encode(state, src, post_quantize={"c": 4})
    with pytest.raises(ValueError, match="'c', which is not a pooled tensor"):
        description_length(state, post_quantize={"c": 4})
    with pytest.raises(ValueError, match="post_quantize\\['a'\\] = 1"):
        encode(state, src, post_quantize={"a": 1})
    with pytest.raises(ValueError, match="post_quantize\\['a'\\]"):
        encode(state, src, post_quantize={"a": -2})
    with pytest.raises(TypeError, match="post_quantize\\['a'\\]"):
        encode(state, src, post_quantize={"a": 4.0})
    with pytest.raises(TypeError, match="mapping"):
        encode(state, src, post_quantize=[("a", 4)])
    plain = encode(state, src)
    assert encode(state, src, post_quantize={"a": 0}) == plain
    assert encode(state, src, post_quantize={"a": 32}) == plain
    assert encode(state, src, post_quantize={}) == encode(state, src, post_quantize=None)


def test_corrupt_post_quantization_width_is_refused():
    """A post-quantization width field of 1 (or above 31) is a corrupt header."""
    import struct
    import zlib

    from kcomplex.bitstream import BitWriter

    for width in (1, 32):
        bw = BitWriter()
        bw.write_elias([2, 1, 2], "delta")  # one pooled, no stored, name length 1
        bw.write(ord("w"), 8)
        bw.write_elias([2, 2, 1, width + 1, 2, 2, 33], "delta")  # (1,), f32, width, s, k, q
        bw.write(0, 1)
        body = bw.getvalue() + np.float32(0.5).tobytes()
        data = struct.pack("<5sBQI", b"MOMOS", 2, 18 + len(body), zlib.crc32(body)) + body
        with pytest.raises(CodecError, match="post-quantization width"):
            decode(data)
