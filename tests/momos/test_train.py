"""momos.train: what must hold by construction, checked against independent computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import kcomplex
from momos import build_model, decode, load_dataset
from momos.train import METHODS, TrainConfig, load_results, train

FAST = ("bdm", "zstd")


def _run(tmp_path, name="run", **kw):
    kw.setdefault("estimators", FAST)
    kw.setdefault("epochs", 2)
    return train(out=tmp_path / name, progress=False, **kw), tmp_path / name


def _strip_times(results):
    out = json.loads(json.dumps(results.to_dict()))
    for e in out["epochs"]:
        e.pop("seconds")
    return out


def _distinct_blocks(tensors, s: int) -> int:
    """Number of distinct blocks of ``s`` values over tensors zero-padded one by one."""
    blocks = []
    for w in tensors:
        flat = w.reshape(-1)
        blocks.append(torch.cat([flat, flat.new_zeros((-flat.numel()) % s)]).view(-1, s))
    return torch.unique(torch.cat(blocks), dim=0).shape[0]


# ------------------------------------------------------------------------------- config


@pytest.mark.parametrize("bad, match", [
    (dict(method="pruning"), "unknown method"),
    (dict(model="lenet"), "unknown model"),
    (dict(dataset="imagenet"), "unknown dataset"),
    (dict(s=0), "s must be"),
    (dict(capacity=0.0), "capacity"),
    (dict(capacity=0.1, k=5), "not both"),
    (dict(q=1), "QAT bits"),
    (dict(epochs=-1), "epochs"),
    (dict(project_every="batch"), "project_every"),
    (dict(device="tpu"), "device"),
    (dict(lr=float("nan")), "lr"),
    (dict(momentum=1.0), "momentum"),
])
def test_config_rejects_bad_fields(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_config_defaults_follow_the_paper():
    mlp = TrainConfig().resolved()
    assert (mlp["optimizer"], mlp["lr"], mlp["weight_decay"]) == ("adamw", 3e-4, 1e-2)
    assert mlp["batch_size"] == 128 and mlp["schedule"] == "cosine" and mlp["capacity"] == 0.05
    res = TrainConfig(model="resnet20").resolved()
    assert (res["optimizer"], res["lr"], res["weight_decay"], res["momentum"]) == (
        "sgd", 0.1, 1e-4, 0.9)


def test_cuda_unavailable_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="cuda"):
        train(device="cuda", epochs=0, progress=False)


# --------------------------------------------------------------------------- the records


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 2-epoch run per method, trained once for the module: (results, directory)."""
    base = tmp_path_factory.mktemp("runs")
    return {m: _run(base, m.replace("+", "_"), method=m, q=4 if m == "qat" else 8)
            for m in METHODS}


def _names():
    splits = load_dataset("digits", seed=0)
    return [n for n, _ in build_model("mlp", splits.in_shape, splits.classes).named_parameters()]


def test_epoch_zero_is_the_untouched_initialization(runs):
    res, out = runs["momos"]
    torch.manual_seed(0)
    splits = load_dataset("digits", seed=0)
    fresh = build_model("mlp", splits.in_shape, splits.classes)
    init = load_file(out / "init.safetensors")
    assert set(init) == {n for n, _ in fresh.named_parameters()}  # safetensors sorts names
    for name, p in fresh.named_parameters():
        assert torch.equal(init[name], p.detach()), name
    # Epoch 0's measurements are those of that model, computed independently here.
    total = kcomplex.analyze(fresh, list(FAST), per_tensor=False, progress=False).total
    e0 = res.epochs[0]
    assert e0.epoch == 0 and e0.projection is None
    for key in FAST:
        assert e0.complexity[f"{key}_bits"] == float(total[f"{key}_bits"]), key
    flat = torch.cat([p.detach().reshape(-1) for p in fresh.parameters()]).double()
    assert e0.l2 == pytest.approx(float(flat.norm()), rel=1e-12)
    assert e0.sparsity == float((flat == 0).double().mean())
    # Same seed, same initialization for every method (QAT measures its quantized view).
    for method in METHODS:
        assert load_file(runs[method][1] / "init.safetensors").keys() == init.keys()
    assert runs["baseline"][0].epochs[0].complexity == e0.complexity


def test_results_have_the_documented_fields(runs):
    res, out = runs["momos"]
    assert (load_results(out).to_dict() == json.loads((out / "results.json").read_text())
            == res.to_dict())
    assert res.status == "finished" and [e.epoch for e in res.epochs] == [0, 1, 2]
    for e in res.epochs:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                    "lr", "sparsity", "l2", "seconds"):
            assert np.isfinite(getattr(e, key)), key
        assert set(e.complexity) == {f"{k}_bits" for k in FAST}
    s = res.summary
    assert s.test_acc == res.epochs[-1].test_acc
    assert s.best_val_acc == max(e.val_acc for e in res.epochs)
    assert s.best_test_acc == res.epochs[s.best_epoch].test_acc
    for key in ("total_bits", "bound_bits", "trivial_bits"):
        assert key in s.description_length
    assert s.complexity_ratio["bdm"] == pytest.approx(
        res.epochs[-1].complexity["bdm_bits"] / res.epochs[0].complexity["bdm_bits"])
    assert sum(s.motif_counts) == res.model.m
    assert len(s.motif_counts) == res.model.k
    for f in ("init.safetensors", "best.safetensors", "final.safetensors", "final.momos",
              "best.momos", "last.pt"):
        assert (out / f).exists(), f
    base = runs["baseline"][1]  # every method is coded exactly: the baseline's tensors too
    assert decode((base / "final.momos").read_bytes()).keys() == load_file(
        base / "final.safetensors").keys()


def test_lr_is_the_rate_each_epoch_trained_with(runs):
    lr = [e.lr for e in runs["baseline"][0].epochs]
    # Cosine over 2 epochs: epoch 1 trains at the initial rate, epoch 2 at half of it.
    assert lr == [3e-4, 3e-4, pytest.approx(1.5e-4, rel=1e-12)]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_learns_on_digits(runs, method):
    accs = [e.val_acc for e in runs[method][0].epochs]
    assert accs[-1] > accs[0] + 0.2, accs  # chance is 0.1; a broken step stays near it


def test_results_json_is_complete_after_every_epoch(tmp_path):
    out = tmp_path / "run"
    seen = []

    def check(record):
        on_disk = load_results(out)
        assert on_disk.final.epoch == record["epoch"]
        assert on_disk.status == "running"
        seen.append(record["epoch"])

    train(out=out, epochs=1, estimators=("zstd",), progress=False, callback=check)
    assert seen == [0, 1]


@pytest.mark.parametrize("method", METHODS)
def test_final_measurements_match_the_final_checkpoint(runs, method):
    res, out = runs[method]
    final = load_file(out / "final.safetensors")
    ordered = {n: final[n] for n in _names()}  # BDM reads the vector in parameter order
    total = kcomplex.analyze(ordered, list(FAST), per_tensor=False, progress=False).total
    for key in FAST:
        assert res.final.complexity[f"{key}_bits"] == float(total[f"{key}_bits"])


def test_qat_weights_are_quantized(runs):
    final = load_file(runs["qat"][1] / "final.safetensors")
    # QAT at 4 bits: every weight matrix holds at most 2*7 + 1 levels; biases are free.
    for name, t in final.items():
        if name.endswith("weight"):
            assert torch.unique(t).numel() <= 15, name
        elif t.numel() > 15:
            assert torch.unique(t).numel() > 15, name


def test_evaluated_model_is_the_checkpoint(runs):
    res, out = runs["momos+qat"]
    splits = load_dataset("digits", seed=0)
    model = build_model("mlp", splits.in_shape, splits.classes)
    model.load_state_dict(load_file(out / "final.safetensors"))
    x, y = splits.test.tensors
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).double().mean().item()
    assert acc == res.summary.test_acc


# ----------------------------------------------------------------------------- MoMos runs


def _check_momos_files(res, out, s):
    final = load_file(out / "final.safetensors")
    data = (out / "final.momos").read_bytes()
    decoded = decode(data)
    assert set(decoded) == set(final)
    for name in final:
        assert torch.equal(decoded[name], final[name]), name
    dl = res.summary.description_length
    assert dl["total_bits"] == 8 * len(data)
    assert dl["mosaic_bits"] <= dl["mosaic_bits_fixed"]
    assert dl["total_bits"] < dl["trivial_bits"] == 32 * res.model.n_params
    assert _distinct_blocks(final.values(), s) <= res.model.k
    assert res.final.projection["k"] == res.model.k


def test_momos_weights_are_motifs_and_decode_exactly(runs):
    _check_momos_files(*runs["momos"], s=2)


def test_projection_after_every_step(tmp_path):
    res, out = _run(tmp_path, method="momos", s=4, capacity=0.01, project_every="step",
                    epochs=1)
    _check_momos_files(res, out, s=4)


def test_momos_qat_stream_decodes_to_the_quantized_network(runs):
    res, out = runs["momos+qat"]
    final = load_file(out / "final.safetensors")
    decoded = decode((out / "final.momos").read_bytes())
    assert set(decoded) == set(final)
    for name, w in decoded.items():  # quantized weights and float biases, bit for bit
        assert torch.equal(w.view(torch.int32), final[name].view(torch.int32)), name
    # The latent weights are the bank (quantized at q = 8, one scale) over the mosaic.
    biases = [w for name, w in final.items() if name.endswith("bias")]
    assert _distinct_blocks(biases, 2) <= res.model.k
    assert _distinct_blocks(final.values(), 2) > res.model.k  # per-tensor scales
    dl = res.summary.description_length
    assert dl["bank_bits"] < 9 * res.model.k * 2 + 64  # 8 bits per motif value
    assert dl["total_bits"] <= dl["bound_bits"] + dl["header_bits"]
    assert dl["total_bits"] == 8 * len((out / "final.momos").read_bytes())


def test_resnet_with_buffers_trains_and_checkpoints(tmp_path):
    res, out = _run(tmp_path, model="resnet20", method="momos+qat", epochs=1, batch_size=256)
    final = load_file(out / "final.safetensors")
    assert "bn1.running_mean" in final and "layer1.0.conv1.weight" in final
    model = build_model("resnet20", (1, 8, 8), 10)
    model.load_state_dict(final)
    # The stream rebuilds the network: trainable weights (pooled) and floating buffers.
    assert set(decode((out / "final.momos").read_bytes())) == {
        n for n, p in model.named_parameters()} | {
        n for n, b in model.named_buffers() if b.is_floating_point()}
    assert res.summary.description_length["trivial_bits"] == 32 * sum(
        p.numel() for p in model.parameters())


# ------------------------------------------------------------- reproducibility and resume


def test_same_seed_same_run(tmp_path, runs):
    a, out_a = runs["momos"]
    b, out_b = _run(tmp_path, "b", method="momos")
    assert _strip_times(a) == _strip_times(b)
    assert (out_a / "final.momos").read_bytes() == (out_b / "final.momos").read_bytes()
    c, _ = _run(tmp_path, "c", seed=1, epochs=0)
    assert c.epochs[0].l2 != a.epochs[0].l2


class _Crash(Exception):
    pass


def test_resume_continues_bit_identically(tmp_path, runs):
    straight, straight_out = runs["momos+qat"]

    def crash_after_one(record):
        if record["epoch"] == 1:
            raise _Crash

    out = tmp_path / "resumed"
    kw = dict(method="momos+qat", epochs=2, estimators=FAST, progress=False)
    with pytest.raises(_Crash):
        train(out=out, callback=crash_after_one, **kw)
    assert load_results(out).status == "running"
    resumed = train(out=out, resume=True, **kw)
    assert _strip_times(resumed) == _strip_times(straight)
    for f in ("final.safetensors", "final.momos", "best.safetensors"):
        assert (out / f).read_bytes() == (straight_out / f).read_bytes(), f


def test_load_results_rejects_other_files(tmp_path):
    (tmp_path / "results.json").write_text('{"epochs": []}')
    with pytest.raises(ValueError, match="not a momos results file"):
        load_results(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_results(tmp_path / "missing")


def test_existing_run_is_not_overwritten(tmp_path):
    _run(tmp_path, epochs=0)
    with pytest.raises(ValueError, match="already holds a run"):
        _run(tmp_path, epochs=0)


def test_resume_refuses_a_different_config(tmp_path):
    _run(tmp_path, epochs=0)
    with pytest.raises(ValueError, match="differs in epochs"):
        train(out=tmp_path / "run", epochs=1, estimators=FAST, progress=False, resume=True)


def test_resume_without_a_run_starts_one(tmp_path):
    res = train(out=tmp_path / "new", epochs=0, estimators=FAST, progress=False, resume=True)
    assert res.status == "finished" and len(res.epochs) == 1


def test_no_output_directory_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = train(epochs=0, estimators=FAST, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert res.summary.description_length["coded"] == "tensor codes"


@pytest.mark.cuda
def test_cuda_run_decodes_exactly(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    res, out = _run(tmp_path, method="momos", device="cuda")
    final = load_file(out / "final.safetensors")
    decoded = decode((out / "final.momos").read_bytes())
    assert all(torch.equal(decoded[n], final[n]) for n in final)
    assert res.final.val_acc > res.epochs[0].val_acc
