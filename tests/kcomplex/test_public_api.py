"""The public API is pinned: what `import kcomplex` exports, and what it must not import."""

import subprocess
import sys

import kcomplex

EXPECTED = {
    "algorithmic_probability", "ctm_bits", "DISTANCE_ESTIMATORS", "conditional",
    "distance_matrix", "ncd", "complexity_map", "plot_complexity_map", "lz76_bits",
    "lz76_phrases", "lz78_bits", "lz78_phrases", "checkpoint_order", "plot_trajectory",
    "trajectory",
    "BDM", "BlockCounts", "CODECS", "Comparison", "ESTIMATORS", "PARTITIONS", "PAYLOADS",
    "PRESETS", "Report", "WeightsFormatError", "analyze", "bdm", "binarize", "coded_bits",
    "compare", "compressed_bits", "compressed_bits_chunks", "entropy_bits", "iter_weights",
    "kt_bits", "load_table", "load_weights", "mdl", "perturbation", "quantized_bits",
    "symbolize", "two_part_bits", "weight_shapes",
}


def test_all_is_pinned():
    assert set(kcomplex.__all__) == EXPECTED
    for name in kcomplex.__all__:
        assert getattr(kcomplex, name) is not None


def test_import_is_light():
    code = "import sys, kcomplex; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
