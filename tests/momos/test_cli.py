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


def _bits(t):
    return t.detach().to(torch.float32).contiguous().view(torch.int32)


@pytest.fixture
def bn_ckpt(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 16, 2))
    model.train()
    model(torch.randn(4, 3, 6, 6))  # running statistics away from their initial 0 / 1
    path = tmp_path / "bn.pt"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_encode_keeps_buffers_by_default(bn_ckpt, tmp_path):
    path, state = bn_ckpt
    out = tmp_path / "m.momos"
    assert main(["encode", str(path), str(out), "--s", "2", "--k", "4"]) == 0
    back = decode(out.read_bytes())
    for name in ("1.running_mean", "1.running_var"):
        assert torch.equal(_bits(back[name]), _bits(state[name])), name
    assert not torch.equal(back["0.weight"], state["0.weight"])  # a parameter: projected
    assert "1.num_batches_tracked" not in back  # integer buffers are not stored
    assert main(["encode", str(path), str(out), "--s", "2", "--k", "4",
                 "--include-buffers"]) == 0
    assert not torch.equal(decode(out.read_bytes())["1.running_var"], state["1.running_var"])


def test_encode_without_motifs_is_lossless(bn_ckpt, tmp_path, capsys):
    path, state = bn_ckpt
    out = tmp_path / "plain.momos"
    assert main(["encode", str(path), str(out)]) == 0
    assert "no motifs" in capsys.readouterr().out
    back = decode(out.read_bytes())
    floating = {n: t for n, t in state.items() if t.is_floating_point()}
    assert list(back) == list(floating)
    assert all(torch.equal(_bits(back[n]), _bits(t)) for n, t in floating.items())


@pytest.mark.parametrize("argv, message", [
    (["--k", "4"], "give --s too"),
    (["--s", "2"], "give --capacity or --k"),
])
def test_encode_size_options_are_checked(bn_ckpt, tmp_path, capsys, argv, message):
    path, _ = bn_ckpt
    assert main(["encode", str(path), str(tmp_path / "x.momos"), *argv]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("levels", ["uniform", "kmeans"])
def test_encode_ptq_codes_the_quantized_checkpoint(bn_ckpt, tmp_path, levels):
    from momos.ptq import post_training_quantize

    path, state = bn_ckpt
    out = tmp_path / "ptq.momos"
    assert main(["encode", str(path), str(out), "--ptq", "3", "--levels", levels]) == 0
    back = decode(out.read_bytes())
    want = {n: t for n, t in state.items() if t.is_floating_point()}
    want.update(post_training_quantize(want, 3, levels))
    assert all(torch.equal(_bits(back[n]), _bits(t)) for n, t in want.items())
    assert len(torch.unique(back["0.weight"])) <= 8
    assert main(["encode", str(path), str(out), "--ptq", "3", "--s", "2", "--k", "4"]) == 1
