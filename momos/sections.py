"""The itemization of a .momos stream, shared by its writer, its reader and its reports.

:class:`Sections` holds the bit length of every part of one stream (``docs/format.md``):
the encoder (:mod:`momos.encoder`) produces it with the bytes, the decoder
(:mod:`momos.decoder`) rebuilds it while parsing, and ``DescriptionLength`` and
``stream_info`` (:mod:`momos.codec`) are read from it, so the sizes are computed in one
place. The module also holds what the writer and the reader must agree on: the magic,
the versions, the prefix, the dtype codes, the post-quantization widths and
:class:`CodecError`.

Examples
--------
>>> sec = Sections(s=2, k=2, q=32, pooled=(PooledTensor("w", 6, 3),), stored=(),
...                header_field_bits=69, padding_bits=3, bank_field_bits=0,
...                bank_value_bits=128, mosaic_coded=False, mosaic_field_bits=0,
...                mosaic_value_bits=8)
>>> sec.header_bits, sec.total_bits, sec.m
(216, 352, 3)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import torch

__all__ = ["DTYPES", "MAGIC", "MAX_POST_Q", "PREFIX", "PREFIX_BITS", "VERSION", "VERSIONS",
           "CodecError", "PooledTensor", "Sections", "StoredTensor"]

MAGIC = b"MOMOS"
#: The version :mod:`momos.encoder` writes.
VERSION = 2
#: The versions :mod:`momos.decoder` reads.
VERSIONS = (1, 2)
#: magic, version, total length, CRC32 of the body
PREFIX = struct.Struct("<5sBQI")
PREFIX_BITS = 8 * PREFIX.size
#: The source dtypes a tensor record can name, by code (``docs/format.md``).
DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
#: The widest post-quantization of a pooled tensor (0 = none, else 2..MAX_POST_Q bits).
MAX_POST_Q = 31


class CodecError(ValueError):
    """Data that is not a valid MoMos stream (truncated, corrupted or foreign), or a
    model that this format cannot represent exactly."""


@dataclass(frozen=True)
class PooledTensor:
    """A tensor that the bank and mosaic encode: its name, weights, blocks and
    post-quantization width (0: none; else the decoder applies
    ``momos.qat.quantize_weight(t, post_q)``)."""

    name: str
    numel: int
    n_blocks: int
    post_q: int = 0


@dataclass(frozen=True)
class StoredTensor:
    """A tensor stored on its own: its name, weights, code (a ``momos.tensorcode`` code
    name; in a version 1 stream ``"raw"`` or ``"zstd"``) and the bits of its blob."""

    name: str
    numel: int
    code: str
    bits: int


@dataclass(frozen=True)
class Sections:
    """The bit length of every part of one stream, which add up to ``8 * len(data)``.

    The header's bit fields are split three ways: those of the bank (the q=16 kind bit
    or the q<16 scale: ``bank_field_bits``), those of a coded mosaic (its Elias-delta
    counts and payload size: ``mosaic_field_bits``) and the rest (``header_field_bits``:
    tensor counts and records, s, k, q, the mode bits, the blob lengths), then the
    ``padding_bits`` to the byte. ``bank_value_bits``, ``mosaic_value_bits`` and each
    stored tensor's ``bits`` are the byte-aligned sections after the header. A stream
    without pooled tensors has ``s = k = q = 0`` and no bank or mosaic bits.
    """

    s: int
    k: int
    q: int
    pooled: tuple[PooledTensor, ...]
    stored: tuple[StoredTensor, ...]
    header_field_bits: int
    padding_bits: int
    bank_field_bits: int
    bank_value_bits: int
    mosaic_coded: bool
    mosaic_field_bits: int
    mosaic_value_bits: int
    prefix_bits: int = PREFIX_BITS

    @property
    def m(self) -> int:
        """Blocks of the pool (indices of the mosaic)."""
        return sum(t.n_blocks for t in self.pooled)

    @property
    def header_bits(self) -> int:
        """Prefix, header fields other than the bank's and the mosaic's, and padding."""
        return self.prefix_bits + self.header_field_bits + self.padding_bits

    @property
    def bank_bits(self) -> int:
        """The bank: its header fields and its values."""
        return self.bank_field_bits + self.bank_value_bits

    @property
    def mosaic_bits(self) -> int:
        """The mosaic as stored: a coded one's header fields and its indices or payload."""
        return self.mosaic_field_bits + self.mosaic_value_bits

    @property
    def leftover_bits(self) -> int:
        """All stored tensors' blobs (the tensors MoMos did not pool)."""
        return sum(t.bits for t in self.stored)

    @property
    def total_bits(self) -> int:
        """The whole stream, ``8 * len(data)``."""
        return self.header_bits + self.bank_bits + self.mosaic_bits + self.leftover_bits

    @property
    def codes(self) -> dict[str, int]:
        """``{code name: bits of the stored tensors that use it}``, in order of first use."""
        out: dict[str, int] = {}
        for t in self.stored:
            out[t.code] = out.get(t.code, 0) + t.bits
        return out

    def info(self) -> dict:
        """The dict of ``momos.codec.stream_info``: ``s``, ``k``, ``q``, ``m``,
        ``mosaic_coded``, the tensor and weight counts, the five sizes in bits and
        ``codes``."""
        return {
            "s": self.s, "k": self.k, "q": self.q, "m": self.m,
            "mosaic_coded": self.mosaic_coded,
            "n_coded_tensors": len(self.pooled), "n_leftover_tensors": len(self.stored),
            "n_weights": sum(t.numel for t in (*self.pooled, *self.stored)),
            "header_bits": self.header_bits, "bank_bits": self.bank_bits,
            "mosaic_bits": self.mosaic_bits, "leftover_bits": self.leftover_bits,
            "total_bits": self.total_bits, "codes": self.codes,
        }
