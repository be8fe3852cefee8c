"""The momos command line: encode, decode, size on a small checkpoint."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from momos.cli import main
from momos.codec import decode, stream_info


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_encode_decode_size(ckpt, tmp_path, capsys):
    path, state = ckpt
    out = tmp_path / "m.momos"
    assert main(["encode", str(path), str(out), "--s", "2", "--capacity", "0.1",
                 "--exclude", "2.bias"]) == 0
    text = capsys.readouterr().out
    assert "motif bank" in text and "total" in text
    data = out.read_bytes()
    info = stream_info(data)
    assert info["total_bits"] == 8 * len(data) and info["n_leftover_tensors"] == 1
    weights = decode(data)
    assert torch.equal(weights["2.bias"], state["2.bias"])  # excluded: stored as it was
    assert not torch.equal(weights["0.weight"], state["0.weight"])  # projected
    assert main(["decode", str(out), str(tmp_path / "w.safetensors")]) == 0
    back = load_file(tmp_path / "w.safetensors")
    assert all(torch.equal(back[k], weights[k]) for k in weights)
    assert main(["size", str(out)]) == 0
    assert f"{info['total_bits']:,} bits" in capsys.readouterr().out


def test_bad_input_is_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.momos"
    junk.write_bytes(b"not a momos stream")
    assert main(["size", str(junk)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("momos: error:") and "magic" in err[0]


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "momos", "encode", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--capacity" in out and "--exclude" in out
