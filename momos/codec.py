"""A bit-exact file format for a model's weights, and its itemized length.

The byte and bit layout is specified in ``docs/format.md`` (version 2; version 1 streams
still decode). In short: an 18-byte prefix (magic ``b"MOMOS"``, version, total length,
CRC32 of the rest), a header of Elias-delta integers, then, if the model has a MoMos
projection, the motif bank at ``q`` bits per value and the mosaic (fixed-width indices or
a two-part ANS code, whichever is shorter), and last every other floating tensor as one
blob of its shortest exact :mod:`momos.tensorcode` code. A pooled tensor may be
post-quantized (``momos.qat.quantize_weight``), so that a MoMos + QAT network's weights
are coded exactly too; a model without MoMos (baseline, QAT) is all stored tensors.

This module is the public face of the format: :func:`encode`, :func:`decode`,
:func:`stream_info` and :func:`description_length`. The work is done by
:mod:`momos.encoder` and :mod:`momos.decoder` (with :mod:`momos.readers`), which both
produce the stream's one itemization, :class:`momos.sections.Sections`; the reports here
are read from it.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from momos import MoMos
>>> _ = torch.manual_seed(0)
>>> model = nn.Linear(5, 3)
>>> mm = MoMos(s=2, k=4, seed=0); _ = mm.project(model)
>>> data = encode(model, mm)
>>> out = decode(data)
>>> all(torch.equal(out[n], p) for n, p in model.state_dict().items())
True
>>> description_length(model, mm).total_bits == 8 * len(data)
True
>>> baseline = decode(encode(model))  # no MoMos: every tensor stored exactly
>>> all(torch.equal(baseline[n], p) for n, p in model.state_dict().items())
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch

from kcomplex.mdl import two_part_bits
from kcomplex.validation import check_int

from .bounds import bound_bits
from .decoder import decode_stream
from .encoder import encode_stream
from .sections import MAGIC, VERSION, CodecError, Sections

__all__ = ["CodecError", "DescriptionLength", "MAGIC", "VERSION", "decode",
           "description_length", "encode", "stream_info"]

#: Default bound on the number of weights a stream may declare: 2^28 weights decode to
#: 1 GiB of float32 tensors. A k = 1 or a skewed coded mosaic costs almost no bits, so
#: the data length cannot bound the weights; this does (pass a larger ``max_numel``).
_MAX_NUMEL = 1 << 28
#: Weights per step of the chunked decoding, which bounds its scratch memory.
_CHUNK = 1 << 18


def encode(model_or_state_dict, momos_or_bank_and_mosaic=None, q: int = 32, *,
           post_quantize: Mapping[str, int] | None = None) -> bytes:
    """Encode a model's weights as bytes, exactly (format: ``docs/format.md``).

    Parameters
    ----------
    model_or_state_dict : nn.Module or Mapping[str, torch.Tensor]
        The model (its ``state_dict()``) or a state dict. Its floating tensors that are not
        in the layout are stored, each with its shortest exact :mod:`momos.tensorcode`
        code; the pooled ones are taken from the bank and mosaic only. Non-floating tensors
        are not stored.
    momos_or_bank_and_mosaic : MoMos, tuple or None
        A ``MoMos`` after ``project()``, or ``(motifs, mosaic, layout)``; None (default)
        for a model without MoMos (every floating tensor stored).
    q : int
        Bits per motif value: 32 (float32), 16 (float16 or bfloat16, only if exact, else
        CodecError) or 2..15: levels and a float32 scale, exact if the bank already is
        ``float32(level * scale)`` with levels of at most q bits
        (``momos.tensorcode.exact_uniform``), else those of
        ``momos.qat.quantize_weight(motifs, q)``, which :func:`decode` then gives (lossy).
        Ignored without MoMos.
    post_quantize : Mapping[str, int], optional
        ``{pooled tensor name: bits}``: :func:`decode` returns
        ``momos.qat.quantize_weight(bank[mosaic] over that tensor, bits)``, the weight a
        QAT network computes with. Bits 2..31; 0 or >= 32 mean none.

    Returns
    -------
    bytes
        The stream; the mosaic is fixed-width or entropy-coded, whichever is shorter.

    Raises
    ------
    CodecError
        If a value cannot be stored exactly (a bank not exact at q=16, non-float32 values).
    TypeError, ValueError
        For malformed arguments, e.g. `post_quantize` naming a tensor that is not pooled.

    Examples
    --------
    >>> state = {"w": torch.tensor([0.5, -0.25, 0.0])}
    >>> torch.equal(decode(encode(state))["w"], state["w"])
    True
    """
    return encode_stream(model_or_state_dict, momos_or_bank_and_mosaic, q, post_quantize).data


def decode(data: bytes, *, max_numel: int = _MAX_NUMEL) -> dict[str, torch.Tensor]:
    """Decode a stream of :func:`encode` into ``{name: float32 tensor}``.

    Pooled tensors come first (pool order), then the stored ones. Every count read from the
    header is bounded by the data left before anything is allocated; the total number of
    weights, which a k = 1 or skewed coded mosaic can declare in a few bytes, by
    `max_numel`.

    Parameters
    ----------
    data : bytes
        The whole stream.
    max_numel : int
        The most weights (all tensors together) to accept; default 2^28. Peak memory is
        the decoded tensors (4 bytes per weight, so at most ``4 * max_numel`` bytes), the
        bank, about twice the stream, and a bounded scratch (about 16 MiB); the time is
        linear in the weights.

    Returns
    -------
    dict[str, torch.Tensor]

    Raises
    ------
    CodecError
        For anything but a complete, valid stream: wrong magic or version, a length or CRC
        mismatch (checked before parsing), any inconsistency in the body, or more than
        `max_numel` weights.
    TypeError, ValueError
        If `max_numel` is not an integer >= 0.
    """
    return _decode(data, max_numel, materialize=True)[0]


def stream_info(data: bytes, *, max_numel: int = _MAX_NUMEL) -> dict:
    """The itemized size of a stream, read from the stream alone (it is fully decoded
    and checked, without keeping the tensors): ``s``, ``k``, ``q``, ``m`` (all 0
    without MoMos), ``mosaic_coded``, tensor and weight counts (``n_coded_tensors``
    pooled, ``n_leftover_tensors`` stored, ``n_weights``), ``header_bits``,
    ``bank_bits``, ``mosaic_bits``, ``leftover_bits`` (the stored tensors),
    ``total_bits``, and ``codes``: ``{code name: bits of the stored tensors using it}``.

    Parameters
    ----------
    data : bytes
        The whole stream.
    max_numel : int
        As :func:`decode`; the memory does not grow with it here (only the time).

    Returns
    -------
    dict

    Raises
    ------
    CodecError
        As :func:`decode`.
    TypeError, ValueError
        If `max_numel` is not an integer >= 0.
    """
    return _decode(data, max_numel, materialize=False)[1].info()


def _decode(data: bytes, max_numel: int,
            materialize: bool) -> tuple[dict[str, torch.Tensor], Sections]:
    max_numel = check_int(max_numel, "max_numel", minimum=0)
    return decode_stream(data, max_numel, materialize, _CHUNK)


@dataclass(frozen=True)
class DescriptionLength:
    """Itemized length of :func:`encode`'s stream, in bits.

    ``header_bits + bank_bits + mosaic_bits + leftover_bits == total_bits`` where
    ``mosaic_bits`` is the chosen one of ``mosaic_bits_fixed`` (``m*ceil(log2 k)``,
    byte-padded) and ``mosaic_bits_coded`` (the Elias-delta counts and payload size + the
    ANS payload). ``header_bits`` holds the 18-byte prefix, names, shapes and padding;
    ``bank_bits`` includes the q=16 kind bit or the q<16 scale; ``leftover_bits`` the
    stored (not pooled) tensors. ``mosaic_bits_ideal`` is
    ``kcomplex.mdl.two_part_bits(mosaic, k)`` (m times the empirical entropy + the
    counts' cost), not a real code. All sizes are read from the encoder's
    :class:`momos.sections.Sections` (``mosaic_bits_fixed`` / ``mosaic_bits_coded`` from
    the stream it wrote and the one it rejected). With MoMos, ``trivial_bits`` is 32 bits
    per pooled weight and ``bound_bits`` the paper's bound of the pool; without, bank and
    mosaic bits are 0 and ``bound_bits = trivial_bits`` is 32 bits per stored weight.
    """

    header_bits: int
    bank_bits: int
    mosaic_bits_fixed: int
    mosaic_bits_coded: int
    mosaic_bits_ideal: float
    mosaic_coded: bool
    leftover_bits: int
    total_bits: int
    bound_bits: int
    trivial_bits: int
    rac_bound: float
    rac_exact: float
    # (name, numel, n_blocks, stored bits, code): code "momos" for a pooled tensor
    tensors: tuple[tuple[str, int, int, int, str], ...]

    @property
    def mosaic_bits(self) -> int:
        """Bits of the mosaic as stored."""
        return self.mosaic_bits_coded if self.mosaic_coded else self.mosaic_bits_fixed

    def to_json(self) -> str:
        """All fields as a JSON object."""
        return json.dumps(asdict(self) | {"mosaic_bits": self.mosaic_bits})

    def table(self):
        """A pandas DataFrame, one row per tensor and a last ``(header)`` row.

        Columns ``name``, ``code`` (``"momos"`` for a pooled tensor, else its tensor
        code), ``numel``, ``n_blocks``, ``bits``, ``bits_per_weight``. A pooled tensor is
        attributed the bank and mosaic bits in proportion to its blocks (``n_blocks / m``,
        so the bank is shared by block share); a stored one its blob; the header row the
        rest. The ``bits`` column sums to ``total_bits`` up to float rounding.
        """
        import pandas as pd

        m = sum(t[2] for t in self.tensors) or 1
        shared = self.bank_bits + self.mosaic_bits
        rows = [dict(name=n, code=code, numel=ne, n_blocks=nb, bits=lb + shared * nb / m,
                     bits_per_weight=(lb + shared * nb / m) / ne if ne else math.nan)
                for n, ne, nb, lb, code in self.tensors]
        rows.append(dict(name="(header)", code="", numel=0, n_blocks=0,
                         bits=float(self.header_bits), bits_per_weight=math.nan))
        return pd.DataFrame(rows)


def description_length(model, momos=None, q: int = 32, *,
                       post_quantize: Mapping[str, int] | None = None) -> DescriptionLength:
    """The exact, itemized length of ``encode(model, momos, q, post_quantize=...)``;
    arguments as there.

    Examples
    --------
    >>> from momos.blocks import layout_of
    >>> lay = layout_of([("w", torch.zeros(6))], 2)
    >>> bank, mosaic = torch.tensor([[0., 0.], [1., 2.]]), torch.tensor([1, 0, 1])
    >>> dl = description_length({}, (bank, mosaic, lay))
    >>> dl.bank_bits, dl.mosaic_bits_fixed, dl.total_bits
    (128, 8, 328)
    >>> description_length({"b": torch.zeros(4)}).tensors
    (('b', 4, 0, 64, 'uniform'),)
    """
    enc = encode_stream(model, momos, q, post_quantize)
    sec = enc.sections
    fixed, coded = (enc.rejected, sec) if sec.mosaic_coded else (sec, enc.rejected)
    tensors = tuple((t.name, t.numel, t.n_blocks, 0, "momos") for t in sec.pooled) + tuple(
        (t.name, t.numel, 0, t.bits, t.code) for t in sec.stored)
    if sec.pooled:
        n = sum(t.numel for t in sec.pooled)
        ideal = float(two_part_bits(enc.mosaic, sec.k)) if sec.m else 0.0
        bound = bound_bits(n, sec.s, k=sec.k, q=sec.q)
    else:
        n, ideal = sum(t.numel for t in sec.stored), 0.0
        bound = 32 * n
    return DescriptionLength(
        header_bits=sec.header_bits, bank_bits=sec.bank_bits,
        mosaic_bits_fixed=fixed.mosaic_bits, mosaic_bits_coded=coded.mosaic_bits,
        mosaic_bits_ideal=ideal, mosaic_coded=sec.mosaic_coded,
        leftover_bits=sec.leftover_bits, total_bits=sec.total_bits, bound_bits=bound,
        trivial_bits=32 * n, rac_bound=32 * n / bound if bound else 1.0,
        rac_exact=32 * n / sec.total_bits, tensors=tensors)
