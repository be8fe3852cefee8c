"""kcomplex: algorithmic (Kolmogorov) complexity estimators for neural-network weights.

Everything is measured in bits. Torch is optional: it is needed only when the input is a
tensor, and is never imported by ``import kcomplex``.
"""

from .bdm import BDM, PARTITIONS, BlockCounts, bdm
from .ctm import load_table
from .perturbation import perturbation
from .symbols import binarize, symbolize

__version__ = "0.1.0"

__all__ = [
    "BDM",
    "BlockCounts",
    "PARTITIONS",
    "bdm",
    "binarize",
    "load_table",
    "perturbation",
    "symbolize",
]
