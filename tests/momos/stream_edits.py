"""Corruptions of .momos streams for the fuzz tests: one edit strategy, one way to apply
edits, one way to reseal a body behind a valid prefix (so the edits reach the parser)."""

from __future__ import annotations

import struct
import zlib

from hypothesis import strategies as st

#: One edit: (kind, position, argument); a flip's argument is the bit, 0..7.
EDIT = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
)
#: One to three edits.
EDITS = st.lists(EDIT, min_size=1, max_size=3)


def apply_edits(data: bytes, edits) -> bytes:
    """`data` with the edits applied in order (positions wrap around its length)."""
    b = bytearray(data)
    for kind, pos, arg in edits:
        if kind == "flip" and b:
            b[pos % len(b)] ^= 1 << arg
        elif kind == "set" and b:
            b[pos % len(b)] = arg
        elif kind == "truncate":
            del b[pos % (len(b) + 1):]
        elif kind == "insert":
            b.insert(pos % (len(b) + 1), arg)
    return bytes(b)


def reseal(body: bytes, version: int = 2) -> bytes:
    """A stream around `body` with a correct length and CRC."""
    return struct.pack("<5sBQI", b"MOMOS", version, 18 + len(body), zlib.crc32(body)) + body
