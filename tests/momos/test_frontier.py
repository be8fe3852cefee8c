"""``momos frontier``: exact bits of every method, the Pareto front, the table and report."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from momos.cli import main
from momos.codec import decode
from momos.frontier import FRONTIER_RUNS, best_within, frontier, pareto_front


def _front_by_sweep(bits, acc):
    """Independent oracle: a point is dominated iff a point with strictly fewer bits is at
    least as accurate, or one with equal bits is strictly more accurate."""
    bits, acc = np.asarray(bits, float), np.asarray(acc, float)
    out = []
    for b, a in zip(bits, acc):
        fewer = acc[bits < b]
        same = acc[bits == b]
        out.append(not ((fewer.size and fewer.max() >= a) or same.max() > a))
    return np.array(out, dtype=bool)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 5)), min_size=1, max_size=12))
def test_pareto_front_matches_sweep_oracle(points):
    bits, acc = zip(*points)
    assert pareto_front(bits, acc).tolist() == _front_by_sweep(bits, acc).tolist()


def test_pareto_front_nan_and_shape():
    assert pareto_front([1, 2], [np.nan, 0.5]).tolist() == [False, True]
    with pytest.raises(ValueError, match="1-D"):
        pareto_front([1, 2], [0.5])


_RUNS = ["baseline", "ptq-u4", "ptq-k3", "qat-q4", "momos-s2-k64", "momos-s2-k256-b8-km",
         "momos+qat-s2-k256-q4"]


@pytest.fixture(scope="module")
def small_frontier(tmp_path_factory):
    out = tmp_path_factory.mktemp("frontier")
    table = frontier(out, runs=_RUNS, epochs=1, plots=False, progress=False)
    return out, table


def _bits(t):
    return t.detach().to(torch.float32).contiguous().view(torch.int32)


def test_exact_bits_are_the_decodable_stream(small_frontier):
    out, table = small_frontier
    assert list(table.index) == _RUNS
    for name in _RUNS:
        data = (out / name / "final.momos").read_bytes()
        assert table.loc[name, "exact_bits"] == 8 * len(data)
        weights = load_file(out / name / "final.safetensors")
        decoded = decode(data)
        for key, w in weights.items():
            if w.is_floating_point():
                assert torch.equal(_bits(decoded[key]), _bits(w)), (name, key)
        best = decode((out / name / "best.momos").read_bytes())
        for key, w in load_file(out / name / "best.safetensors").items():
            if w.is_floating_point():
                assert torch.equal(_bits(best[key]), _bits(w)), (name, key)


def test_table_relative_columns_and_front(small_frontier):
    _, table = small_frontier
    base = table.loc["baseline"]
    assert base["acc_vs_baseline"] == 0 and base["bits_vs_baseline"] == 1
    np.testing.assert_allclose(table["bits_vs_baseline"],
                               table["exact_bits"] / base["exact_bits"])
    assert table["on_front"].tolist() == pareto_front(table["exact_bits"],
                                                      table["test_acc"]).tolist()
    # Quantized codes are far below the float baseline's 32 bits per weight.
    assert table.loc["ptq-u4", "bits_per_weight"] < 4.2
    assert table.loc["qat-q4", "bits_per_weight"] < 4.2
    assert table.loc["ptq-k3", "bits_per_weight"] < 3.2
    assert table.loc["baseline", "bits_per_weight"] > 20


def test_best_within_uses_accuracy_points():
    import pandas as pd

    t = pd.DataFrame({"test_acc": [0.90, 0.889, 0.891], "exact_bits": [100.0, 10.0, 50.0]},
                     index=["baseline", "far", "near"])
    assert best_within(t) == "near" and best_within(t, points=2) == "far"
    assert best_within(t.drop(index="baseline")) is None


def test_unknown_run_is_refused():
    with pytest.raises(ValueError, match="unknown frontier runs"):
        frontier(None, runs=["nope"], epochs=0, plots=False, progress=False)
    assert "baseline" in FRONTIER_RUNS


def test_cli_frontier(tmp_path, capsys):
    out = tmp_path / "f"
    assert main(["frontier", "--runs", "baseline", "ptq-u8", "--epochs", "1", "--out", str(out),
                 "--no-plots", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "ptq-u8" in text and "bits/weight" in text
    report = (out / "report.md").read_text()
    assert "| ptq-u8 |" in report and (out / "frontier.csv").exists()
