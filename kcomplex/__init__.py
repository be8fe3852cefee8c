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
from .estimators import ESTIMATORS, PRESETS
from .io import WeightsFormatError, iter_weights, load_weights, weight_shapes
from .mdl import coded_bits, entropy_bits, kt_bits, quantized_bits, two_part_bits
from .perturbation import perturbation
from .symbols import binarize, symbolize

# The one place the version is written: pyproject.toml reads this literal (without importing
# kcomplex), so it must stay a plain string.
__version__ = "0.1.0"

__all__ = [
    "BDM",
    "BlockCounts",
    "CODECS",
    "Comparison",
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
    "compare",
    "coded_bits",
    "compressed_bits",
    "compressed_bits_chunks",
    "ctm_bits",
    "entropy_bits",
    "iter_weights",
    "kt_bits",
    "load_table",
    "load_weights",
    "mdl",
    "perturbation",
    "quantized_bits",
    "symbolize",
    "two_part_bits",
    "weight_shapes",
]
