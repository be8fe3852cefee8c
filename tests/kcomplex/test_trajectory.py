"""kcomplex.trajectory: every estimator per checkpoint, in training order."""

import json

import numpy as np
import pytest

from kcomplex import analyze
from kcomplex.cli import main
from kcomplex.trajectory import checkpoint_order, plot_trajectory, trajectory


def _run(tmp_path, names=("epoch0", "epoch5", "epoch10")):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 64)).astype(np.float32)
    for i, name in enumerate(names):
        np.savez(tmp_path / f"{name}.npz", fc=np.round(w, 3 - i).astype(np.float32))
    (tmp_path / "results.json").write_text(json.dumps({"not": "a checkpoint"}))
    return tmp_path


def test_directory_in_epoch_order_equals_analyze(tmp_path):
    folder = _run(tmp_path, names=("epoch10", "epoch0", "epoch5"))
    table = trajectory(folder, ["zstd", "bdm"], progress=False)
    assert list(table.index) == ["epoch0.npz", "epoch5.npz", "epoch10.npz"]
    assert table["step"].tolist() == [0, 5, 10]
    for name in table.index:
        total = analyze(folder / name, ["zstd", "bdm"], progress=False).total
        assert table.loc[name, "zstd_bits"] == total["zstd_bits"]
        assert table.loc[name, "bdm_bits"] == total["bdm_bits"]
    assert table["zstd_rel"].tolist() == (table["zstd_bits"] / table["zstd_bits"].iloc[0]).tolist()
    assert table["zstd_rel"].iloc[0] == 1.0


@pytest.mark.parametrize("names, order", [
    (["b/step-300.pt", "a/step-20.pt"], ["step-20.pt", "step-300.pt"]),
    (["ckpt_3.npz", "ckpt_12.npz", "ckpt_1.npz"], ["ckpt_1.npz", "ckpt_3.npz", "ckpt_12.npz"]),
    (["init.pt", "final.pt"], ["init.pt", "final.pt"]),
    (["run1-epoch2.pt", "run1-epoch1.pt"], ["run1-epoch1.pt", "run1-epoch2.pt"]),
    (["e1.pt", "x1.pt"], ["e1.pt", "x1.pt"]),  # equal numbers: as given
])
def test_checkpoint_order(names, order):
    assert [p.name for p in checkpoint_order(names)] == order


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="holds no checkpoint"):
        trajectory(tmp_path, progress=False)
    with pytest.raises(ValueError, match="no checkpoints given"):
        trajectory([], progress=False)


def test_cli_and_plot(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    folder = _run(tmp_path / "run")
    csv, png = tmp_path / "t.csv", tmp_path / "t.png"
    assert main(["trajectory", str(folder), "-e", "zstd", "--csv", str(csv), "--plot",
                 str(png), "--no-progress"]) == 0
    assert "epoch10.npz" in capsys.readouterr().out and csv.exists() and png.exists()
    table = trajectory(folder, ["zstd"], progress=False)
    plot_trajectory(table)


def test_a_sharded_checkpoint_counts_once_and_a_bad_index_is_refused(tmp_path):
    from shards import write_sharded

    rng = np.random.default_rng(2)
    write_sharded(tmp_path, [{"a": rng.normal(size=300).astype(np.float32)},
                             {"b": rng.normal(size=300).astype(np.float32)}])
    table = trajectory(tmp_path, ["zstd"], progress=False)
    assert list(table.index) == ["model.safetensors.index.json"]
    assert table["numel"].iloc[0] == 600
    (tmp_path / "evil.index.json").write_text(json.dumps({"weight_map": {"x": "../x.bin"}}))
    with pytest.raises(ValueError, match="not inside the index.s folder"):
        trajectory(tmp_path, ["zstd"], progress=False)
