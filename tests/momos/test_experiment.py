"""momos.experiment, momos.report and the train/reproduce/sweep commands."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from momos.cli import main
from momos.experiment import REPRODUCE_RUNS, format_table, markdown_table, reproduce, sweep
from momos.report import usage_share
from momos.train import load_results


def test_usage_share_closed_forms():
    assert usage_share([5] * 10) == 0.5
    assert usage_share([0, 0, 1, 3]) == 0.0
    assert usage_share([1, 2, 3, 4], fraction=0.25) == 0.1
    assert math.isnan(usage_share([]))


def test_reproduce_writes_runs_table_report_and_figures(tmp_path):
    table = reproduce(out=tmp_path, epochs=1, progress=False, estimators=("bdm", "zstd", "lzma"))
    assert list(table.index) == list(REPRODUCE_RUNS)
    for name in REPRODUCE_RUNS:
        res = load_results(tmp_path / name)
        assert res.status == "finished"
        dl = res.summary.description_length
        assert table.loc[name, "exact_bits"] == dl["total_bits"]
        assert table.loc[name, "bdm_ratio"] == res.summary.complexity_ratio["bdm"]
        first, last = res.epochs[0], res.epochs[-1]
        assert "gzip_rate_init" not in table.columns
        assert table.loc[name, "lzma_rate_trained"] == (
            dl["trivial_bits"] / last.complexity["lzma_bits"])
        assert table.loc[name, "lzma_rate_init"] == (
            dl["trivial_bits"] / first.complexity["lzma_bits"])
    assert table.loc["qat-q8", "rac_bound"] == 4.0
    assert table.loc["momos-s2-c0.05", "exact_bits"] < table.loc["baseline", "exact_bits"]
    on_disk = pd.read_csv(tmp_path / "summary.csv", index_col="run")
    assert list(on_disk.index) == list(table.index)
    report = (tmp_path / "report.md").read_text()
    assert markdown_table(table) in report
    assert "BDM(trained)/BDM(init)" in report
    for fig in ("complexity.png", "motif_usage.png", "accuracy_vs_bits.png"):
        assert (tmp_path / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", fig


def test_reproduce_resume_keeps_finished_runs(tmp_path):
    fast = dict(epochs=0, plots=False, progress=False, estimators=("bdm",))
    reproduce(out=tmp_path, **fast)
    stamp = {n: (tmp_path / n / "results.json").stat().st_mtime_ns for n in REPRODUCE_RUNS}
    again = reproduce(out=tmp_path, resume=True, **fast)
    assert {n: (tmp_path / n / "results.json").stat().st_mtime_ns for n in REPRODUCE_RUNS} == stamp
    assert list(again.index) == list(REPRODUCE_RUNS)
    report = (tmp_path / "report.md").read_text()
    assert "Not trained (epoch 0 only)" in report and "nan" not in report


def test_sweep_grid_and_errors(tmp_path):
    table = sweep([2, 8], [0.05, 0.2], out=None, epochs=1, progress=False, estimators=("zstd",))
    assert list(table.index) == ["baseline", "s2-c0.05", "s2-c0.2", "s8-c0.05", "s8-c0.2"]
    grid = table.drop("baseline")
    assert list(grid["s"]) == [2, 2, 8, 8] and list(grid["capacity"]) == [0.05, 0.2] * 2
    assert (grid["exact_bits"] < grid["trivial_bits"]).all()
    # More motifs per block cost more bits at the same s.
    assert grid.loc["s2-c0.05", "exact_bits"] < grid.loc["s2-c0.2", "exact_bits"]
    with pytest.raises(ValueError, match="empty"):
        sweep([], [0.1], out=None)
    with pytest.raises(ValueError, match="MoMos"):
        sweep([2], [0.1], out=None, method="qat")


def test_tables_render_every_row():
    rows = {"a": {"method": "momos", "test_acc": 0.5, "exact_bits": 10.0, "bound_bits": 12.0,
                  "trivial_bits": 64.0, "rac_exact": 6.4, "rac_bound": float("nan")}}
    table = pd.DataFrame.from_dict(rows, orient="index")
    text, md = format_table(table), markdown_table(table)
    assert text.splitlines()[1].split() == ["a", "0.500", "10", "12", "64", "6.400", "-"]
    assert md.splitlines()[2] == "| a | 0.500 | 10 | 12 | 64 | 6.400 | - |"


# ------------------------------------------------------------------------------------ CLI


def test_cli_train(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--method", "momos", "--s", "4", "--capacity", "0.02",
                 "--epochs", "1", "--estimators", "bdm", "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    res = load_results(out)
    assert f"{res.summary.description_length['total_bits']:,}" in text
    assert res.config["s"] == 4 and res.config["capacity"] == 0.02
    assert main(["train", "--epochs", "1", "--out", str(out), "--no-progress"]) == 1
    assert "already holds a run" in capsys.readouterr().err


def test_cli_reproduce_and_sweep(tmp_path, capsys):
    assert main(["reproduce", "--epochs", "0", "--out", str(tmp_path / "r"), "--no-plots",
                 "--no-progress", "--estimators", "bdm", "zstd"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in REPRODUCE_RUNS) and "RAC exact" in text
    assert (tmp_path / "r" / "report.md").exists()
    assert main(["sweep", "--s", "2", "--capacity", "0.1", "--epochs", "0", "--no-baseline",
                 "--out", str(tmp_path / "w"), "--no-plots", "--no-progress",
                 "--estimators", "zstd"]) == 0
    assert "s2-c0.1" in capsys.readouterr().out


def test_cli_errors_are_messages(tmp_path, capsys):
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "0",
                 "--out", str(tmp_path / "x"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err


def test_reproduce_over_seeds_aggregates(tmp_path):
    table = reproduce(out=tmp_path, seed=[0, 1], epochs=0, plots=False, progress=False,
                      estimators=("zstd",))
    per_seed = {s: pd.read_csv(tmp_path / f"seed{s}" / "summary.csv", index_col="run")
                for s in (0, 1)}
    for col in ("test_acc", "zstd_rate_init", "exact_bits"):
        values = pd.concat([per_seed[0][col], per_seed[1][col]], axis=1)
        # summary.csv round-trips floats to ~1e-16: compare to 1e-12.
        assert np.allclose(table[col], values.mean(axis=1), rtol=1e-12, atol=0), col
        assert np.allclose(table[f"{col}_std"], values.std(axis=1, ddof=1), rtol=1e-12,
                           atol=0), col
    assert (table["n_seeds"] == 2).all()
    assert per_seed[0].loc["baseline", "test_acc"] != per_seed[1].loc["baseline", "test_acc"]
    report = (tmp_path / "report.md").read_text()
    assert " ± " in report and "[seed 1](seed1/report.md)" in report
    with pytest.raises(ValueError, match="distinct"):
        reproduce(out=None, seed=[1, 1], epochs=0)
