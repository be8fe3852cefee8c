"""kcomplex: algorithmic (Kolmogorov) complexity estimators for neural-network weights.

Everything is measured in bits. Torch is optional: it is needed only when the input is a
tensor, a module or a ``.pt`` file, and is never imported by ``import kcomplex``.
"""

from . import mdl
from .analysis import Comparison, Report, analyze, compare
from .bdm import BDM, PARTITIONS, BlockCounts, bdm
from .compressors import CODECS, PAYLOADS, compressed_bits, compressed_bits_chunks
from .ctm import load_table
from .ctm_query import algorithmic_probability, ctm_bits
from .distance import DISTANCE_ESTIMATORS, conditional, distance_matrix, ncd
from .estimators import ESTIMATORS, PRESETS
from .io import WeightsFormatError, iter_weights, load_weights, weight_shapes
from .lz import lz76_bits, lz76_phrases, lz78_bits, lz78_phrases
from .mdl import coded_bits, entropy_bits, kt_bits, quantized_bits, two_part_bits
from .perturbation import perturbation
from .regions import complexity_map, plot_complexity_map
from .symbols import binarize, symbolize
from .trajectory import checkpoint_order, plot_trajectory, trajectory

# The one place the version is written: pyproject.toml reads this literal (without importing
# kcomplex), so it must stay a plain string.
__version__ = "0.1.0"

__all__ = [
    "BDM",
    "BlockCounts",
    "CODECS",
    "Comparison",
    "DISTANCE_ESTIMATORS",
    "ESTIMATORS",
    "PARTITIONS",
    "PAYLOADS",
    "PRESETS",
    "Report",
    "WeightsFormatError",
    "algorithmic_probability",
    "analyze",
    "bdm",
    "binarize",
    "checkpoint_order",
    "coded_bits",
    "compare",
    "complexity_map",
    "compressed_bits",
    "compressed_bits_chunks",
    "conditional",
    "ctm_bits",
    "distance_matrix",
    "entropy_bits",
    "iter_weights",
    "kt_bits",
    "load_table",
    "load_weights",
    "lz76_bits",
    "lz76_phrases",
    "lz78_bits",
    "lz78_phrases",
    "mdl",
    "ncd",
    "perturbation",
    "plot_complexity_map",
    "plot_trajectory",
    "quantized_bits",
    "symbolize",
    "trajectory",
    "two_part_bits",
    "weight_shapes",
]
