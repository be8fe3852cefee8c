"""Tests for kcomplex.compressors.

Oracles are the standard library called directly on byte strings built by hand (struct,
Python string ops), independent of the payload code under test.
"""

from __future__ import annotations

import bz2
import doctest
import gzip
import lzma
import math
import struct

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kcomplex import compressors
from kcomplex.compressors import (
    CODECS,
    PAYLOADS,
    compress,
    compressed_bits,
    compressed_bits_chunks,
    decompress,
)

finite32 = hnp.arrays(
    np.float32,
    st.integers(1, 300),
    elements=st.floats(-1e6, 1e6, width=32),
)


def _raw(w) -> bytes:
    """Little-endian float32 bytes, element by element with struct."""
    return b"".join(struct.pack("<f", float(x)) for x in np.asarray(w, np.float32).ravel())


def _sign_bits(w) -> bytes:
    """Sign bits (w > 0) MSB first, zero-padded, via a Python string of 0s and 1s."""
    s = "".join("1" if x > 0 else "0" for x in np.asarray(w, np.float32).ravel())
    s += "0" * (-len(s) % 8)
    return bytes(int(s[i : i + 8], 2) for i in range(0, len(s), 8))


def _oracle_payload(w, payload: str) -> bytes:
    raw = _raw(w)
    return {
        "float32": raw,
        "sign": _sign_bits(w),
        "sign_bytes": bytes(int(x > 0) for x in np.asarray(w, np.float32).ravel()),
        "shuffle": b"".join(raw[i::4] for i in range(4)),
    }[payload]


def _random(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def test_docstring_examples_run():
    result = doctest.testmod(compressors, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_registries():
    assert list(CODECS) == ["gzip", "bz2", "lzma", "zstd"]
    assert [CODECS[c].default_level for c in CODECS] == [9, 9, 9, 3]
    assert list(PAYLOADS) == ["float32", "sign", "sign_bytes", "shuffle"]


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_payload_layouts_match_hand_built_bytes(payload):
    w = np.array([1.5, -0.0, 0.0, -2.0, 3e-38, 7.0, -1e30, 2.0, 5.0], dtype=np.float32)
    got = PAYLOADS[payload](w).tobytes()
    assert got == _oracle_payload(w, payload)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 64, 1001])
def test_sign_payload_is_ceil_n_over_8_bytes(n):
    assert len(PAYLOADS["sign"](_random(n)).tobytes()) == math.ceil(n / 8)


def test_paper_defaults_equal_the_standard_library():
    w = _random(3000)
    raw = _raw(w)
    assert compress(w) == gzip.compress(raw, compresslevel=9, mtime=0)
    assert compress(w, "bz2") == bz2.compress(raw, 9)
    assert compress(w, "lzma") == lzma.compress(raw, preset=9)
    assert compressed_bits(w, "lzma") == 8 * len(lzma.compress(raw, preset=9))


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_round_trip_and_exact_bit_count(codec, payload):
    w = np.round(_random(1234, seed=3), 2)  # repeated values: something to compress
    data = compress(w, codec, payload=payload)
    assert decompress(data, codec) == _oracle_payload(w, payload)
    bits = compressed_bits(w, codec, payload=payload)
    assert type(bits) is float and bits == 8 * len(data)


@given(w=finite32, codec=st.sampled_from(["gzip", "bz2", "zstd"]))
def test_round_trip_property(w, codec):
    for payload in PAYLOADS:
        assert decompress(compress(w, codec, payload=payload), codec) == _oracle_payload(
            w, payload
        )


@pytest.mark.parametrize("codec", list(CODECS))
def test_deterministic(codec):
    w = _random(500)
    assert compress(w, codec) == compress(w.copy(), codec)
    assert compressed_bits(w, codec) == compressed_bits(w, codec)


def test_gzip_header_has_mtime_zero():
    data = compress(_random(10))
    assert data[:2] == b"\x1f\x8b" and data[4:8] == b"\x00\x00\x00\x00"


def test_zstd_frame_options():
    w = _random(1000)
    params = zstandard.get_frame_parameters(compress(w, "zstd"))
    assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert not params.has_checksum and params.dict_id == 0
    stream = zstandard.ZstdCompressor(
        level=3, write_content_size=False, write_checksum=False
    ).compressobj()
    assert compress(w, "zstd", level=3) == stream.compress(_raw(w)) + stream.flush()


@pytest.mark.parametrize(
    "codec, level", [("gzip", 0), ("gzip", 1), ("bz2", 1), ("lzma", 0), ("zstd", 1), ("zstd", 22)]
)
def test_levels_in_range(codec, level):
    w = _random(200)
    assert decompress(compress(w, codec, level), codec) == _raw(w)


@pytest.mark.parametrize(
    "codec, level", [("gzip", 10), ("gzip", -1), ("bz2", 0), ("lzma", 10), ("zstd", 0),
                     ("zstd", 23), ("gzip", 9.0), ("gzip", True), ("gzip", "9")]
)
def test_bad_level_rejected(codec, level):
    with pytest.raises(ValueError, match=f"{codec} level must be an integer in"):
        compressed_bits([1.0], codec, level)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="unknown codec 'brotli'.*'gzip', 'bz2', 'lzma', 'zstd'"):
        compressed_bits([1.0], "brotli")
    with pytest.raises(ValueError, match="unknown payload 'int8'.*'float32', 'sign'"):
        compressed_bits([1.0], payload="int8")
    with pytest.raises(ValueError, match="unknown codec"):
        decompress(b"", "rar")


def test_input_conversions():
    w = np.arange(-6, 6, dtype=np.float64).reshape(3, 4)
    expected = compressed_bits(w.astype(np.float32))
    assert compressed_bits(w.tolist()) == expected
    assert compressed_bits(w.astype(np.int32)) == expected
    assert compressed_bits(w.astype(np.float16)) == expected
    assert compressed_bits(w.astype(">f4")) == expected
    assert compressed_bits(np.asfortranarray(w)) == expected  # C order, whatever the layout
    assert compress(w.T) == compress(np.ascontiguousarray(w.T))
    readonly = w.copy()
    readonly.flags.writeable = False
    assert compressed_bits(readonly) == expected


def test_torch_tensor_input():
    torch = pytest.importorskip("torch")
    w = _random(100)
    t = torch.tensor(w, requires_grad=True)
    assert compress(t, "bz2") == compress(w, "bz2")
    assert compress(t.to(torch.bfloat16), "bz2", payload="sign") == compress(
        t.to(torch.bfloat16).float().detach().numpy(), "bz2", payload="sign"
    )


def test_input_not_modified():
    w = _random(64)
    before = w.copy()
    for payload in PAYLOADS:
        compress(w, "zstd", payload=payload)
    compressed_bits_chunks([w[:10], w[10:]], "gzip", payload="sign")
    np.testing.assert_array_equal(w, before)


@pytest.mark.parametrize("bad, match", [
    ([1.0, np.nan], "1 non-finite values \\(1 NaN, 0 Inf\\)"),
    ([np.inf, 1.0], "1 non-finite values \\(0 NaN, 1 Inf\\)"),
    ([1e300], "do not fit float32"),
    (np.zeros((0, 3)), "empty"),
])
def test_bad_values_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        compressed_bits(bad)


def test_non_real_rejected():
    with pytest.raises(TypeError, match="real numbers"):
        compressed_bits(np.array([1 + 2j]))


@pytest.mark.parametrize("codec", list(CODECS))
def test_corrupt_data_rejected(codec):
    data = compress(_random(100), codec)
    with pytest.raises(ValueError, match=f"corrupt or truncated {codec} data"):
        decompress(data[: len(data) // 2], codec)


# --- streaming ----------------------------------------------------------------------


def _split(w: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    return np.split(w, sorted(c % (w.size + 1) for c in cuts))


@settings(max_examples=10)
@given(w=finite32, cuts=st.lists(st.integers(0, 300), max_size=5),
       payload=st.sampled_from(["float32", "sign", "sign_bytes"]))
def test_streaming_equals_one_shot(w, cuts, payload):
    """bz2, lzma and gzip: streamed total == one-shot size of the concatenation, any cuts
    (sign: also cuts that are not multiples of 8)."""
    chunks = _split(w, cuts)
    for codec in ("gzip", "bz2", "lzma"):
        assert compressed_bits_chunks(chunks, codec, payload=payload) == compressed_bits(
            w, codec, payload=payload
        )


@given(w=finite32, cuts=st.lists(st.integers(0, 300), max_size=5),
       level=st.sampled_from([1, 6, 9]))
def test_gzip_stream_is_byte_identical(w, cuts, level):
    stream = CODECS["gzip"].stream(level)
    out = b"".join(stream.compress(c.view(np.uint8)) for c in _split(w, cuts)) + stream.flush()
    assert out == gzip.compress(_raw(w), compresslevel=level, mtime=0)


def test_zstd_stream_round_trips():
    w = np.round(_random(20000), 1)
    stream = CODECS["zstd"].stream(19)
    out = b"".join(stream.compress(c.view(np.uint8)) for c in np.array_split(w, 7))
    out += stream.flush()
    assert decompress(out, "zstd") == _raw(w)
    bits = compressed_bits_chunks(np.array_split(w, 7), "zstd", 19)
    assert type(bits) is float and bits == 8 * len(out)


def test_streaming_accepts_generators_and_empty_chunks():
    w = _random(100)
    gen = (w[i : i + 30] for i in range(0, 100, 30))
    assert compressed_bits_chunks(gen, "bz2") == compressed_bits(w, "bz2")
    parts = [w[:0], w[:50], np.empty(0, np.float32), w[50:]]
    assert compressed_bits_chunks(parts, "gzip", payload="sign") == compressed_bits(
        w, "gzip", payload="sign"
    )


def test_streaming_errors():
    with pytest.raises(NotImplementedError, match="'shuffle' cannot be streamed"):
        compressed_bits_chunks([_random(8)], payload="shuffle")
    with pytest.raises(ValueError, match="chunks are empty"):
        compressed_bits_chunks([np.empty(0), []])
    with pytest.raises(ValueError, match="chunk 1 contain 1 non-finite"):
        compressed_bits_chunks([[1.0], [np.nan]])
    with pytest.raises(ValueError, match="unknown codec"):
        compressed_bits_chunks([[1.0]], "snappy")
