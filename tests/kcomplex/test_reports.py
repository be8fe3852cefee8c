"""analyze() / compare() tell the truth about their input: values float32 cannot hold,
tensors the two sets do not share, frozen parameters left out."""

import math
import re
import warnings

import numpy as np
import pytest

from kcomplex.analysis import ALL, analyze, compare
from kcomplex.cli import main
from kcomplex.symbols import describe_nonfinite, describe_overflow

F32_MAX = float(np.finfo(np.float32).max)


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    # A cast that overflows warns in NumPy; the reports say it in words instead.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


# --- values beyond float32 ---------------------------------------------------------------


@pytest.mark.parametrize("nonfinite", ["raise", "drop"])
def test_finite_value_overflowing_float32_is_its_own_error(nonfinite):
    w = {"w": np.array([1.0] * 20 + [1e300])}
    msg = r"^tensor 'w': 1 value overflows float32 \(first at index 20: 1e\+300\); .*float32"
    with pytest.raises(ValueError, match=msg) as err:
        analyze(w, nonfinite=nonfinite)
    assert "non-finite values" not in str(err.value)
    assert "rescale" in str(err.value)


def test_overflow_indices_follow_the_shape_and_win_over_nan():
    w = np.zeros((3, 4))
    w[0, 1] = np.nan
    w[1, 2] = -1e39
    w[2, 3] = 5e40
    with pytest.raises(ValueError, match=r"2 values overflow float32 \(first at index "
                                         r"\(1, 2\): -1e\+39, \(2, 3\): 5e\+40\)"):
        analyze({"w": w}, nonfinite="drop")


def test_values_that_round_to_float32_max_are_measured():
    # Above float32's largest value by less than half an ulp: the cast rounds, no Inf.
    w = np.full(30, F32_MAX * (1 + 2.0**-26))
    assert np.isfinite(w.astype(np.float32)).all()
    assert analyze({"w": w}, ["zstd"]).total["numel"] == 30


def _nonfinite_in(dtype):
    w = np.linspace(-1, 1, 30)
    w[3], w[7], w[8] = np.nan, -np.inf, np.inf
    if dtype == "bfloat16":
        torch = pytest.importorskip("torch")
        return torch.tensor(w, dtype=torch.bfloat16)
    return w.astype(dtype)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "bfloat16"])
def test_nonfinite_counted_in_every_dtype(dtype):
    w = {"w": _nonfinite_in(dtype)}
    msg = r"3 non-finite values \(1 NaN, 2 Inf\), first at index 3, 7, 8; pass nonfinite="
    with pytest.raises(ValueError, match=msg):
        analyze(w)
    report = analyze(w, ["zstd"], nonfinite="drop")
    assert report.meta["dropped_nonfinite"] == 3
    assert report.total["numel"] == 27
    assert "dropped 3 non-finite" in report.table["notes"].iloc[0]


def test_describe_helpers_are_public():
    assert describe_nonfinite(np.array([np.inf, 1.0]), "x") == (
        "x contain 1 non-finite values (0 NaN, 1 Inf), first at index 0"
    )
    assert describe_overflow(np.array([1.0, np.inf, np.nan]), "x") is None
    assert describe_overflow(np.array([3e38, -4e38]), "x") == (
        "x: 1 value overflows float32 (first at index 1: -4e+38)"
    )


# --- compare: what is compared and what is not ------------------------------------------


@pytest.fixture
def mismatched():
    rng = np.random.default_rng(0)
    a = {
        "conv.weight": rng.normal(size=(8, 3, 3)).astype(np.float32),
        "fc.weight": rng.normal(size=(10, 40)).astype(np.float32),
        "fc.bias": rng.normal(size=10).astype(np.float32),
    }
    b = {
        "conv.weight": rng.normal(size=(16, 3, 3)).astype(np.float32),
        "fc.weight": np.round(rng.normal(size=(10, 40)), 1).astype(np.float32),
        "rnn.weight": rng.normal(size=50).astype(np.float32),
    }
    return a, b


def test_compare_lists_every_tensor_with_its_status(mismatched):
    a, b = mismatched
    cmp = compare(a, b, ["zstd", "bdm"])
    assert cmp.tensors.to_dict(orient="records") == [
        {"tensor": "conv.weight", "status": "shapes differ", "shape_a": "8x3x3",
         "shape_b": "16x3x3"},
        {"tensor": "fc.weight", "status": "compared", "shape_a": "10x40", "shape_b": "10x40"},
        {"tensor": "fc.bias", "status": "only in a", "shape_a": "10", "shape_b": ""},
        {"tensor": "rnn.weight", "status": "only in b", "shape_a": "", "shape_b": "50"},
    ]
    assert list(cmp.not_compared["tensor"]) == ["conv.weight", "fc.bias", "rnn.weight"]
    assert cmp.meta["n_compared"] == 1
    assert [r["tensor"] for r in cmp.meta["not_compared"]] == list(cmp.not_compared["tensor"])
    assert list(dict.fromkeys(cmp.table["tensor"])) == ["conv.weight", "fc.weight", ALL]


def test_compare_shape_mismatch_measured_without_delta(mismatched):
    a, b = mismatched
    t = compare(a, b, ["zstd"]).table.set_index(["tensor", "estimator"])
    row = t.loc[("conv.weight", "zstd")]
    assert row["bits_a"] == analyze({"c": a["conv.weight"]}, ["zstd"]).total["zstd_bits"]
    assert row["bits_b"] == analyze({"c": b["conv.weight"]}, ["zstd"]).total["zstd_bits"]
    assert row["ratio"] == row["bits_b"] / row["bits_a"]
    assert math.isnan(row["delta_bits"])
    assert "shapes differ (a 8x3x3, b 16x3x3)" in row["notes"]


def test_compare_all_rows_cover_the_compared_tensors_and_say_so(mismatched):
    a, b = mismatched
    t = compare(a, b, ["zstd"]).table.set_index(["tensor", "estimator"])
    total = t.loc[(ALL, "zstd")]
    assert total["bits_a"] == analyze({"fc.weight": a["fc.weight"]}, ["zstd"]).total["zstd_bits"]
    assert total["bits_b"] == analyze({"fc.weight": b["fc.weight"]}, ["zstd"]).total["zstd_bits"]
    assert not math.isnan(total["delta_bits"])
    assert "over the 1 tensors with the same name and shape; 3 not in (all)" in total["notes"]


def test_compare_strict_refuses_and_lists(mismatched):
    a, b = mismatched
    msg = (r"do not match \(strict\): 3 of 4 tensors .*'conv.weight' \(shapes differ: "
           r"8x3x3 vs 16x3x3\), 'fc.bias' \(only in a\), 'rnn.weight' \(only in b\)")
    with pytest.raises(ValueError, match=msg):
        compare(a, b, ["zstd"], strict=True)
    same = {k: v for k, v in a.items() if k != "conv.weight"}
    assert compare(same, same, ["zstd"], strict=True).not_compared.empty


def test_compare_needs_one_tensor_of_same_name_and_shape():
    with pytest.raises(ValueError, match=r"no tensor has the same name and shape.*'w' "
                                         r"\(shapes differ: 20 vs 30\)"):
        compare({"w": np.ones(20)}, {"w": np.ones(30)})


def test_compare_nan_cells_have_reasons():
    a = {"big": np.full(40, 3e38, np.float32), "empty": np.zeros(0, np.float32),
         "short": np.ones(5, np.float32)}
    b = {"big": np.full(40, -3e38, np.float32), "empty": np.zeros(0, np.float32),
         "short": np.zeros(5, np.float32)}
    t = compare(a, b, ["bdm", "zstd"]).table
    for row in t.itertuples():
        if any(math.isnan(v) for v in (row.bits_a, row.bits_b, row.ratio, row.delta_bits)):
            assert row.notes, row
    notes = t.set_index(["tensor", "estimator"])["notes"]
    assert "b - a overflows float32 at 40 values of 'big'" in notes[("big", "zstd")]
    assert "empty" in notes[("empty", "zstd")]
    assert "fewer weights than one block" in notes[("short", "bdm")]


def test_compare_error_names_side_and_file(tmp_path):
    path = tmp_path / "b.npz"
    np.savez(path, w=np.array([np.nan] + [1.0] * 20))
    with pytest.raises(ValueError, match=re.escape(f"tensor 'w' of b ({path}) contain 1 non-")):
        compare({"w": np.ones(21)}, path)


# --- the command line -------------------------------------------------------------------


@pytest.fixture
def files(tmp_path, mismatched):
    from safetensors.numpy import save_file

    a, b = mismatched
    a["tiny"] = b["tiny"] = np.ones(5, np.float32)  # too short for BDM: a note
    first, second = tmp_path / "zz-first.npz", tmp_path / "aa-second.safetensors"
    np.savez(first, **a)
    save_file(b, second)
    return first, second


def test_cli_compare_reports_mismatches_in_typed_order(files, capsys):
    first, second = files
    assert main(["compare", str(first), str(second), "-e", "bdm", "zstd", "--no-progress"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert header.index(f"a: {first}") < header.index(f"b: {second}")
    assert "not in (all): 3 of 5 tensors" in out
    for name, status in [("conv.weight", "shapes differ"), ("fc.bias", "only in a"),
                         ("rnn.weight", "only in b")]:
        assert re.search(rf"{re.escape(name)}\s+{status}", out)
    assert "notes:" in out and "tiny: bdm: fewer weights" in out
    assert "see analyze() notes" not in out


def test_cli_compare_strict(files, capsys):
    first, second = files
    assert main(["compare", str(first), str(second), "--strict", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kcomplex: error:")
    assert "'fc.bias' (only in a)" in err[0] and "'rnn.weight' (only in b)" in err[0]


def test_cli_compare_json_keeps_the_listing(files, tmp_path):
    import json

    first, second = files
    out = tmp_path / "c.json"
    assert main(["compare", str(first), str(second), "-e", "zstd", "--json", str(out),
                 "--no-progress"]) == 0
    meta = json.loads(out.read_text())["meta"]
    assert meta["n_compared"] == 2
    assert {r["tensor"]: r["status"] for r in meta["not_compared"]} == {
        "conv.weight": "shapes differ", "fc.bias": "only in a", "rnn.weight": "only in b"}


# --- frozen parameters ------------------------------------------------------------------


@pytest.fixture
def partly_frozen():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 3))
    model[0].requires_grad_(False)  # 220 parameters in 2 tensors
    return model


def test_frozen_parameters_are_reported(partly_frozen):
    report = analyze(partly_frozen, ["zstd"])
    assert report.total["numel"] == 63
    assert (report.meta["frozen_params"], report.meta["frozen_tensors"]) == (220, 2)
    assert ("220 frozen parameters in 2 tensors not measured; pass trainable_only=False"
            in report.total["notes"])
    everything = analyze(partly_frozen, ["zstd"], trainable_only=False)
    assert everything.total["numel"] == 283
    assert (everything.meta["frozen_params"], everything.meta["frozen_tensors"]) == (0, 0)
    assert not everything.total["notes"]


def test_frozen_parameters_of_torchscript_module(partly_frozen):
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script
        scripted = torch.jit.script(partly_frozen)
    assert analyze(scripted, ["zstd"]).meta["frozen_params"] == 220


def test_frozen_parameters_in_compare(partly_frozen):
    cmp = compare(partly_frozen, partly_frozen, ["zstd"])
    assert cmp.meta["a"]["frozen_params"] == cmp.meta["b"]["frozen_params"] == 220
    notes = cmp.table.set_index("tensor").loc[ALL, "notes"]
    assert "a and b each: 220 frozen parameters" in notes


def test_no_frozen_keys_change_for_arrays():
    report = analyze({"w": np.ones(30, np.float32)}, ["zstd"])
    assert (report.meta["frozen_params"], report.meta["frozen_tensors"]) == (0, 0)


def test_comparison_plot_with_mismatches(mismatched, tmp_path):
    pytest.importorskip("matplotlib")
    a, b = mismatched
    fig = compare(a, b, ["zstd"]).plot(tmp_path / "c.png")
    assert "1 of 4 tensors" in fig.axes[0].get_title()
    assert (tmp_path / "c.png").stat().st_size > 1000
