"""Tests for kcomplex.bitstream against independent brute-force computations.

Elias codewords are built as Python strings from ``bin(n)``; streams are compared with
the bit strings of their bytes.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcomplex import bitstream, mdl
from kcomplex.bitstream import (
    ELIAS_CODES,
    BitReader,
    BitWriter,
    decode_elias,
    elias_delta_length,
    elias_gamma_length,
    elias_omega_length,
    encode_elias,
    pack_fields,
    unpack_fields,
)

# --- oracles --------------------------------------------------------------------------


def gamma_str(n: int) -> str:
    b = bin(n)[2:]
    return "0" * (len(b) - 1) + b


def delta_str(n: int) -> str:
    b = bin(n)[2:]
    return gamma_str(len(b)) + b[1:]


def omega_str(n: int) -> str:
    code = "0"
    while n > 1:
        b = bin(n)[2:]
        code, n = b + code, len(b) - 1
    return code


ORACLE = {"gamma": gamma_str, "delta": delta_str, "omega": omega_str}
LENGTH = {"gamma": elias_gamma_length, "delta": elias_delta_length, "omega": elias_omega_length}


def bitstring(data: bytes, n_bits: int) -> str:
    return "".join(format(b, "08b") for b in data)[:n_bits]


elias_values = st.one_of(st.integers(1, 2**63 - 1), st.integers(1, 300),
                         st.sampled_from([1, 2, 3, 2**40, 2**62, 2**63 - 1]))


def test_docstring_examples_run():
    result = doctest.testmod(bitstream, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_mdl_still_exports_the_bit_streams():
    """kcomplex.mdl re-exports what moved here, as the same objects."""
    for name in bitstream.__all__:
        assert name in mdl.__all__ and getattr(mdl, name) is getattr(bitstream, name)


# --- integer codes ----------------------------------------------------------------------


@pytest.mark.parametrize("code", list(ELIAS_CODES))
def test_elias_lengths_match_strings(code):
    ns = [*range(1, 1100), 2**31 - 1, 2**31, 2**40, 2**53 + 1, 2**62, 2**63 - 1]
    expected = [len(ORACLE[code](n)) for n in ns]
    assert [LENGTH[code](n) for n in ns] == expected
    got = LENGTH[code](np.array(ns, dtype=np.int64))
    assert got.dtype == np.int64 and got.tolist() == expected
    assert LENGTH[code](np.array(ns, dtype=np.uint64).reshape(-1, 1)).shape == (len(ns), 1)
    # Near 2^64 a float log2 would round; the lengths stay exact.
    big = [2**64 - 1, 2**63, 2**63 + 1]
    assert LENGTH[code](np.array(big, dtype=np.uint64)).tolist() == [
        len(ORACLE[code](n)) for n in big
    ]
    assert LENGTH[code](2**200 + 5) == len(ORACLE[code](2**200 + 5))


@pytest.mark.parametrize("code", list(ELIAS_CODES))
def test_elias_lengths_reject_bad_input(code):
    for bad in (0, -3, np.array([1, 0])):
        with pytest.raises(ValueError, match=">= 1"):
            LENGTH[code](bad)
    with pytest.raises(TypeError, match="needs integers"):
        LENGTH[code](np.array([1.5]))


@pytest.mark.parametrize("code", list(ELIAS_CODES))
def test_encode_elias_matches_strings(code):
    values = [1, 2, 3, 4, 5, 17, 1000, 2**40, 2**63 - 1]
    data, n_bits = encode_elias(values, code)
    expected = "".join(ORACLE[code](v) for v in values)
    assert n_bits == len(expected) == sum(LENGTH[code](v) for v in values)
    assert len(data) == math.ceil(n_bits / 8)
    assert bitstring(data, 8 * len(data)) == expected + "0" * (-n_bits % 8)


@given(values=st.lists(elias_values, max_size=30), code=st.sampled_from(list(ELIAS_CODES)))
def test_elias_round_trip(values, code):
    data, n_bits = encode_elias(values, code)
    assert bitstring(data, n_bits) == "".join(ORACLE[code](v) for v in values)
    out = decode_elias(data, len(values), code)
    assert out.dtype == np.int64 and out.tolist() == values


@pytest.mark.parametrize("code", list(ELIAS_CODES))
def test_elias_round_trip_1e5(code):
    values = np.random.default_rng(1).geometric(1e-4, size=100_000)
    data, _ = encode_elias(values, code)
    np.testing.assert_array_equal(decode_elias(data, values.size, code), values)


@pytest.mark.parametrize("code", list(ELIAS_CODES))
def test_decode_malformed_raises(code):
    data, _ = encode_elias([5, 2**40, 7], code)
    with pytest.raises(ValueError, match="truncated"):
        decode_elias(data[:-2], 3, code)
    with pytest.raises(ValueError, match="truncated"):  # < 8 padding bits: < 8 codewords
        decode_elias(data, 3 + 8, code)
    for junk in (b"", b"\x00" * 50, b"\xff" * 50):  # 400 bits hold < 1000 codewords
        with pytest.raises(ValueError, match="truncated"):
            decode_elias(junk, 1000, code)


@settings(max_examples=50)
@given(data=st.binary(max_size=40), count=st.integers(0, 400),
       code=st.sampled_from(list(ELIAS_CODES)))
def test_decode_random_bytes_returns_or_raises(data, count, code):
    try:
        out = decode_elias(data, count, code)
    except ValueError:
        return
    assert out.size == count and (out >= 1).all()


@pytest.mark.parametrize("code", ["delta", "omega"])
def test_decode_huge_length_prefix_raises(code):
    """A prefix announcing a 2^60-bit value must fail on the length, not allocate it."""
    omega = b"V\xe8\x00\x00\x00\x00\x00\x10"
    data = omega if code == "omega" else b"\x00\x00\x00\x01" + b"\xff" * 8
    with pytest.raises(ValueError, match="truncated"):
        decode_elias(data, 2, code)


def test_decode_value_past_int64_raises():
    bits = gamma_str(2**63)
    data = int(bits + "0" * (-len(bits) % 8), 2).to_bytes(math.ceil(len(bits) / 8), "big")
    with pytest.raises(ValueError, match=">= 2\\*\\*63"):
        decode_elias(data, 1, "gamma")


def test_elias_argument_errors():
    with pytest.raises(ValueError, match="unknown code 'zeta'; valid: 'gamma', 'delta', 'omega'"):
        encode_elias([1], "zeta")
    with pytest.raises(ValueError, match="unknown code"):
        decode_elias(b"\x80", 1, "zeta")
    with pytest.raises(ValueError, match=">= 1"):
        encode_elias([3, 0])
    with pytest.raises(ValueError, match="< 2\\*\\*63"):
        encode_elias(np.array([2**63], dtype=np.uint64))
    with pytest.raises(TypeError, match="needs integers"):
        encode_elias([1.0])
    with pytest.raises(ValueError, match="count must be"):
        decode_elias(b"\x80", -1)
    assert encode_elias([]) == (b"", 0)


def test_bit_writer_reader_round_trip():
    w = BitWriter()
    w.write(0, 0)
    w.write(1, 1)
    w.write(2**64 - 1, 64)
    w.write_elias([7, 1], "delta")
    w.write(5, 3)
    assert w.n_bits == 1 + 64 + len(delta_str(7) + delta_str(1)) + 3
    data = w.getvalue()
    assert bitstring(data, w.n_bits) == "1" + "1" * 64 + delta_str(7) + delta_str(1) + "101"
    r = BitReader(data, w.n_bits)
    assert r.read(0) == 0 and r.read(1) == 1 and r.read(64) == 2**64 - 1
    assert (r.read_elias("delta"), r.read_elias("delta"), r.read(3)) == (7, 1, 5)
    assert r.pos == w.n_bits
    with pytest.raises(ValueError, match="truncated"):
        r.read(1)
    with pytest.raises(ValueError, match="does not fit"):
        w.write(8, 3)
    with pytest.raises(ValueError, match="does not fit"):
        w.write(0, 65)
    with pytest.raises(ValueError, match="n_bits"):
        BitReader(b"\x00", 9)


@settings(max_examples=60, deadline=None)
@given(width=st.integers(0, 57), offset=st.integers(0, 20), seed=st.integers(0, 2**16),
       count=st.sampled_from([0, 1, 7, 8, 9, 100, (1 << 16) + 3]))
def test_pack_unpack_fields_match_bit_writer(width, offset, seed, count):
    """pack_fields is BitWriter.write field by field; unpack_fields reads it back at any
    bit offset, also across the steps that bound their scratch memory."""
    values = np.random.default_rng(seed).integers(0, 1 << width, count, dtype=np.uint64)
    data = pack_fields(values, width)
    assert len(data) == -(-count * width // 8)
    if count <= 100:
        w = BitWriter()
        for v in values:
            w.write(int(v), width)
        assert data == w.getvalue()
    bits = np.unpackbits(np.frombuffer(data, np.uint8))[: count * width]
    shifted = np.packbits(np.concatenate([np.ones(offset, np.uint8), bits])).tobytes()
    got = unpack_fields(shifted, count, width, offset)  # behind `offset` one bits
    assert np.array_equal(got, values.astype(np.int64))
    r = BitReader(data + b"\xff")
    assert np.array_equal(r.read_fields(count, width), values.astype(np.int64))
    assert r.pos == count * width


def test_unpack_fields_at_bit_offsets():
    values = np.arange(50, dtype=np.int64) % 13
    for offset in range(17):
        w = BitWriter()
        w.write(0, offset)
        for v in values:
            w.write(int(v), 5)
        assert np.array_equal(unpack_fields(w.getvalue(), 50, 5, offset), values)
        r = BitReader(w.getvalue(), offset + 250)
        r.pos = offset
        assert np.array_equal(r.read_fields(50, 5), values) and r.pos == offset + 250
        with pytest.raises(ValueError, match="truncated"):
            r.read_fields(1, 1)


def test_pack_unpack_fields_errors():
    assert pack_fields([], 5) == b"" and pack_fields([3], 0) == b""
    assert pack_fields([2**64 - 1], 64) == b"\xff" * 8
    assert unpack_fields(b"", 4, 0).tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="lie in"):
        pack_fields([8], 3)
    with pytest.raises(ValueError, match="lie in"):
        pack_fields([-1], 3)
    with pytest.raises(TypeError, match="integers"):
        pack_fields([0.5], 3)
    with pytest.raises(ValueError, match="field width"):
        pack_fields([0], 65)
    with pytest.raises(ValueError, match="field width"):
        unpack_fields(b"\0" * 16, 1, 58)
    with pytest.raises(ValueError, match="truncated"):
        unpack_fields(b"\0", 2, 5)
    with pytest.raises(ValueError, match="truncated"):
        unpack_fields(b"\0", 1, 5, bit_offset=4)
