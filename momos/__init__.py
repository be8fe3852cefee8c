"""MoMos: the Mosaic-of-Motifs parameterization of neural networks.

A model's weights are cut into blocks of ``s`` values and each block is replaced by the
nearest of ``k`` shared motifs (Bakhtiarifard et al., 2026). ``momos`` projects models
with the reference semantics, trains them with quantization-aware training or with the
mosaic frozen, measures their exact description length with a real codec, and trains
them with the paper's measurements at every epoch (:func:`train`, :func:`reproduce`).
"""

# Every module of momos needs torch, which only the [momos] extra installs: say so in one
# line instead of a traceback from deep inside the first module that imports it.
try:
    import torch  # noqa: F401
except ModuleNotFoundError as err:
    if err.name != "torch":
        raise
    raise ModuleNotFoundError(
        "momos needs PyTorch: pip install 'kcomplex[momos]' (on a machine without a GPU, "
        "install the CPU build of torch first: see the README)", name="torch"
    ) from None

from .assign import nearest_motif
from .blocks import (
    BlockLayout,
    Span,
    is_buffer_name,
    layout_of,
    pool_parameters,
    to_blocks,
    write_blocks,
)
from .bounds import bound_bits, motif_count, rac
from .codec import CodecError, DescriptionLength, decode, description_length, encode, stream_info
from .config import METHODS, PTQ_LEVELS, TrainConfig
from .data import DATASETS, Splits, load_dataset
from .experiment import reproduce, summarize, sweep
from .finetune import MotifBank, bake, freeze_mosaic, is_frozen
from .frontier import FRONTIER_RUNS, frontier, frontier_table, pareto_front, plot_frontier
from .measure import complexity
from .models import MODELS, build_model
from .projection import MOTIF_INITS, MoMos, ProjectionStats, project
from .ptq import post_training_quantize, ptq_targets, quantize_tensor, state_targets
from .qat import (
    FakeQuantize,
    attach_qat,
    fake_quantize,
    is_qat,
    quantize_weight,
    quantized_weights,
    remove_qat,
    set_qat_bits,
)
from .results import EpochRecord, ModelInfo, RunResult, RunSummary, load_results
from .tensorcode import TENSOR_CODES, decode_tensor, encode_tensor
from .train import train

__all__ = [
    "BlockLayout",
    "CodecError",
    "DATASETS",
    "DescriptionLength",
    "EpochRecord",
    "FRONTIER_RUNS",
    "FakeQuantize",
    "METHODS",
    "MODELS",
    "MOTIF_INITS",
    "MoMos",
    "ModelInfo",
    "MotifBank",
    "PTQ_LEVELS",
    "ProjectionStats",
    "RunResult",
    "RunSummary",
    "Span",
    "Splits",
    "TENSOR_CODES",
    "TrainConfig",
    "attach_qat",
    "bake",
    "bound_bits",
    "build_model",
    "complexity",
    "decode",
    "decode_tensor",
    "description_length",
    "encode",
    "encode_tensor",
    "fake_quantize",
    "freeze_mosaic",
    "frontier",
    "frontier_table",
    "is_buffer_name",
    "is_frozen",
    "is_qat",
    "layout_of",
    "load_dataset",
    "load_results",
    "motif_count",
    "nearest_motif",
    "pareto_front",
    "plot_frontier",
    "pool_parameters",
    "post_training_quantize",
    "project",
    "ptq_targets",
    "quantize_tensor",
    "quantize_weight",
    "quantized_weights",
    "rac",
    "remove_qat",
    "reproduce",
    "set_qat_bits",
    "state_targets",
    "stream_info",
    "summarize",
    "sweep",
    "to_blocks",
    "train",
    "write_blocks",
]
