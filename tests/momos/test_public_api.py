"""The public API of momos is pinned, and so is how the distribution ships it."""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

import kcomplex
import momos

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = {
    "BlockLayout", "CodecError", "DescriptionLength", "decode", "description_length",
    "encode", "stream_info", "complexity", "DATASETS", "MODELS", "Splits", "build_model",
    "load_dataset", "FakeQuantize", "MOTIF_INITS", "MoMos", "MotifBank", "ProjectionStats",
    "Span", "attach_qat", "bake", "bound_bits", "fake_quantize", "freeze_mosaic",
    "is_frozen", "is_qat", "layout_of", "motif_count", "nearest_motif", "pool_parameters",
    "project", "rac", "remove_qat", "set_qat_bits", "to_blocks", "write_blocks",
    "METHODS", "TrainConfig", "load_results", "train", "reproduce", "summarize", "sweep",
    "EpochRecord", "ModelInfo", "RunResult", "RunSummary",
    # exact bits for every method, post-training quantization, the frontier
    "FRONTIER_RUNS", "PTQ_LEVELS", "TENSOR_CODES", "decode_tensor", "encode_tensor",
    "frontier", "frontier_table", "is_buffer_name", "pareto_front", "plot_frontier",
    "post_training_quantize", "ptq_targets", "quantize_tensor", "quantize_weight",
    "quantized_weights", "state_targets",
}

#: Runs ``code`` with torch unimportable, as in a base install without the [momos] extra.
NO_TORCH = "import sys; sys.modules['torch'] = None; "


def test_all_is_pinned():
    assert set(momos.__all__) == EXPECTED
    for name in momos.__all__:
        assert getattr(momos, name) is not None


def test_all_is_sorted():
    assert momos.__all__ == sorted(momos.__all__)


def _no_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], capture_output=True,
                          text=True, cwd=ROOT)


def test_console_script_without_torch_says_which_extra_to_install():
    res = _no_torch("from kcomplex._momos_entry import main; sys.exit(main(['--help']))")
    assert res.returncode == 1
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("momos: error: momos needs PyTorch")
    assert "pip install 'kcomplex[momos]'" in lines[0]


def test_import_without_torch_names_the_extra():
    res = _no_torch("import momos")
    assert res.returncode == 1
    assert res.stderr.splitlines()[-1].startswith(
        "ModuleNotFoundError: momos needs PyTorch: pip install 'kcomplex[momos]'")


def test_console_script_runs_momos_cli():
    config = read_configuration(ROOT / "pyproject.toml")
    assert config["project"]["scripts"]["momos"] == "kcomplex._momos_entry:main"
    res = subprocess.run([sys.executable, "-c",
                          "import sys; from kcomplex._momos_entry import main; "
                          "sys.exit(main(['--help']))"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: momos")


def test_version_is_written_once():
    config = read_configuration(ROOT / "pyproject.toml")
    assert config["project"]["version"] == kcomplex.__version__
    assert kcomplex.__version__ == importlib.metadata.version("kcomplex")
