"""Every training method's exact description length: its stream decodes to the weights the
network computes with, bit for bit; PTQ runs train exactly as the baseline; quantized MoMos
banks are stored at their bits."""

import pytest
import torch
from torch import nn

import momos
from momos import MoMos, TrainConfig
from momos.ptq import quantize_tensor
from momos.qat import quantize_weight
from momos.tensorcode import exact_uniform


def _bits(t):
    return t.detach().to(torch.float32).contiguous().view(torch.int32)


@pytest.mark.parametrize("fields", [
    {"method": "baseline"},
    {"method": "qat", "q": 3},
    {"method": "ptq", "q": 4},
    {"method": "ptq", "q": 2, "levels": "kmeans"},
    {"method": "momos", "s": 2, "k": 32},
    {"method": "momos", "s": 4, "k": 16, "bank_q": 6, "kmeans_iters": 2},
    {"method": "momos+qat", "s": 2, "capacity": 0.05, "q": 6},
])
def test_final_stream_decodes_to_evaluated_weights(tmp_path, fields):
    res = momos.train(epochs=1, estimators=(), progress=False, out=tmp_path, **fields)
    data = (tmp_path / "final.momos").read_bytes()
    dl = res.summary.description_length
    assert dl["total_bits"] == 8 * len(data)
    assert sum(dl["codes"].values()) == dl["leftover_bits"]
    from safetensors.torch import load_file

    decoded, weights = momos.decode(data), load_file(tmp_path / "final.safetensors")
    for name, w in weights.items():
        if w.is_floating_point():
            assert torch.equal(_bits(decoded[name]), _bits(w)), name


def test_momos_qat_exact_length_within_its_bound(tmp_path):
    res = momos.train(method="momos+qat", s=2, capacity=0.05, q=8, epochs=2, estimators=(),
                      progress=False)
    dl = res.summary.description_length
    assert res.config["bank_q"] == 8
    # The bank at 8 bits (not float32): the stream is the bound plus its header at most.
    assert dl["bank_bits"] <= dl["bound_bits"] and "qat q=8" in dl["coded"]
    assert dl["total_bits"] <= dl["bound_bits"] + dl["header_bits"]


def test_ptq_trains_as_the_baseline_and_evaluates_quantized():
    base = momos.train(method="baseline", epochs=2, estimators=(), progress=False)
    ptq = momos.train(method="ptq", q=3, levels="kmeans", epochs=2, estimators=(),
                      progress=False)
    assert [e.train_loss for e in ptq.epochs[1:]] == [e.train_loss for e in base.epochs[1:]]
    assert ptq.summary.test_acc != base.summary.test_acc or ptq.summary.description_length[
        "total_bits"] < base.summary.description_length["total_bits"]
    assert ptq.summary.description_length["codes"].get("palette", 0) > 0


def test_ptq_weights_are_the_quantized_float_weights():
    from momos.data import load_dataset
    from momos.runstate import RunState

    cfg = TrainConfig(method="ptq", q=4, epochs=1, estimators=())
    state = RunState(cfg, load_dataset("digits", seed=0), torch.device("cpu"))
    state.train_epoch()
    before = {n: p.detach().clone() for n, p in state.params.items()}
    weights = state.weights()
    for name, p in state.params.items():
        expect = quantize_tensor(p.detach(), 4) if name.endswith("weight") else p.detach()
        assert torch.equal(_bits(weights[name]), _bits(expect)), name
    state.evaluate("val")  # swaps quantized values in and the float ones back
    assert all(torch.equal(_bits(before[n]), _bits(p)) for n, p in state.params.items())


def test_bank_bits_quantizes_the_bank_exactly():
    torch.manual_seed(0)
    layer = nn.Linear(40, 20)
    mm = MoMos(s=2, k=16, seed=0, bank_bits=5)
    mm.project(layer)
    found = exact_uniform(mm.motifs.numpy())
    assert found is not None and found[0] <= 5
    assert torch.equal(mm.motifs, quantize_weight(mm.motifs, 5))
    blocks = layer.weight.detach().reshape(-1, 2)
    assert torch.equal(blocks, mm.motifs[mm.mosaic[:blocks.shape[0]]])


def test_bank_bits_32_is_the_reference_projection():
    torch.manual_seed(0)
    a, b = nn.Linear(12, 6), nn.Linear(12, 6)
    b.load_state_dict(a.state_dict())
    MoMos(s=2, k=5, seed=3).project(a)
    MoMos(s=2, k=5, seed=3, bank_bits=32).project(b)
    assert torch.equal(a.weight, b.weight)


def test_state_without_bank_bits_loads():
    mm = MoMos(s=2, k=3, seed=0)
    mm.project(nn.Linear(4, 3))
    state = mm.state_dict()
    del state["config"]["bank_bits"]  # a state saved before banks could be quantized
    again = MoMos(s=2, k=3, seed=0)
    again.load_state_dict(state)
    with pytest.raises(ValueError, match="bank_bits"):
        MoMos(s=2, k=3, seed=0, bank_bits=8).load_state_dict(state)


def test_config_checks_new_fields():
    with pytest.raises(ValueError, match="levels"):
        TrainConfig(levels="lloyd")
    with pytest.raises(ValueError, match="q <= 16"):
        TrainConfig(method="ptq", levels="kmeans", q=20)
    with pytest.raises(ValueError, match="bank_q"):
        TrainConfig(bank_q=1)
    assert TrainConfig(method="momos+qat", q=4).bank_bits == 4
    assert TrainConfig(method="momos").bank_bits == 32


class _Crash(Exception):
    pass


def _without_times(res):
    data = res.to_dict()
    for record in data["epochs"]:
        record["seconds"] = 0.0
    return data


@pytest.mark.parametrize("bank_q", [32, 8])
def test_finetune_epochs_keep_the_mosaic_and_resume_exactly(tmp_path, bank_q):
    kw = dict(method="momos", s=2, k=64, epochs=2, finetune_epochs=2, bank_q=bank_q,
              estimators=(), progress=False)
    straight = momos.train(out=tmp_path / "straight", **kw)
    assert [e.epoch for e in straight.epochs] == [0, 1, 2, 3, 4]
    assert all(e.projection["finetune"] for e in straight.epochs[3:])
    assert straight.epochs[4].train_loss < straight.epochs[2].train_loss  # the bank learns
    counts = straight.summary.motif_counts

    def crash(record):
        if record["epoch"] == 3:  # in the middle of fine-tuning
            raise _Crash

    out = tmp_path / "resumed"
    with pytest.raises(_Crash):
        momos.train(out=out, callback=crash, **kw)
    resumed = momos.train(out=out, resume=True, **kw)
    assert _without_times(resumed) == _without_times(straight)
    for f in ("final.safetensors", "final.momos", "best.momos"):
        assert (out / f).read_bytes() == (tmp_path / "straight" / f).read_bytes(), f
    # The mosaic is the last projection's: fine-tuning moved motifs, not indices.
    no_ft = momos.train(**{**kw, "finetune_epochs": 0})
    assert no_ft.summary.motif_counts == counts
    if bank_q < 32:
        from momos.tensorcode import exact_uniform

        w = momos.decode((tmp_path / "straight" / "final.momos").read_bytes())["1.weight"]
        assert exact_uniform(w.numpy()) is not None  # still the 8-bit bank's values


def test_finetune_needs_plain_momos():
    with pytest.raises(ValueError, match="finetune_epochs"):
        TrainConfig(method="momos+qat", finetune_epochs=1)
