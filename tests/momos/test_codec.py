"""The MoMos stream: bit-exact round trips, the itemized length, golden bytes (the worked
examples of docs/format.md, version 2, and the version 1 one, which still decodes) and
CodecError for every malformed input, fuzzed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from stream_edits import EDITS, apply_edits, reseal
from torch import nn

from kcomplex.bitstream import BitWriter
from kcomplex.files import write_atomic
from momos.blocks import layout_of
from momos.codec import CodecError, decode, description_length, encode, stream_info
from momos.projection import MoMos
from momos.qat import quantize_weight

#: The worked example of docs/format.md (version 2).
GOLDEN = bytes.fromhex(
    "4d4f4d4f5302" "3700000000000000" "e078bf17" "4447755668c48b55304440"
    "0000000000000000" "0000003f000080bf" "c0" "00" "0000803f00000040"
)
#: The same model without MoMos: one stored tensor, no s/k/q fields (docs/format.md).
GOLDEN_BASELINE = bytes.fromhex(
    "4d4f4d4f5302" "2000000000000000" "b6e555e6" "a23122c880" "00" "0000803f00000040"
)
#: The version 1 worked example: still decodes.
GOLDEN_V1 = bytes.fromhex(
    "4d4f4d4f5301" "3600000000000000" "7543640f" "44477556518916aa608420"
    "0000000000000000" "0000003f000080bf" "c0" "0000803f00000040"
)


def _golden_input():
    layout = layout_of([("w", torch.zeros(2, 3))], 2)
    bank, mosaic = torch.tensor([[0.0, 0.0], [0.5, -1.0]]), torch.tensor([1, 1, 0])
    state = {"w": torch.tensor([[0.5, -1.0, 0.5], [-1.0, 0.0, 0.0]]),
             "b": torch.tensor([1.0, 2.0])}
    return state, (bank, mosaic, layout)


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(7, 5), nn.LayerNorm(5), nn.Conv2d(3, 2, 3),
                          nn.Linear(3, 1, bias=False))
    return model


def _bank_weights(mm: MoMos, q: int) -> torch.Tensor:
    """The pool as it must decode: the bank at q (quantize_weight below 16 bits; the
    projected banks here are not uniform already), then indexed."""
    bank = mm.motifs.float()
    if q < 16:
        bank = quantize_weight(bank, q)
    return bank[mm.mosaic].reshape(-1)


def _expected(model: nn.Module, mm: MoMos, q: int) -> dict[str, torch.Tensor]:
    flat, out = _bank_weights(mm, q), {}
    for sp in mm.layout.spans:
        out[sp.name] = flat[sp.start * mm.layout.s : sp.start * mm.layout.s + sp.numel]
    state = model.state_dict()
    return {n: out[n].reshape(t.shape) if n in out else t for n, t in state.items()}


@pytest.mark.parametrize("s", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [dict(k=1), dict(k=2), dict(k=5), dict(capacity=0.5),
                                  dict(capacity=1.0)])
@pytest.mark.parametrize("force_zero", [True, False])
@pytest.mark.parametrize("q", [32, 8])
def test_round_trip(s, size, force_zero, q):
    model = _model(s)
    model[1].weight.requires_grad_(False)  # frozen: stored as a leftover
    mm = MoMos(s=s, force_zero=force_zero, seed=1, **size)
    mm.project(model)
    data = encode(model, mm, q=q)
    out = decode(data)
    expected = _expected(model, mm, q)
    assert list(out) == [sp.name for sp in mm.layout.spans] + ["1.weight"]
    for name, t in expected.items():
        assert out[name].dtype == torch.float32 and torch.equal(out[name], t), name
    if q == 32:  # the projected model itself
        assert all(torch.equal(out[n], p) for n, p in model.state_dict().items())
    dl = description_length(model, mm, q=q)
    assert dl.total_bits == 8 * len(data)
    assert dl.header_bits + dl.bank_bits + dl.mosaic_bits + dl.leftover_bits == dl.total_bits
    assert dl.leftover_bits > 0
    info = stream_info(data)  # read from the stream alone, itemized the same way
    assert (info["header_bits"], info["bank_bits"], info["mosaic_bits"], info["leftover_bits"],
            info["total_bits"], info["mosaic_coded"]) == (
        dl.header_bits, dl.bank_bits, dl.mosaic_bits, dl.leftover_bits, dl.total_bits,
        dl.mosaic_coded)
    k = mm.motifs.shape[0]
    assert dl.mosaic_bits_fixed == 8 * math.ceil(mm.layout.m * (k - 1).bit_length() / 8)
    assert dl.mosaic_bits <= dl.mosaic_bits_fixed  # the shorter is kept (+ 1 flag bit)
    assert dl.mosaic_bits_ideal <= dl.mosaic_bits_coded + 8 * k + 64
    assert dl.trivial_bits == 32 * mm.layout.n
    assert dl.rac_exact == dl.trivial_bits / dl.total_bits


@pytest.mark.parametrize("q", [16])
def test_half_bank_exact_or_error(q):
    model = _model(0)
    mm = MoMos(s=2, k=4, seed=0)
    mm.project(model)
    with pytest.raises(CodecError, match="q=32"):
        encode(model, mm, q=16)
    # a bank exact in float16: round it, then project onto it by hand
    bank = mm.motifs.half().float()
    data = encode({}, (bank, mm.mosaic, mm.layout), q=16)
    out = decode(data)
    flat = bank[mm.mosaic].reshape(-1)
    for sp in mm.layout.spans:
        s0 = sp.start * 2
        assert torch.equal(out[sp.name], flat[s0 : s0 + sp.numel].reshape(sp.shape))
    assert len(data) < len(encode({}, (bank, mm.mosaic, mm.layout), q=32))


def test_bfloat16_bank():
    layout = layout_of([("w", torch.zeros(4))], 2)
    bank = torch.tensor([[1e30, 0.0], [0.0, 3.0]]).bfloat16().float()  # beyond float16
    out = decode(encode({}, (bank, torch.tensor([0, 1]), layout), q=16))
    assert torch.equal(out["w"], bank.reshape(-1))


def test_state_dict_input_and_buffers():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3))
    model[1].running_mean.uniform_()
    state = {n: t.clone() for n, t in model.state_dict().items()}
    pooled = {n: state[n] for n, _ in model.named_parameters()}
    mm = MoMos(s=3, k=4, seed=0)
    mm.project(pooled)
    state.update(pooled)
    out = decode(encode(state, mm))
    assert "1.num_batches_tracked" not in out  # not floating: not stored
    for n, t in state.items():
        if t.is_floating_point():
            assert torch.equal(out[n], t), n


def test_coded_mosaic_chosen_when_skewed():
    layout = layout_of([("w", torch.zeros(4000))], 1)
    mosaic = torch.zeros(4000, dtype=torch.int64)
    mosaic[::50] = torch.arange(80) % 255 + 1
    bank = torch.arange(256, dtype=torch.float32).reshape(256, 1)
    dl = description_length({}, (bank, mosaic, layout))
    assert dl.mosaic_coded and dl.mosaic_bits_coded < dl.mosaic_bits_fixed
    # the "ideal" two-part cost pays log2 C(m + k - 1, k - 1) for the counts, which can
    # exceed the Elias-delta counts when most motifs are unused: it is no lower bound
    assert torch.equal(decode(encode({}, (bank, mosaic, layout)))["w"], bank[mosaic, 0])


def test_golden_bytes():
    state, src = _golden_input()
    data = encode(state, src)
    assert data == GOLDEN
    out = decode(GOLDEN)
    assert all(torch.equal(out[n], t) for n, t in state.items())
    dl = description_length(state, src)
    assert (dl.header_bits, dl.bank_bits, dl.mosaic_bits_fixed, dl.leftover_bits,
            dl.total_bits) == (232, 128, 8, 72, 440)
    assert dl.tensors == (("w", 6, 3, 0, "momos"), ("b", 2, 0, 72, "raw"))
    assert stream_info(GOLDEN)["codes"] == {"raw": 72}


def test_golden_baseline_bytes():
    state = {"b": torch.tensor([1.0, 2.0])}
    assert encode(state) == GOLDEN_BASELINE
    assert torch.equal(decode(GOLDEN_BASELINE)["b"], state["b"])
    info = stream_info(GOLDEN_BASELINE)
    assert (info["s"], info["k"], info["q"], info["m"], info["header_bits"],
            info["total_bits"]) == (0, 0, 0, 0, 184, 256)


def test_golden_v1_still_decodes():
    state, _ = _golden_input()
    out = decode(GOLDEN_V1)
    assert list(out) == ["w", "b"]
    assert all(torch.equal(out[n], t) for n, t in state.items())
    info = stream_info(GOLDEN_V1)
    assert (info["header_bits"], info["bank_bits"], info["mosaic_bits"], info["leftover_bits"],
            info["total_bits"], info["codes"]) == (232, 128, 8, 64, 432, {"raw": 64})


def test_table_and_json():
    model = _model(1)
    model[1].weight.requires_grad_(False)
    mm = MoMos(s=2, capacity=0.3, seed=0)
    mm.project(model)
    dl = description_length(model, mm)
    table = dl.table()
    assert table["bits"].sum() == pytest.approx(dl.total_bits)
    assert list(table["name"])[-1] == "(header)"
    pooled = {sp.name for sp in mm.layout.spans}
    assert all((code == "momos") == (name in pooled)
               for name, code in zip(table["name"][:-1], table["code"][:-1]))
    assert '"total_bits"' in dl.to_json()


@pytest.mark.parametrize("data, match", [
    (b"NOTMO" + GOLDEN[5:], "magic"),
    (GOLDEN[:5] + b"\x03" + GOLDEN[6:], "version"),
    (GOLDEN[:5] + b"\x00" + GOLDEN[6:], "version"),
    (GOLDEN[:-1] + b"\x41", "CRC"),
    (GOLDEN + b"\x00", "length"),
    (b"", "magic"),
    ("MOMOS", "bytes"),
])
def test_errors(data, match):
    with pytest.raises(CodecError, match=match):
        decode(data)


@pytest.mark.parametrize("golden", [GOLDEN, GOLDEN_BASELINE, GOLDEN_V1])
def test_every_truncation(golden):
    for i in range(len(golden)):
        with pytest.raises(CodecError):
            decode(golden[:i])


@pytest.mark.parametrize("golden", [GOLDEN, GOLDEN_BASELINE, GOLDEN_V1])
def test_parser_errors_with_valid_crc(golden):
    """Corrupt bodies that pass the CRC still give CodecError (never another type)."""
    body, version = golden[18:], golden[5]
    rng = np.random.default_rng(0)
    for _ in range(3000):
        b = bytearray(body)
        b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        data = reseal(bytes(b), version)
        try:
            decode(data)
        except CodecError:
            pass


def test_absurd_sizes_never_allocate():
    # absurd sizes never allocate: 2^40 weights of a k=1 mosaic
    big = encode({}, (torch.zeros(1, 1), torch.zeros(2, dtype=torch.int64),
                      layout_of([("w", torch.zeros(2))], 1)))
    assert decode(big)["w"].shape == (2,)
    with pytest.raises(CodecError, match="exceeds its bound 1"):
        decode(big, max_numel=1)
    for version in (1, 2):  # a resealed stream that claims a 2^40-weight tensor at k = 1
        bw = BitWriter()
        bw.write_elias([2, 1, 2], "delta")
        bw.write(ord("w"), 8)
        bw.write_elias([2, 2**40 + 1, 1, *([1] if version == 2 else []), 2, 2, 33], "delta")
        bw.write(0, 1)
        with pytest.raises(CodecError, match="exceeds its bound"):
            decode(reseal(bw.getvalue() + bytes(4), version))


@pytest.fixture(scope="module")
def small_stream():
    model = nn.Linear(3, 2)
    mm = MoMos(s=2, k=3, seed=0)
    mm.project(model)
    data = encode(model, mm)
    return data, decode(data)


@settings(max_examples=10_000, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(edits=EDITS)
def test_fuzz_corruptions(small_stream, edits):
    data, weights = small_stream
    b = apply_edits(data, edits)
    try:
        out = decode(b)
    except CodecError:
        return
    assert bytes(b) == data  # only a no-op corruption decodes
    assert all(torch.equal(out[n], weights[n]) for n in weights)


def test_write_atomic(tmp_path):
    path = tmp_path / "m.momos"
    write_atomic(path, GOLDEN)
    write_atomic(path, GOLDEN[:20])
    assert path.read_bytes() == GOLDEN[:20]
    assert [p.name for p in tmp_path.iterdir()] == ["m.momos"]


@settings(max_examples=2_000, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(edits=EDITS)
def test_fuzz_parser_behind_a_valid_crc(small_stream, edits):
    """The same corruptions of the body, resealed with a correct length and CRC, so that
    they reach the parser: CodecError or some weights, never another exception."""
    data, _ = small_stream
    b = apply_edits(data[18:], edits)
    try:
        out = decode(reseal(b))
    except CodecError:
        return
    assert all(t.dtype == torch.float32 for t in out.values())
