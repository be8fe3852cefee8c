"""The exact tensor codes of momos.tensorcode: bit-exact round trips, shortest choice,
closed-form lengths, the golden example of docs/tensor-codes.md and malformed blobs."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kcomplex.bitstream import BitWriter
from momos.qat import quantize_weight
from momos.sections import CodecError
from momos.tensorcode import (
    TENSOR_CODES,
    code_name,
    decode_tensor,
    encode_candidates,
    encode_tensor,
    exact_uniform,
)


def _bits(v: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(v, dtype=np.float32).reshape(-1).view(np.uint32)


def _roundtrip(v: np.ndarray) -> dict[str, bytes]:
    """Every candidate decodes to `v` bit for bit, and checks without `out`."""
    cands = encode_candidates(v)
    for name, blob in cands.items():
        assert code_name(blob) == name
        out = np.full(v.size, np.nan, dtype=np.float32)
        assert decode_tensor(blob, v.size, out) is out
        assert np.array_equal(out.view(np.uint32), _bits(v)), name
        assert decode_tensor(blob, v.size) is None
    return cands


def _qat(w: np.ndarray, q: int) -> np.ndarray:
    return quantize_weight(torch.from_numpy(w), q).numpy()


RNG = np.random.default_rng(1234)
GAUSS = (RNG.standard_normal((37, 29)) * 0.05).astype(np.float32)
SPECIAL = np.array([np.nan, -np.inf, np.inf, 0.0, -0.0, 1e-45, -3e-39, 1.0],
                   dtype=np.float32)
NAN_PAYLOADS = np.array([0x7FC00001, 0xFFC12345, 0x7F800001, 0x3F800000],
                        dtype=np.uint32).view(np.float32)
CASES = {
    "normal": GAUSS,
    "zeros": np.zeros(50, np.float32),
    "negzeros": np.full(9, -0.0, np.float32),
    "special": SPECIAL,
    "nan_payloads": NAN_PAYLOADS,
    "subnormals": (RNG.integers(1, 1 << 23, 40).astype(np.uint32)
                   | (RNG.integers(0, 2, 40).astype(np.uint32) << 31)).view(np.float32),
    "empty": np.zeros(0, np.float32),
    "one": np.array([3.25], np.float32),
    "qat2": _qat(GAUSS, 2),
    "qat4": _qat(GAUSS, 4),
    "qat8": _qat(GAUSS, 8),
    "palette": RNG.choice(RNG.standard_normal(16).astype(np.float32), 500),
    "palette_signed_zero": np.array([0.0, -0.0, 1.5, 0.0, -0.0], np.float32),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_roundtrip_every_code(name):
    v = CASES[name]
    cands = _roundtrip(v)
    for always in ("raw", "zstd", "lzma", "shuffle-zstd", "shuffle-lzma"):
        assert always in cands
    assert len(cands["raw"]) == 1 + 4 * v.size


def test_which_codes_apply():
    assert "uniform" in encode_candidates(CASES["qat4"])
    assert "uniform" not in encode_candidates(CASES["negzeros"])  # -0.0 is no level
    assert "uniform" not in encode_candidates(CASES["special"])
    assert "palette" in encode_candidates(CASES["palette"])
    distinct = np.arange(1, 65538, dtype=np.uint32).view(np.float32)  # 65537 subnormals
    with pytest.raises(ValueError, match="none of the codes"):
        encode_tensor(distinct, codes=["palette"])
    blob = encode_tensor(distinct[1:], codes=["palette"])  # 65536: the largest palette
    assert code_name(blob) == "palette" and len(blob) == 1 + 2 + 4 * 65536 + 1 + 65536 * 2
    assert "palette" not in encode_candidates(CASES["empty"])
    assert code_name(encode_tensor(CASES["qat4"])) == "uniform"


@pytest.mark.parametrize("q", [2, 4, 8])
def test_exact_uniform_finds_the_qat_scale(q):
    w = CASES[f"qat{q}"]
    got_q, scale, levels = exact_uniform(w)
    w_t = torch.from_numpy(GAUSS)
    want_scale = np.float32(w_t.abs().amax().item() / (2 ** (q - 1) - 1))
    assert got_q == q and np.float32(scale) == want_scale
    assert np.abs(levels).max() == 2 ** (q - 1) - 1
    back = (levels.astype(np.float64) * scale).astype(np.float32)
    assert np.array_equal(back.view(np.uint32), _bits(w))


def test_exact_uniform_edge_cases():
    q, scale, levels = exact_uniform(np.zeros(4, np.float32))
    assert (q, scale) == (2, 0.0) and not levels.any()
    assert exact_uniform(np.zeros(0, np.float32)) is None
    assert exact_uniform(np.array([1.0, -0.0], np.float32)) is None
    assert exact_uniform(np.array([1.0, np.nan], np.float32)) is None
    assert exact_uniform(np.array([1.0, 0.3], np.float32)) is None
    with pytest.raises(TypeError, match="float32"):
        exact_uniform(np.zeros(3))


@settings(max_examples=150, deadline=None)
@given(q=st.integers(2, 12), n=st.integers(1, 300), kind=st.sampled_from(["normal", "t", "tiny"]),
       seed=st.integers(0, 2**32 - 1))
def test_exact_uniform_inverts_quantize_weight(q, n, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        w = rng.standard_normal(n) * 0.05
    elif kind == "t":
        w = rng.standard_t(2, n)
    else:
        w = rng.standard_normal(n) * 1e-30
    wq = _qat(w.astype(np.float32), q)
    found = exact_uniform(wq)
    assert found is not None
    got_q, scale, levels = found
    assert got_q <= q and np.abs(levels).max() <= 2 ** (got_q - 1) - 1
    assert np.array_equal((levels * np.float64(scale)).astype(np.float32).view(np.uint32),
                          wq.view(np.uint32))
    if got_q == q and wq.any():
        top = np.float32(np.abs(w.astype(np.float32)).max())
        assert np.float32(scale) == np.float32(top / np.float32(2 ** (q - 1) - 1))
    _roundtrip(wq)


@settings(max_examples=60, deadline=None)
@given(v=arrays(np.float32, st.integers(0, 40)))
def test_encode_tensor_is_the_shortest_candidate(v):
    cands = _roundtrip(v)
    best = encode_tensor(v)
    shortest = min(len(b) for b in cands.values())
    assert len(best) == shortest
    first = next(name for name in TENSOR_CODES if len(cands.get(name, b"")) == shortest
                 and name in cands)
    assert code_name(best) == first
    assert encode_tensor(v, codes=["raw", "zstd"]) == min(
        (cands["raw"], cands["zstd"]), key=len)


@pytest.mark.parametrize("q", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_uniform_fixed_length_closed_form(q, n):
    """mode, q, scale, sub-mode, then ceil(q n / 8) bytes of levels."""
    qmax = 2 ** (q - 1) - 1
    levels = RNG.integers(-qmax, qmax + 1, n)
    levels[0] = qmax
    v = (levels * np.float64(np.float32(0.01))).astype(np.float32)
    blob = encode_candidates(v)["uniform"]
    got = blob[1]
    assert got == (q if n > 1 else 2)  # one value is level 1 at q = 2
    if blob[6] == 0:
        assert len(blob) == 7 + (got * n + 7) // 8
    assert len(blob) <= 7 + (got * n + 7) // 8  # fixed width is one of the choices
    if n == 1000 and q >= 8:  # uniform levels: log2(2**q - 1) ~ q, no model beats q bits
        assert blob[6] == 0


def test_golden_bytes():
    """The worked example of docs/tensor-codes.md."""
    v = np.array([0.75, -0.25, 0.75, 0.0], np.float32)
    blob = encode_tensor(v)
    assert blob == bytes.fromhex("05 03 0000803e 00 cb30")
    assert encode_candidates(v)["raw"] == bytes.fromhex("00 0000403f 000080be 0000403f 00000000")
    assert np.array_equal(decode_tensor(blob, 4, np.empty(4, np.float32)), v)


def test_errors_of_the_caller():
    with pytest.raises(TypeError):
        encode_tensor(np.zeros(3, np.float64))
    with pytest.raises(ValueError, match="tensor code"):
        encode_tensor(np.zeros(3, np.float32), codes=["gzip"])
    with pytest.raises(ValueError, match="'raw'"):
        encode_tensor(np.array([0.3, np.nan], np.float32), codes=["uniform"])
    blob = encode_tensor(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="out"):
        decode_tensor(blob, 3, np.empty(4, np.float32))
    with pytest.raises(ValueError, match="numel"):
        decode_tensor(blob, -1)


def test_malformed_basics():
    for blob in (b"", b"\x07", b"\xff"):
        with pytest.raises(CodecError):
            decode_tensor(blob, 0)
    v = CASES["qat4"]
    for name, blob in encode_candidates(v).items():
        for bad in (blob + b"\x00", blob[:-1]):
            with pytest.raises(CodecError):
                decode_tensor(bad, v.size)
        with pytest.raises(CodecError):
            decode_tensor(blob, v.size - 1)
        if name != "uniform" or blob[6] < 2:  # a parametric ANS payload does not pin numel
            with pytest.raises(CodecError):
                decode_tensor(blob, v.size + 1)


def _uniform_categorical(counts: list[int], q: int = 2) -> bytes:
    bw = BitWriter()
    bw.write_elias([1, len(counts)], "delta")
    bw.write_elias(np.array(counts) + 1, "delta")
    return bytes([5, q]) + np.float32(1.0).tobytes() + b"\x01" + bw.getvalue()


def test_huge_claims_fail_before_allocating():
    tracemalloc.start()
    try:
        with pytest.raises(CodecError, match="exceed"):
            decode_tensor(_uniform_categorical([2**40, 0, 1]), 10)
        for blob in (b"\x00" + bytes(16), b"\x05\x08" + bytes(4) + b"\x00" + bytes(8),
                     b"\x06\xff\xff" + bytes(64), encode_tensor(np.zeros(4, np.float32),
                                                                codes=["zstd"])):
            with pytest.raises(CodecError):
                decode_tensor(blob, 2**40)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 24


FUZZ_SOURCES = [encode_candidates(CASES[k]) for k in ("qat4", "palette", "one", "zeros")]
FUZZ_BLOBS = [(blob, CASES[k].size) for k, c in zip(("qat4", "palette", "one", "zeros"),
                                                     FUZZ_SOURCES) for blob in c.values()]
FUZZ_BLOBS += [(encode_tensor(CASES["qat8"][:300], codes=["uniform"]), 300)]


def _mutate(data: st.DataObject, blob: bytes) -> bytes:
    b = bytearray(blob)
    op = data.draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
    at = data.draw(st.integers(0, max(len(b) - 1, 0)))
    if op == "flip" and b:
        b[at] ^= 1 << data.draw(st.integers(0, 7))
    elif op == "set" and b:
        b[at] = data.draw(st.integers(0, 255))
    elif op == "truncate":
        del b[at:]
    elif op == "insert":
        b[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    elif b:
        del b[at]
    return bytes(b)


@settings(max_examples=2500, deadline=None)
@given(data=st.data())
def test_fuzz_malformed_blobs(data):
    blob, numel = data.draw(st.sampled_from(FUZZ_BLOBS))
    for _ in range(data.draw(st.integers(1, 3))):
        blob = _mutate(data, blob)
    numel = data.draw(st.sampled_from([numel, numel, max(numel - 1, 0), numel + 1]))
    out = np.empty(numel, np.float32)
    try:
        assert decode_tensor(blob, numel, out) is out
    except CodecError:
        return
    assert decode_tensor(blob, numel) is None  # what decodes also checks
