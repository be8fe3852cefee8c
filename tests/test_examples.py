"""The examples cannot rot: every script in examples/ runs in its --smoke mode, and the
console entry points answer --help."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TIMEOUT = 120  # seconds; a smoke run takes a few, this only catches a hang


def _run(args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def _bits(pattern: str, out: str) -> int:
    """The number with thousands separators that ``pattern``'s group matches in ``out``."""
    match = re.search(pattern, out)
    assert match, f"{pattern!r} not in the output:\n{out}"
    return int(match.group(1).replace(",", ""))


def test_analyze_checkpoint_demo(tmp_path):
    out = _run([str(EXAMPLES / "analyze_checkpoint.py"), "--smoke"], tmp_path)
    assert "demo checkpoint:" in out
    assert re.search(r"bdm +[\d,.]+ bits", out)
    assert re.search(r"gzip +[\d,.]+ bits .* rate \d+\.\d+", out)


def test_analyze_checkpoint_compare_and_plot(tmp_path):
    from safetensors.numpy import save_file

    init = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    save_file({"w": init}, str(tmp_path / "init.safetensors"))
    save_file({"w": np.round(init, 1)}, str(tmp_path / "trained.safetensors"))
    out = _run([str(EXAMPLES / "analyze_checkpoint.py"), "init.safetensors", "--smoke",
                "--compare", "trained.safetensors", "--plot", "bits.png"], tmp_path)
    assert (tmp_path / "bits.png").stat().st_size > 0
    ratios = dict(re.findall(r"^  (\w+) +ratio (\d+\.\d+)$", out, re.M))
    assert set(ratios) == {"bdm", "gzip"}
    assert float(ratios["gzip"]) < 1  # rounded to one decimal: far more compressible


def test_momos_your_model(tmp_path):
    out = _run([str(EXAMPLES / "momos_your_model.py"), "--smoke"], tmp_path)
    assert len(re.findall(r"^epoch +\d+ +val acc", out, re.M)) == 1
    exact = _bits(r"exact description length +([\d,]+) bits", out)
    assert 0 < exact < _bits(r"trivial, 32 bits/weight +([\d,]+) bits", out)


def test_encode_decode(tmp_path):
    out = _run([str(EXAMPLES / "encode_decode.py"), "--smoke", "--out", "model.momos"], tmp_path)
    assert "bit-exact equal to the model" in out
    total = _bits(r"total +([\d,]+) bits", out)
    assert total == 8 * (tmp_path / "model.momos").stat().st_size


@pytest.mark.parametrize("command", ["kcomplex", "momos"])
def test_console_entry_points(command, tmp_path):
    # The scripts installed beside this interpreter, not whatever else is on PATH.
    path = shutil.which(command, path=str(Path(sys.executable).parent))
    assert path is not None, f"no {command} script beside {sys.executable}: pip install -e ."
    proc = subprocess.run([path, "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {command}")
