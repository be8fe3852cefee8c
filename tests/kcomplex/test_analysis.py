"""analyze() / compare() / the estimator registry, against direct computations."""

import bz2
import gzip
import json
import lzma
import math

import numpy as np
import pandas as pd
import pytest

import kcomplex
from kcomplex.analysis import ALL, analyze, compare
from kcomplex.estimators import ESTIMATORS, PRESETS, resolve_estimators


@pytest.fixture
def weights():
    rng = np.random.default_rng(0)
    return {
        "a.weight": rng.normal(size=(20, 30)).astype(np.float32),
        "a.bias": rng.normal(size=7).astype(np.float32),
        "b.weight": rng.normal(size=(13, 11)).astype(np.float32),
    }


def _concat(weights):
    return np.concatenate([w.ravel() for w in weights.values()]).astype("<f4")


def _entropy_direct(w):
    _, counts = np.unique(w.view(np.uint32), return_counts=True)
    n = w.size
    return 1 + min(32 * counts.size - sum(c * math.log2(c / n) for c in counts), 32 * n)


def test_table_layout(weights):
    report = analyze(weights, "all")
    t = report.table
    assert list(t["tensor"]) == [*weights, ALL]
    assert list(t.columns[:4]) == ["tensor", "shape", "numel", "raw_bits"]
    for est in ESTIMATORS:
        assert f"{est}_bits" in t and f"{est}_bpp" in t
    assert t["numel"].iloc[-1] == sum(w.size for w in weights.values())
    assert (t["raw_bits"] == 32 * t["numel"]).all()
    assert t["shape"].iloc[0] == "20x30"
    np.testing.assert_allclose(t["zstd_bpp"], t["zstd_bits"] / t["numel"])


def test_values_match_direct_computation(weights):
    t = analyze(weights, "all").table.set_index("tensor")
    whole = _concat(weights)
    raw = whole.tobytes()
    assert t.loc[ALL, "gzip_bits"] == 8 * len(gzip.compress(raw, compresslevel=9, mtime=0))
    assert t.loc[ALL, "bz2_bits"] == 8 * len(bz2.compress(raw, 9))
    assert t.loc[ALL, "lzma_bits"] == 8 * len(lzma.compress(raw, preset=9))
    assert t.loc[ALL, "bdm_bits"] == kcomplex.BDM().bdm(kcomplex.binarize(whole))
    assert t.loc[ALL, "entropy_bits"] == pytest.approx(_entropy_direct(whole), rel=1e-12)
    w = weights["a.weight"].ravel()
    assert t.loc["a.weight", "bdm_bits"] == kcomplex.bdm(kcomplex.binarize(w))
    assert t.loc["a.weight", "entropy_bits"] == pytest.approx(_entropy_direct(w), rel=1e-12)


def test_too_short_for_bdm_is_reported_not_zero(weights):
    t = analyze(weights, ["bdm"]).table.set_index("tensor")
    assert math.isnan(t.loc["a.bias", "bdm_bits"])
    assert "fewer weights than one block" in t.loc["a.bias", "notes"]


def test_bdm_total_streams_across_tensors_exactly():
    rng = np.random.default_rng(1)
    pieces = {f"t{i}": rng.normal(size=int(n)).astype(np.float32)
              for i, n in enumerate(rng.integers(1, 40, 25))}
    total = analyze(pieces, ["bdm"], per_tensor=False).total["bdm_bits"]
    assert total == kcomplex.bdm(kcomplex.binarize(_concat(pieces)))


def test_entropy_sees_repeats():
    w = np.tile(np.float32([0.5, -0.25, 0.0]), 100)
    bits = analyze({"w": w}, ["entropy"]).total["entropy_bits"]
    assert bits == pytest.approx(1 + 3 * 32 + 300 * math.log2(3))


def test_nonfinite_raise_and_drop(weights):
    bad = dict(weights)
    bad["a.weight"] = bad["a.weight"].copy()
    bad["a.weight"][0, :3] = [np.nan, np.inf, np.nan]
    with pytest.raises(ValueError, match=r"'a.weight'.*3 non-finite.*2 NaN, 1 Inf"):
        analyze(bad)
    report = analyze(bad, nonfinite="drop")
    assert report.meta["dropped_nonfinite"] == 3
    assert "dropped 3 non-finite" in report.table.set_index("tensor").loc["a.weight", "notes"]
    assert report.total["numel"] == sum(w.size for w in weights.values()) - 3


def test_empty_tensor_listed_and_skipped(weights):
    report = analyze({**weights, "empty": np.zeros(0, np.float32)})
    row = report.table.set_index("tensor").loc["empty"]
    assert row["numel"] == 0 and "empty" in row["notes"]
    assert math.isnan(row["zstd_bits"])
    with pytest.raises(ValueError, match="every tensor is empty"):
        analyze({"e": np.zeros(0, np.float32)})


def test_input_untouched_and_deterministic(weights):
    before = {k: v.copy() for k, v in weights.items()}
    a = analyze(weights).table
    b = analyze(weights).table
    pd.testing.assert_frame_equal(a, b)
    for k in weights:
        np.testing.assert_array_equal(weights[k], before[k])


def test_unknown_estimator_lists_valid():
    with pytest.raises(ValueError, match="valid: bdm.*presets: default"):
        analyze(np.ones(20, np.float32), ["nope"])
    assert [e.name for e in resolve_estimators("paper")] == list(PRESETS["paper"])


def test_integer_tensors_are_not_weights():
    with pytest.raises(ValueError, match="no weights"):
        analyze({"steps": np.arange(20)}, ["zstd"])


def test_module_and_tensor_inputs():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    model[0].weight.requires_grad_(False)
    t = analyze(model, ["bdm"]).table
    assert list(t["tensor"]) == ["0.bias", "2.weight", "2.bias", ALL]
    t_all = analyze(model, ["bdm"], trainable_only=False).table
    assert list(t_all["tensor"])[0] == "0.weight"
    vec = torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])
    assert t["bdm_bits"].iloc[-1] == kcomplex.bdm(kcomplex.binarize(vec))


def test_json_and_csv_round_trip(weights, tmp_path):
    report = analyze(weights)
    report.to_json(tmp_path / "r.json")
    report.to_csv(tmp_path / "r.csv")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["meta"]["estimators"] == ["bdm", "zstd", "entropy"]
    assert [r["tensor"] for r in data["rows"]] == [*weights, ALL]
    back = pd.read_csv(tmp_path / "r.csv")
    np.testing.assert_allclose(back["zstd_bits"], report.table["zstd_bits"])
    assert not list(tmp_path.glob("*.tmp"))


def test_compare_ratio_and_delta(weights):
    trained = {k: np.where(np.abs(v) < 0.5, 0, v).astype(np.float32) for k, v in weights.items()}
    cmp = compare(weights, trained, ["zstd", "bdm"])
    t = cmp.table.set_index(["tensor", "estimator"])
    ra, rb = analyze(weights, ["zstd"]), analyze(trained, ["zstd"])
    assert t.loc[(ALL, "zstd"), "bits_a"] == ra.total["zstd_bits"]
    assert t.loc[(ALL, "zstd"), "ratio"] == rb.total["zstd_bits"] / ra.total["zstd_bits"]
    assert t.loc[(ALL, "zstd"), "ratio"] < 1
    delta = _concat(trained) - _concat(weights)
    assert t.loc[(ALL, "zstd"), "delta_bits"] == analyze({"d": delta}, ["zstd"]).total["zstd_bits"]


def test_compare_needs_common_names(weights):
    with pytest.raises(ValueError, match="share no tensor name"):
        compare(weights, {"other": np.ones(30, np.float32)})


def test_plots(weights, tmp_path):
    pytest.importorskip("matplotlib")
    analyze(weights).plot(tmp_path / "r.png")
    compare(weights, weights).plot(tmp_path / "c.png")
    assert (tmp_path / "r.png").stat().st_size > 1000
    assert (tmp_path / "c.png").stat().st_size > 1000
