"""MoMos: the Mosaic-of-Motifs parameterization of neural networks.

A model's weights are cut into blocks of ``s`` values and each block is replaced by the
nearest of ``k`` shared motifs (Bakhtiarifard et al., 2026). ``momos`` projects models
with the reference semantics, trains them with quantization-aware training or with the
mosaic frozen, measures their exact description length with a real codec, and trains
them with the paper's measurements at every epoch (:func:`train`, :func:`reproduce`).
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
from .train import METHODS, TrainConfig, load_results, train
from .experiment import reproduce, summarize, sweep

__all__ = [
    "BlockLayout",
    "DATASETS",
    "METHODS",
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
    "TrainConfig",
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
    "load_results",
    "motif_count",
    "nearest_motif",
    "pool_parameters",
    "project",
    "rac",
    "remove_qat",
    "reproduce",
    "set_qat_bits",
    "stream_info",
    "summarize",
    "sweep",
    "to_blocks",
    "train",
    "write_atomic",
    "write_blocks",
]
