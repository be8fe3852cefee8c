"""The kcomplex command line: output, files written, exit codes, help."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kcomplex.cli import main


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "init.npz"
    np.savez(path, w=rng.normal(size=(40, 30)).astype(np.float32),
             b=rng.normal(size=30).astype(np.float32))
    trained = tmp_path / "trained.npz"
    np.savez(trained, w=np.round(rng.normal(size=(40, 30)), 1).astype(np.float32),
             b=np.zeros(30, np.float32))
    return path, trained


def test_analyze_prints_and_writes(npz, tmp_path, capsys):
    init, _ = npz
    out = tmp_path / "out"
    rc = main(["analyze", str(init), "-e", "bdm", "gzip", "--json", f"{out}.json",
               "--csv", f"{out}.csv", "--plot", f"{out}.png", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "(all)" in text and "gzip_bits" in text
    assert json.loads((tmp_path / "out.json").read_text())["meta"]["estimators"] == ["bdm", "gzip"]
    assert (tmp_path / "out.csv").read_text().startswith("tensor,shape,numel,raw_bits")
    assert (tmp_path / "out.png").stat().st_size > 1000


def test_several_paths_get_their_own_files(npz, tmp_path):
    init, trained = npz
    assert main(["analyze", str(init), str(trained), "--csv", str(tmp_path / "r.csv"),
                 "--no-progress"]) == 0
    assert (tmp_path / "r-init.csv").exists() and (tmp_path / "r-trained.csv").exists()


def test_compare_prints_ratios(npz, capsys):
    init, trained = npz
    assert main(["compare", str(init), str(trained), "-e", "paper", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "ratio" in text and "lzma" in text


@pytest.mark.parametrize("argv, message", [
    (["analyze", "missing.npz"], "missing.npz"),
    (["analyze", "{path}", "-e", "nope"], "unknown estimator"),
])
def test_bad_input_one_line_and_nonzero(npz, capsys, argv, message):
    argv = [a.replace("{path}", str(npz[0])) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kcomplex: error:") and message in err[0]


def test_help_explains_estimators():
    out = subprocess.run([sys.executable, "-m", "kcomplex", "analyze", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for name in ("bdm", "gzip", "bz2", "lzma", "zstd", "entropy", "paper"):
        assert name in out


def test_workers_and_index_read_like_analyze(tmp_path):
    from safetensors.numpy import save_file

    import kcomplex

    rng = np.random.default_rng(3)
    shards = {
        "model-00001-of-00002.safetensors": {"a": rng.normal(size=(20, 9)).astype(np.float32)},
        "model-00002-of-00002.safetensors": {"b": rng.normal(size=77).astype(np.float32)},
    }
    for name, weights in shards.items():
        save_file(weights, tmp_path / name)
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                                "b": "model-00002-of-00002.safetensors"}}))
    first = tmp_path / "model-00001-of-00002.safetensors"
    assert main(["analyze", str(first), "--workers", "1", "--csv", str(tmp_path / "s.csv"),
                 "--no-progress"]) == 0
    assert (tmp_path / "s.csv").read_text() == kcomplex.analyze(first).to_csv()
    assert main(["analyze", str(first), "--workers", "3", "-e", "all", "--csv",
                 str(tmp_path / "t.csv"), "--no-progress"]) == 0
    assert (tmp_path / "t.csv").read_text() == kcomplex.analyze(
        kcomplex.load_weights(first), "all", workers=1).to_csv()
    assert main(["analyze", str(index), "--csv", str(tmp_path / "i.csv"), "--no-progress"]) == 0
    joined = {n: w for s in shards.values() for n, w in s.items()}
    assert (tmp_path / "i.csv").read_text() == kcomplex.analyze(joined).to_csv()


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_workers_must_be_positive(bad, capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "x.safetensors", "--workers", bad])
    assert "expected a positive integer" in capsys.readouterr().err


def test_distance_command(tmp_path, capsys):
    import pandas as pd

    from kcomplex.distance import distance_matrix

    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 64)).astype(np.float32)
    paths = []
    for name, x in (("a", w), ("b", np.round(w, 1)), ("c", rng.normal(size=(64, 64)))):
        np.savez(tmp_path / f"{name}.npz", w=x.astype(np.float32))
        paths.append(str(tmp_path / f"{name}.npz"))
    csv = tmp_path / "d.csv"
    assert main(["distance", *paths, "--csv", str(csv), "--no-progress"]) == 0
    assert "NCD (zstd)" in capsys.readouterr().out
    frame = pd.read_csv(csv, index_col=0)
    want = distance_matrix([Path(p) for p in paths], "zstd", progress=False)
    np.testing.assert_allclose(frame.to_numpy(), want.to_numpy(), rtol=0, atol=1e-12)
    assert main(["distance", paths[0]]) == 1
    assert "two or more" in capsys.readouterr().err


def test_map_command(tmp_path, capsys):
    import pandas as pd

    from kcomplex import BDM, binarize, complexity_map

    w = np.random.default_rng(1).normal(size=(32, 48)).astype(np.float32)
    np.savez(tmp_path / "m.npz", w=w, b=np.zeros(3, np.float32))
    csv = tmp_path / "map.csv"
    assert main(["map", str(tmp_path / "m.npz"), "--tensor", "w", "--csv", str(csv)]) == 0
    got = pd.read_csv(csv).to_numpy()
    np.testing.assert_array_equal(got, complexity_map(w))
    assert got.shape == (8, 12)
    assert abs(got.sum() - BDM(ndim=2).bdm(binarize(w))) < 1e-6
    assert f"{got.sum():.2f} bits" in capsys.readouterr().out
    assert main(["map", str(tmp_path / "m.npz"), "--tensor", "nope"]) == 1
    assert "no tensor 'nope'" in capsys.readouterr().err
