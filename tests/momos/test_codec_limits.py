"""Decoding a .momos stream never allocates more than its bytes (and ``max_numel``) allow:
decompression bombs, huge declared mosaics and low-level failures all give a quick
CodecError with bounded memory, in version 1 streams and in version 2 ones (whose stored
tensors may use every tensor code, fuzzed here). Also: MoMos.project refuses a
meta-device module."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import zstandard
from hypothesis import HealthCheck, given, settings
from stream_edits import EDITS, apply_edits, reseal
from torch import nn

from kcomplex.bitstream import BitWriter
from momos import codec, encoder
from momos.blocks import layout_of
from momos.codec import CodecError, decode, encode, stream_info
from momos.projection import MoMos
from momos.qat import quantize_weight
from momos.tensorcode import TENSOR_CODES, encode_tensor

resource = pytest.importorskip("resource")

#: Peak RSS growth allowed while a hostile stream is refused, and seconds for it: both
#: generous for a loaded 2-core machine, far below what the streams declare (1-8 GiB).
MAX_GROWTH_MIB = 200
MAX_SECONDS = 15

# Runs one decode in a fresh interpreter and reports its peak RSS growth. The address
# space is capped 5 GiB above the interpreter's (a 2^30-weight output may be reserved, not
# touched) so that a regression fails the test instead of swapping the machine; a
# MemoryError under the cap is reported as such.
_MEASURE = r"""
import json, resource, sys, time
from momos.codec import CodecError, decode, stream_info
data = open(sys.argv[1], "rb").read()
fn = {"decode": decode, "stream_info": stream_info}[sys.argv[2]]
kwargs = {"max_numel": int(sys.argv[3])} if len(sys.argv) > 3 else {}
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (5 << 30), resource.RLIM_INFINITY))
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
error = cause = None
try:
    fn(data, **kwargs)
except CodecError as exc:
    error, cause = str(exc), type(exc.__cause__).__name__ if exc.__cause__ else None
except MemoryError:
    cause = "MemoryError"
print(json.dumps({"error": error, "cause": cause, "seconds": time.perf_counter() - t0,
                  "growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024}))
"""


def _measure(tmp_path, data: bytes, fn: str = "decode", max_numel: int | None = None) -> dict:
    path = tmp_path / "stream.momos"
    path.write_bytes(data)
    args = [sys.executable, "-c", _MEASURE, str(path), fn]
    if max_numel is not None:
        args.append(str(max_numel))
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _reseal(body: bytes, version: int = 1) -> bytes:
    return reseal(body, version)


def _stream(pooled, leftovers=(), *, s=1, k=1, bank=(0.5,), mosaic=b"", counts=None,
            payload=b"", version=1) -> bytes:
    """A stream written field by field (docs/format.md), q = 32: `pooled` as (name, shape),
    `leftovers` as (name, shape, mode, blob) (version 1: mode 0 raw, 1 zstd; version 2:
    mode ignored, blob a tensor code); coded when `counts` is given."""
    bw = BitWriter()
    bw.write_elias([len(pooled) + 1, len(leftovers) + 1], "delta")
    post = [1] if version == 2 else []  # version 2: no post-quantization of pooled ones
    for i, (name, shape) in enumerate([*pooled, *((n, sh) for n, sh, _, _ in leftovers)]):
        bw.write_elias([len(name) + 1], "delta")
        for b in name.encode():
            bw.write(b, 8)
        bw.write_elias([len(shape) + 1, *(d + 1 for d in shape), 1,
                        *(post if i < len(pooled) else [])], "delta")
    if pooled or version == 1:
        bw.write_elias([s + 1, k + 1, 33], "delta")
        bw.write(int(counts is not None), 1)
        if counts is not None:
            bw.write_elias([c + 1 for c in counts] + [len(payload) // 4 + 1], "delta")
    else:
        bank = ()
    for _, _, mode, blob in leftovers:
        if version == 1:
            bw.write(mode, 1)
        bw.write_elias([len(blob) + 1], "delta")
    return _reseal(b"".join([bw.getvalue(), np.asarray(bank, "<f4").tobytes(),
                             payload if counts is not None else mosaic,
                             *(blob for *_, blob in leftovers)]), version)


_ZSTD = bytes([TENSOR_CODES.index("zstd")])  # the mode byte of a version 2 zstd blob


def _rle_frame(n: int, content_size: bool = True) -> bytes:
    """A valid zstd frame of `n` zero bytes made of 4-byte RLE blocks (128 KiB each)."""
    header = (b"\xe0" + n.to_bytes(8, "little")) if content_size else b"\x00\x38"
    blocks = []
    while n:
        size = min(n, 1 << 17)
        n -= size
        blocks.append(((size << 3) | 2 | (n == 0)).to_bytes(3, "little") + b"\x00")
    return b"\x28\xb5\x2f\xfd" + header + b"".join(blocks)


def _assert_refused(result: dict, match: str) -> None:
    assert result["error"] is not None and match in result["error"], result
    assert result["cause"] is None, result  # refused by a check, not by running out
    assert result["growth_mib"] < MAX_GROWTH_MIB, result
    assert result["seconds"] < MAX_SECONDS, result


# -- zstd leftovers -------------------------------------------------------------------


def test_rle_frame_is_a_real_zstd_frame():
    frame = _rle_frame(300_000)
    assert zstandard.ZstdDecompressor().decompress(frame) == bytes(300_000)
    data = _stream([("w", (1,))], [("b", (75_000,), 1, frame)])
    assert torch.equal(decode(data)["b"], torch.zeros(75_000))


def test_zstd_frame_declaring_1_gib_is_refused_before_inflating(tmp_path):
    frame = _rle_frame(1 << 30)  # 32 KiB declaring 1 GiB, for a tensor of 8 bytes
    assert zstandard.frame_content_size(frame) == 1 << 30
    data = _stream([("w", (1,))], [("b", (2,), 1, frame)])
    assert len(data) < 33_000
    _assert_refused(_measure(tmp_path, data), "declares 1073741824 bytes, its shape needs 8")


@pytest.mark.parametrize("pooled", [[], [("w", (1,))]])
def test_v2_zstd_blob_declaring_1_gib_is_refused(tmp_path, pooled):
    frame = _rle_frame(1 << 30)
    data = _stream(pooled, [("b", (2,), 0, _ZSTD + frame)], version=2)
    assert len(data) < 33_000
    result = _measure(tmp_path, data)
    assert result["error"] is not None and result["cause"] is None, result
    assert result["growth_mib"] < MAX_GROWTH_MIB and result["seconds"] < MAX_SECONDS, result
    unsized = _stream(pooled, [("b", (2,), 0, _ZSTD + _rle_frame(1 << 30, False))], version=2)
    result = _measure(tmp_path, unsized)
    assert result["error"] is not None and result["cause"] is None, result
    assert result["growth_mib"] < MAX_GROWTH_MIB and result["seconds"] < MAX_SECONDS, result


def test_v2_blob_too_short_for_a_huge_shape_is_refused(tmp_path):
    """A 2^26-weight stored tensor whose blob is a few bytes: refused without touching
    the 256 MiB the shape would need."""
    raw = encode_tensor(np.arange(64, dtype=np.float32), codes=["raw"])
    for blob in (raw, _ZSTD + bytes(8), b"\x00" * 9):
        data = _stream([], [("b", (1 << 26,), 0, blob)], version=2)
        result = _measure(tmp_path, data)
        assert result["error"] is not None and result["cause"] is None, (blob, result)
        assert result["growth_mib"] < MAX_GROWTH_MIB, result


def test_v2_one_value_palette_holds_only_its_output(tmp_path):
    """A one-value palette, like a k = 1 mosaic, validly describes any number of weights
    in a few bytes: 2^24 of them decode into the output and a bounded scratch."""
    blob = encode_tensor(np.zeros(64, np.float32))
    data = _stream([], [("b", (1 << 24,), 0, blob)], version=2)
    assert len(data) < 40
    full = _measure(tmp_path, data)
    assert full["error"] is None and full["growth_mib"] < 64 + 16, full
    info = _measure(tmp_path, data, "stream_info")
    assert info["error"] is None and info["growth_mib"] < 16, info
    _assert_refused(_measure(tmp_path, _stream([], [("b", (1 << 30,), 0, blob)], version=2)),
                    "pass a larger max_numel")


def test_zstd_frame_without_size_stops_at_its_shape(tmp_path):
    frame = _rle_frame(1 << 30, content_size=False)
    assert zstandard.frame_content_size(frame) == -1
    data = _stream([("w", (1,))], [("b", (2,), 1, frame)])
    _assert_refused(_measure(tmp_path, data), "holds more than the 8 bytes")


def test_zstd_blob_too_short_for_its_shape():
    frame = zstandard.ZstdCompressor().compress(bytes(64))
    data = _stream([("w", (1,))], [("b", (1 << 26,), 1, frame)])
    with pytest.raises(CodecError, match="cannot hold"):
        decode(data)


@pytest.mark.parametrize("tail", [b"\x00", _rle_frame(4)])
def test_zstd_data_after_the_frame(tail):
    frame = zstandard.ZstdCompressor().compress(bytes(8))
    data = _stream([("w", (1,))], [("b", (2,), 1, frame + tail)])
    with pytest.raises(CodecError, match="after its zstd frame"):
        decode(data)


def test_zstd_truncated_or_garbage_is_a_codec_error():
    frame = zstandard.ZstdCompressor().compress(np.arange(64, dtype="<f4").tobytes())
    for blob in [frame[:-3], frame[:4], b"\x28\xb5\x2f\xfd" + bytes(12), bytes(16)]:
        data = _stream([("w", (1,))], [("b", (64,), 1, blob)])
        with pytest.raises(CodecError):
            decode(data)
        with pytest.raises(CodecError):
            stream_info(data)


# -- the mosaic and max_numel ---------------------------------------------------------


def _coded_2_30(version: int = 1) -> bytes:
    """50 bytes (51 in version 2) declaring an ANS-coded mosaic of 2^30 blocks (two
    motifs, half each) whose payload is one word: it cannot decode to those counts."""
    return _stream([("w", (1 << 30,))], k=2, bank=(0.0, 1.0), counts=[1 << 29, 1 << 29],
                   payload=b"\x01\x02\x03\x04", version=version)


@pytest.mark.parametrize("version", [1, 2])
def test_coded_mosaic_of_2_30_blocks_exceeds_the_default_max_numel(version):
    data = _coded_2_30(version)
    assert len(data) <= 51
    with pytest.raises(CodecError, match="pass a larger max_numel"):
        decode(data)
    with pytest.raises(CodecError, match="pass a larger max_numel"):
        stream_info(data)


@pytest.mark.parametrize("fn, version", [("decode", 1), ("stream_info", 1), ("decode", 2)])
def test_coded_mosaic_of_2_30_blocks_fails_fast_when_allowed(tmp_path, fn, version):
    result = _measure(tmp_path, _coded_2_30(version), fn, max_numel=1 << 30)
    _assert_refused(result, "does not decode to the motif counts")


@pytest.mark.parametrize("version", [1, 2])
def test_k1_with_2_30_weights_exceeds_the_default_max_numel(tmp_path, version):
    data = _stream([("w", (1 << 30,))], version=version)  # k = 1: the mosaic costs 0 bits
    assert len(data) < 40
    _assert_refused(_measure(tmp_path, data), "pass a larger max_numel")


@pytest.mark.parametrize("version", [1, 2])
def test_k1_decode_holds_only_its_output(tmp_path, version):
    """2^24 weights (64 MiB of float32) from a 32-byte stream: the decoder needs the
    output and a bounded scratch, not 8 bytes per weight more."""
    data = _stream([("w", (1 << 24,))], version=version)
    full = _measure(tmp_path, data)
    assert full["error"] is None, full
    assert full["growth_mib"] < 64 + 16, full
    info = _measure(tmp_path, data, "stream_info")
    assert info["error"] is None and info["growth_mib"] < 16, info
    assert stream_info(data)["n_weights"] == 1 << 24


def test_max_numel_is_an_integer():
    data = encode({}, (torch.zeros(1, 1), torch.zeros(2, dtype=torch.int64),
                       layout_of([("w", torch.zeros(2))], 1)))
    for bad in (2.0, True, "4", None):
        with pytest.raises(TypeError):
            decode(data, max_numel=bad)
    with pytest.raises(ValueError):
        stream_info(data, max_numel=-1)
    assert decode(data, max_numel=2)["w"].shape == (2,)
    with pytest.raises(CodecError, match="max_numel"):
        decode(data, max_numel=1)


def _mosaic_cases():
    rng = np.random.default_rng(0)
    skewed = np.where(rng.random(298) < 0.9, 0, rng.integers(1, 5, 298))
    skewed[-40:] = 0  # a coded tail of motif 0 decodes from the emptied coder
    return {"uniform": rng.integers(0, 8, 298), "skewed": skewed}


@pytest.mark.parametrize("chunk", [1, 3, 8, 1 << 18])
@pytest.mark.parametrize("q", [32, 16, 7, 5])
@pytest.mark.parametrize("case", ["uniform", "skewed"])
def test_chunked_decoding_matches(monkeypatch, chunk, q, case):
    """Chunk boundaries anywhere (in the bank, the mosaic, inside a tensor) change
    nothing: both mosaic modes, all bank widths (at q = 7 a bank quantized at 6 bits is
    stored exactly; at q = 5 this one decodes as quantize_weight(bank, 5)), blocks not
    byte-aligned, a post-quantized tensor."""
    monkeypatch.setattr(codec, "_CHUNK", chunk)
    mosaic = torch.from_numpy(_mosaic_cases()[case])
    bank = torch.tensor([[0.0, 0.0, 0.0], [0.5, -1.0, 2.0], [1.5, 0.25, -0.5],
                         [-2.0, 1.0, 0.75], [3.0, -0.125, 1.0], [0.0, 4.0, -4.0],
                         [1.0, 1.0, 1.0], [-0.5, 0.5, -0.25]])
    shapes = {"a": (7, 11), "b": (5, 3, 53), "c": (20,)}  # 77 + 795 + 20 weights, s = 3
    layout = layout_of([(n, torch.zeros(sh)) for n, sh in shapes.items()], 3)
    left = {"bn": torch.arange(1000, dtype=torch.float32) % 7, "r": torch.randn(5)}
    if q == 7:
        bank = quantize_weight(bank, 6)  # not quantize_weight(bank, 7): exact at 6 bits
        assert not torch.equal(quantize_weight(bank, 7), bank)
    data = encode(left, (bank, mosaic, layout), q=q, post_quantize={"b": 3})
    assert stream_info(data)["mosaic_coded"] == (case == "skewed")
    out = decode(data)
    if q == 5:
        bank = quantize_weight(bank, q)
    flat = bank[mosaic].reshape(-1)
    for sp in layout.spans:
        want = flat[3 * sp.start:3 * sp.start + sp.numel].reshape(shapes[sp.name])
        if sp.name == "b":
            want = quantize_weight(want, 3)
        assert torch.equal(out[sp.name].view(torch.int32), want.view(torch.int32)), sp.name
    for name, t in left.items():
        assert torch.equal(out[name], t)


def test_corrupt_coded_streams_are_codec_errors():
    """Every bit flip of a stream with an ANS mosaic and a zstd leftover: CodecError or
    a clean decode, never another exception."""
    mosaic = torch.from_numpy(_mosaic_cases()["skewed"])
    bank = torch.randn(8, 3)
    layout = layout_of([("w", torch.zeros(894))], 3)
    data = encode({"bn": torch.zeros(300)}, (bank, mosaic, layout))
    assert stream_info(data)["mosaic_coded"]
    body, rng = data[18:], np.random.default_rng(1)
    for _ in range(1500):
        b = bytearray(body)
        b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        for fn in (decode, stream_info):
            try:
                fn(_reseal(bytes(b)))
            except CodecError:
                pass


def test_fixed_mosaic_padding_must_be_zero():
    data = _stream([("w", (3,))], k=2, bank=(0.0, 1.0), mosaic=b"\xa0")
    assert decode(data)["w"].tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(CodecError, match="nonzero padding"):
        decode(_stream([("w", (3,))], k=2, bank=(0.0, 1.0), mosaic=b"\xa1"))
    with pytest.raises(CodecError, match="index out of range"):
        decode(_stream([("w", (3,))], k=3, bank=(0.0, 1.0, 2.0), mosaic=b"\x30"))


# -- version 2 streams with every tensor code, fuzzed ---------------------------------


def _every_code() -> dict[str, torch.Tensor]:
    """One stored tensor per tensor code, its blob forced to that code."""
    rng = np.random.default_rng(3)
    levels = quantize_weight(torch.from_numpy(rng.standard_normal(40).astype(np.float32)), 4)
    palette = np.float32([0.3, -1.7, 2.25])[rng.integers(0, 3, 50)]
    values = {"uniform": levels.numpy(), "palette": palette}
    return {code: torch.from_numpy(values.get(code, np.tile(
        rng.standard_normal(4).astype(np.float32), 6))) for code in TENSOR_CODES}


@pytest.fixture(scope="module")
def every_code_stream():
    """A version 2 stream with a post-quantized pool (exact q = 6 bank, coded mosaic) and
    one stored tensor of each tensor code (the encoder forced to it), and its weights."""
    stored = _every_code()
    mosaic = torch.from_numpy(_mosaic_cases()["skewed"][:60])
    layout = layout_of([("w", torch.zeros(9, 20))], 3)
    torch.manual_seed(0)
    bank = quantize_weight(torch.randn(8, 3), 6)
    forced = iter(TENSOR_CODES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(encoder, "encode_tensor",
                   lambda values: encode_tensor(values, codes=[next(forced)]))
        data = encode(stored, (bank, mosaic, layout), q=6, post_quantize={"w": 3})
    want = {"w": quantize_weight(bank[mosaic].reshape(9, 20), 3), **stored}
    return data, want


def _same(out: dict, want: dict) -> bool:
    return list(out) == list(want) and all(
        torch.equal(out[n].view(torch.int32), t.view(torch.int32)) for n, t in want.items())


def test_every_code_stream_round_trips(every_code_stream):
    data, want = every_code_stream
    info = stream_info(data)
    assert set(info["codes"]) == set(TENSOR_CODES) and info["mosaic_coded"]
    assert sum(info["codes"].values()) == info["leftover_bits"]
    assert info["total_bits"] == 8 * len(data)
    assert _same(decode(data), want)


@settings(max_examples=1500, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(edits=EDITS)
def test_fuzz_every_code_stream(every_code_stream, edits):
    """Corruptions of a v2 stream with every tensor code: CodecError, unless the edits
    cancel out, and then the very same weights."""
    data, want = every_code_stream
    corrupt = apply_edits(data, edits)
    try:
        out = decode(corrupt)
    except CodecError:
        return
    assert corrupt == data and _same(out, want)


@settings(max_examples=1500, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(edits=EDITS)
def test_fuzz_every_code_stream_behind_a_valid_crc(every_code_stream, edits):
    """The same corruptions of the body, resealed with a correct length and CRC: the
    parser and every tensor decoder give CodecError or float32 tensors of the shapes the
    header declares, never another exception."""
    data, _ = every_code_stream
    corrupt = _reseal(apply_edits(data[18:], edits), 2)
    for fn in (decode, stream_info):
        try:
            out = fn(corrupt)
        except CodecError:
            continue
        if fn is decode:
            info = stream_info(corrupt)
            assert sum(t.numel() for t in out.values()) == info["n_weights"]
            assert all(t.dtype == torch.float32 for t in out.values())


# -- MoMos.project on the meta device -------------------------------------------------


def test_project_refuses_a_meta_module():
    with torch.device("meta"):
        model = nn.Linear(4, 3)
    mm = MoMos(s=2, k=3, seed=0)
    state = mm._generator.get_state()
    with pytest.raises(ValueError, match="meta device.*to_empty"):
        mm.project(model)
    assert mm.motifs is None and mm.mosaic is None and mm.layout is None
    assert torch.equal(mm._generator.get_state(), state)  # nothing drawn
    mixed = {"a": torch.zeros(4), "b": torch.empty(4, device="meta")}
    with pytest.raises(ValueError, match="'b' is on the meta device"):
        MoMos(s=2, k=2, seed=0).project(mixed)
    model.to_empty(device="cpu")
    with torch.no_grad():
        model.weight.copy_(torch.arange(12.0).reshape(3, 4))
        model.bias.zero_()
    assert MoMos(s=2, k=3, seed=0).project(model).k == 3
