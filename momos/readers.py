"""Readers that decode one section of a .momos stream in bounded steps.

The fixed-width and the ANS-coded mosaic are read `n` indices at a time, and a zstd
leftover is checked and inflated a few hundred compressed bytes at a time, so the
decoder's scratch memory does not grow with what a (possibly hostile) stream declares.
"""

from __future__ import annotations

import constriction
import numpy as np
import zstandard

from kcomplex.bitstream import BitReader
from kcomplex.mdl import categorical_model

from .sections import CodecError

__all__ = ["CodedMosaic", "FixedMosaic", "check_zstd", "inflate"]

#: Compressed bytes fed to zstd per step: a 4-byte RLE block inflates to 128 KiB, so one
#: step yields at most about 8 MiB, checked against the expected size before the next.
_ZSTD_PIECE = 256
_ZSTD_MAX_RATIO = 1 << 15


class FixedMosaic:
    """The fixed-width mosaic: `m` indices below `k` from bit `offset` of `body` (which
    holds them: the section lengths are checked first), read `n` at a time."""

    def __init__(self, body: bytes, offset: int, m: int, k: int) -> None:
        self.width, self.k = (k - 1).bit_length(), k
        self.reader = BitReader(body, offset + m * self.width)
        self.reader.pos = offset
        self.body = body

    def take(self, n: int) -> np.ndarray:
        """The next `n` indices (int64); CodecError for one out of range."""
        idx = self.reader.read_fields(n, self.width)
        if idx.size and int(idx.max()) >= self.k:
            raise CodecError("corrupt mosaic: an index out of range")
        return idx

    def finish(self) -> None:
        """Check the padding to the byte after the last index."""
        end = self.reader.n_bits
        if end % 8 and self.body[end // 8] & (0xFF >> (end % 8)):
            raise CodecError("corrupt mosaic: nonzero padding")


class CodedMosaic:
    """The ANS-coded mosaic, decoded `n` indices at a time; it fails as soon as the payload
    cannot give the header's counts, not after decoding all `m` symbols."""

    def __init__(self, payload: bytes, counts: np.ndarray) -> None:
        self.present = np.flatnonzero(counts)
        self.want = counts[self.present]
        self.got = np.zeros_like(self.want)
        self.left = int(counts.sum())
        self.coder = self.model = None
        self.constant: int | None = 0  # the rank every further symbol has, once known
        if self.present.size < 2:
            if payload:
                raise CodecError("corrupt mosaic: a payload for fewer than two motifs")
            return
        # The model of kcomplex.mdl.ans_encode (docs/format.md).
        self.model = categorical_model(self.want)
        self.coder = constriction.stream.stack.AnsCoder(
            np.frombuffer(payload, "<u4").astype(np.uint32))
        self.constant = None

    def take(self, n: int) -> np.ndarray:
        """The next `n` indices (int64); CodecError as soon as they exceed the counts."""
        if self.constant is None:
            ranks = self.coder.decode(self.model, n).astype(np.int64)
        else:
            ranks = np.full(n, self.constant, dtype=np.int64)
        self.got += np.bincount(ranks, minlength=self.present.size)
        self.left -= n
        if (self.got > self.want).any():
            raise CodecError("corrupt mosaic: the payload does not decode to the motif counts")
        if self.constant is None and self.left:
            self._probe()
        return self.present[ranks]

    def _probe(self) -> None:
        """Detect a decoder that can no longer change: no words left and a state that
        decoding leaves as is (a deterministic decoder then repeats its symbol forever), so
        a corrupt payload fails now instead of after the remaining symbols."""
        pos = self.coder.pos()
        if pos[0]:
            return
        probe = self.coder.clone()
        rank = int(probe.decode(self.model, 1)[0])
        if probe.pos() != pos:
            return
        self.constant = rank
        final = self.got.copy()
        final[rank] += self.left
        if not self.coder.is_empty() or not np.array_equal(final, self.want):
            raise CodecError("corrupt mosaic: the payload does not decode to the motif counts")

    def finish(self) -> None:
        """Check that the payload gave exactly the counts and is used up."""
        if not np.array_equal(self.got, self.want) or (
                self.coder is not None and not self.coder.is_empty()):
            raise CodecError("corrupt mosaic: the payload does not decode to the motif counts")


def check_zstd(blob: bytes, want: int, name: str) -> None:
    """Before anything is inflated: `blob` must be able to hold `want` bytes, and a frame
    that declares its size must declare `want`.

    Raises
    ------
    CodecError
        Naming the leftover `name`, if not.
    """
    if want > _ZSTD_MAX_RATIO * len(blob):
        raise CodecError(f"corrupt leftover {name!r}: {len(blob)} zstd bytes cannot hold "
                         f"the {want} bytes of its shape")
    try:
        declared = zstandard.frame_content_size(blob)
    except zstandard.ZstdError as exc:
        raise CodecError(f"corrupt leftover {name!r}: not a zstd frame ({exc})") from exc
    if declared not in (-1, want):  # -1: a frame without its content size
        raise CodecError(f"corrupt leftover {name!r}: its zstd frame declares {declared} "
                         f"bytes, its shape needs {want}")


def inflate(blob: bytes, want: int, name: str, out: np.ndarray | None) -> None:
    """Decompress the one zstd frame `blob` (checked by :func:`check_zstd`) into the
    bytes of `out` (or only check it), in small steps, so that no more than `want` bytes
    (plus one step) are ever produced.

    Raises
    ------
    CodecError
        Naming the leftover `name`, if the frame does not hold exactly `want` bytes.
    """
    dobj, got = zstandard.ZstdDecompressor().decompressobj(), 0
    sink = None if out is None else out.view(np.uint8)
    for i in range(0, len(blob), _ZSTD_PIECE):
        chunk = dobj.decompress(blob[i:i + _ZSTD_PIECE])
        if got + len(chunk) > want:
            raise CodecError(f"corrupt leftover {name!r}: its zstd frame holds more than "
                             f"the {want} bytes of its shape")
        if sink is not None:
            sink[got:got + len(chunk)] = np.frombuffer(chunk, np.uint8)
        got += len(chunk)
        if dobj.eof:
            if dobj.unused_data or i + _ZSTD_PIECE < len(blob):
                raise CodecError(f"corrupt leftover {name!r}: data after its zstd frame")
            break
    if not dobj.eof or got != want:
        raise CodecError(f"corrupt leftover {name!r}: {got} bytes for the {want} of its "
                         "shape (or a truncated zstd frame)")
