"""MoMos: the Mosaic-of-Motifs parameterization of neural networks.

A model's weights are cut into blocks of ``s`` values and each block is replaced by the
nearest of ``k`` shared motifs (Bakhtiarifard et al., 2026). ``momos`` projects models
with the reference semantics, trains them with quantization-aware training or with the
mosaic frozen, and measures their exact description length with a real codec.
"""

from .assign import nearest_motif
from .blocks import BlockLayout, Span, layout_of, pool_parameters, to_blocks, write_blocks
from .bounds import bound_bits, motif_count, rac
from .codec import (
    CodecError,
    DescriptionLength,
    decode,
    description_length,
    encode,
    stream_info,
    write_atomic,
)
from .measure import complexity
from .data import DATASETS, Splits, load_dataset
from .finetune import MotifBank, bake, freeze_mosaic, is_frozen
from .models import MODELS, build_model
from .projection import MOTIF_INITS, MoMos, ProjectionStats, project
from .qat import FakeQuantize, attach_qat, fake_quantize, is_qat, remove_qat, set_qat_bits

__all__ = [
    "BlockLayout",
    "DATASETS",
    "MODELS",
    "Splits",
    "build_model",
    "load_dataset",
    "CodecError",
    "DescriptionLength",
    "FakeQuantize",
    "MOTIF_INITS",
    "MoMos",
    "MotifBank",
    "ProjectionStats",
    "Span",
    "attach_qat",
    "bake",
    "bound_bits",
    "complexity",
    "decode",
    "description_length",
    "encode",
    "fake_quantize",
    "freeze_mosaic",
    "is_frozen",
    "is_qat",
    "layout_of",
    "motif_count",
    "nearest_motif",
    "pool_parameters",
    "project",
    "rac",
    "remove_qat",
    "set_qat_bits",
    "stream_info",
    "to_blocks",
    "write_atomic",
    "write_blocks",
]
