"""The schema of results.json, pinned: every key at every level, in order, and the typed
result (momos.RunResult) reading and writing it byte for byte, old files included."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from momos import EpochRecord, ModelInfo, RunResult, RunSummary, TrainConfig, load_results, train
from momos.results import RESULTS_FORMAT

#: results.json of method="momos", epochs=1, k=8, estimators=("bdm",), written by momos
#: before the result became typed: files of that momos must keep loading.
V1 = Path(__file__).parent / "data" / "results-v1.json"

TOP = ["format", "config", "model", "epochs", "summary", "status"]
CONFIG = [f.name for f in dataclasses.fields(TrainConfig)]
RECORD = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
          "lr", "sparsity", "l2", "complexity", "projection", "seconds"]
PROJECTION = ["k", "distortion", "changed"]
SUMMARY = ["test_acc", "val_acc", "best_epoch", "best_val_acc", "best_test_acc",
           "complexity_ratio", "description_length"]
DL_CODES = ["header_bits", "leftover_bits", "total_bits", "codes", "coded", "bound_bits",
            "trivial_bits", "rac_bound", "rac_exact"]
DL_MOMOS = ["header_bits", "bank_bits", "mosaic_bits_fixed", "mosaic_bits_coded",
            "mosaic_bits_ideal", "mosaic_coded", "leftover_bits", "total_bits", "bound_bits",
            "trivial_bits", "rac_bound", "rac_exact", "mosaic_bits", "codes", "coded"]
#: The layout of V1, before every method had an exact code and before PTQ, quantized
#: banks and fine-tuning joined the config: such files keep loading, byte for byte.
V1_CONFIG = [c for c in CONFIG if c not in (
    "levels", "bank_q", "kmeans_iters", "finetune_epochs", "finetune_lr")]
V1_DL_MOMOS = [k for k in DL_MOMOS if k != "codes"]


@pytest.fixture(scope="module")
def momos_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("schema") / "run"
    res = train(method="momos", epochs=1, estimators=("bdm",), progress=False, out=out)
    return res, out


def _check_layout(data: dict, *, momos: bool, epochs: int, config: list = CONFIG,
                  dl_momos: list = DL_MOMOS) -> None:
    assert list(data) == TOP
    assert data["format"] == RESULTS_FORMAT and data["status"] == "finished"
    assert list(data["config"]) == config
    assert list(data["model"]) == (["n_params", "m", "k"] if momos else ["n_params"])
    assert [r["epoch"] for r in data["epochs"]] == list(range(epochs + 1))
    for record in data["epochs"]:
        assert list(record) == RECORD
        assert list(record["complexity"]) == ["bdm_bits"]
        if record["epoch"] == 0 or not momos:
            assert record["projection"] is None
        else:
            assert list(record["projection"]) == PROJECTION
    summary = data["summary"]
    assert list(summary) == SUMMARY + (["motif_counts"] if momos else [])
    assert list(summary["complexity_ratio"]) == ["bdm"]
    assert list(summary["description_length"]) == (dl_momos if momos and epochs else DL_CODES)


def test_results_json_keys_and_order(momos_run):
    res, out = momos_run
    data = json.loads((out / "results.json").read_text())
    _check_layout(data, momos=True, epochs=1)
    assert data == res.to_dict()


def test_a_run_without_momos_has_no_momos_fields():
    typed = train(method="baseline", epochs=0, estimators=("bdm",), progress=False)
    res = typed.to_dict()
    _check_layout(res, momos=False, epochs=0)
    assert typed.model == ModelInfo(res["model"]["n_params"])
    assert typed.summary.motif_counts is None and RunResult.from_dict(res) == typed


def test_the_typed_result_writes_the_same_bytes(momos_run):
    res, out = momos_run
    raw = (out / "results.json").read_bytes()
    data = json.loads(raw)
    typed = RunResult.from_dict(data)
    assert typed.to_dict() == data and list(typed.to_dict()) == TOP
    assert typed.to_json() == raw
    assert RunResult.load(out) == typed == res
    assert isinstance(typed.summary, RunSummary) and isinstance(typed.final, EpochRecord)
    assert typed.final.epoch == 1 and typed.model.k == len(typed.summary.motif_counts)
    assert typed.summary.best_test_acc == typed.epochs[typed.summary.best_epoch].test_acc


def test_results_written_before_the_typed_result_still_load():
    raw = V1.read_bytes()
    data = json.loads(raw)
    _check_layout(data, momos=True, epochs=1, config=V1_CONFIG, dl_momos=V1_DL_MOMOS)
    assert load_results(V1).to_dict() == data
    typed = RunResult.load(V1)
    assert typed.to_json() == raw
    assert typed.config == data["config"] and typed.model == ModelInfo(**data["model"])
    assert [r.to_dict() for r in typed.epochs] == data["epochs"]


def test_a_running_result_has_an_empty_summary():
    data = json.loads(V1.read_bytes())
    data.update(summary={}, status="running")
    typed = RunResult.from_dict(data)
    assert typed.summary is None and typed.to_dict() == data


def test_a_missing_field_is_named(tmp_path):
    data = json.loads(V1.read_bytes())
    del data["epochs"][1]["val_acc"]
    with pytest.raises(ValueError, match="'val_acc'"):
        RunResult.from_dict(data)
    (tmp_path / "results.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not a momos results file.*'val_acc'"):
        RunResult.load(tmp_path)
