"""MoMos.state_dict / load_state_dict: exact continuation, plain storage, clear refusals."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from momos.projection import MoMos

CONFIG = dict(s=2, k=6, seed=3)


def small_model(seed: int = 0) -> nn.Module:
    """Odd sizes, so every tensor pads at s = 2."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 3), nn.Conv2d(3, 2, 3), nn.Linear(3, 1, bias=False))


def saved(state: dict) -> dict:
    """``state`` through torch.save and a weights-only torch.load."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("config", [
    CONFIG,
    dict(s=3, capacity=0.3, seed=0, force_zero=False),
    dict(s=2, k=5, seed=1, motif_init="kmeans", kmeans_iters=2),
])
def test_restored_projector_continues_exactly(config):
    original, model = MoMos(**config), small_model(1)
    original.project(model)
    restored = MoMos(**config)
    restored.load_state_dict(saved(original.state_dict()))
    assert restored.layout == original.layout
    assert torch.equal(restored.motifs, original.motifs)
    assert torch.equal(restored.mosaic, original.mosaic)

    a, b = small_model(2), small_model(2)  # identical weights for the next projection
    stats_a, stats_b = original.project(a), restored.project(b)
    assert torch.equal(original.motifs, restored.motifs)
    assert torch.equal(original.mosaic, restored.mosaic)
    assert torch.equal(flat(a), flat(b))
    assert stats_a.distortion == stats_b.distortion and stats_a.changed == stats_b.changed


def test_a_fresh_projector_would_draw_another_bank():
    """The restored generator state matters: without it the next bank differs."""
    original = MoMos(**CONFIG)
    original.project(small_model(1))
    fresh = MoMos(**CONFIG)
    a, b = small_model(2), small_model(2)
    original.project(a), fresh.project(b)
    assert not torch.equal(original.motifs, fresh.motifs)


def test_never_projected_round_trips():
    original = MoMos(**CONFIG)
    state = saved(original.state_dict())
    assert state["motifs"] is None and state["mosaic"] is None and state["layout"] is None
    restored = MoMos(**CONFIG)
    restored.project(small_model(1))  # a projection the state replaces
    restored.load_state_dict(state)
    assert restored.motifs is None and restored.mosaic is None and restored.layout is None
    a, b = small_model(2), small_model(2)
    original.project(a), restored.project(b)
    assert torch.equal(original.motifs, restored.motifs) and torch.equal(flat(a), flat(b))


def test_unseeded_projector_has_no_generator_state():
    mm = MoMos(2, k=4)
    mm.project(small_model(1))
    state = saved(mm.state_dict())
    assert state["generator"] is None
    other = MoMos(2, k=4)
    other.load_state_dict(state)
    assert torch.equal(other.motifs, mm.motifs)


def test_state_is_plain_and_refers_to_the_projection():
    mm = MoMos(**CONFIG)
    mm.project(small_model(1))
    state = mm.state_dict()
    assert state["motifs"] is mm.motifs and state["mosaic"] is mm.mosaic
    assert state["generator"].dtype == torch.uint8
    assert state["config"] == {"s": 2, "k": 6, "capacity": None, "force_zero": True,
                               "seed": 3, "motif_init": "sample", "kmeans_iters": 0,
                               "bank_bits": 32}
    assert state["layout"]["s"] == 2
    assert [sp["name"] for sp in state["layout"]["spans"]] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "2.weight"]


def test_loaded_tensors_are_copies():
    mm = MoMos(**CONFIG)
    mm.project(small_model(1))
    state = mm.state_dict()
    other = MoMos(**CONFIG)
    other.load_state_dict(state)
    state["motifs"].add_(1.0)
    assert not torch.equal(other.motifs, mm.motifs)


def _projected_state() -> dict:
    mm = MoMos(**CONFIG)
    mm.project(small_model(1))
    return copy.deepcopy(mm.state_dict())


def _edit(**changes):
    def edit(state):
        state.update(changes)
    return edit


def _config(**changes):
    def edit(state):
        state["config"].update(changes)
    return edit


def _span(index, **changes):
    def edit(state):
        spans = [dict(sp) for sp in state["layout"]["spans"]]
        spans[index].update(changes)
        state["layout"] = {"s": state["layout"]["s"], "spans": tuple(spans)}
    return edit


REFUSALS = {
    "key missing": (lambda state: state.pop("generator"), r"missing keys \['generator'\]"),
    "key unexpected": (_edit(extra=1), r"unexpected keys \['extra'\]"),
    "other s": (_config(s=3), "s=3, this one has s=2"),
    "other k": (_config(k=7), "k=7, this one has k=6"),
    "capacity instead of k": (_config(k=None, capacity=0.5), "k=None"),
    "other seed": (_config(seed=4), "seed=4"),
    "other force_zero": (_config(force_zero=False), "force_zero=False"),
    "force_zero an int": (_config(force_zero=1), "force_zero=1"),
    "other motif_init": (_config(motif_init="kmeans"), "motif_init='kmeans'"),
    "config field missing": (lambda state: state["config"].pop("seed"), "config must be"),
    "bank without mosaic": (_edit(mosaic=None), "together"),
    "bank of wrong width": (lambda state: state.update(motifs=state["motifs"][:, :1]),
                            r"floating \(6, 2\) bank"),
    "bank of wrong height": (lambda state: state.update(motifs=state["motifs"][:5]),
                             r"floating \(6, 2\) bank"),
    "bank 1-D": (lambda state: state.update(motifs=state["motifs"].reshape(-1)), "bank"),
    "bank of ints": (lambda state: state.update(motifs=state["motifs"].long()), "bank"),
    "bank a list": (lambda state: state.update(motifs=state["motifs"].tolist()), "bank"),
    "mosaic int32": (lambda state: state.update(mosaic=state["mosaic"].int()), "int64"),
    "mosaic cut": (lambda state: state.update(mosaic=state["mosaic"][:-1]), "int64"),
    "mosaic out of range": (lambda state: state.update(mosaic=state["mosaic"] + 6),
                            r"outside \[0, 6\)"),
    "mosaic negative": (lambda state: state.update(mosaic=state["mosaic"] - 1), "outside"),
    "layout of other s": (lambda state: state["layout"].update(s=3), "block size 3"),
    "layout not a mapping": (_edit(layout=[1, 2]), "layout must be"),
    "layout without spans": (lambda state: state["layout"].update(spans=()), "layout must be"),
    "span with a gap": (_span(1, start=99), "span 1"),
    "span of wrong size": (_span(0, numel=14), "span 0"),
    "span of wrong blocks": (_span(2, n_blocks=1), "span 2"),
    "span named by a number": (_span(0, name=3), "span 0"),
    "span with a float shape": (_span(0, shape=(3.0, 5)), "span 0"),
    "generator missing": (_edit(generator=None), "1-D uint8 CPU tensor"),
    "generator float": (lambda state: state.update(generator=state["generator"].float()),
                        "uint8"),
    "generator cut": (lambda state: state.update(generator=state["generator"][:10]),
                      "not a valid torch.Generator state"),
    "generator zeroed": (lambda state: state.update(
        generator=torch.zeros_like(state["generator"])), "not a valid torch.Generator state"),
}


@pytest.mark.parametrize("damage, match", REFUSALS.values(), ids=REFUSALS)
def test_bad_states_are_refused_and_change_nothing(damage, match):
    state = _projected_state()
    damage(state)
    mm = MoMos(**CONFIG)
    before = mm.state_dict()
    with pytest.raises(ValueError, match=match) as info:
        mm.load_state_dict(state)
    assert "\n" not in str(info.value)
    after = mm.state_dict()
    assert after["motifs"] is None and after["mosaic"] is None and after["layout"] is None
    assert torch.equal(after["generator"], before["generator"])


def test_a_state_must_be_a_mapping():
    with pytest.raises(ValueError, match="must be a mapping"):
        MoMos(**CONFIG).load_state_dict([1])


def test_a_seeded_state_is_refused_by_an_unseeded_projector():
    state = _projected_state()
    state["config"]["seed"] = None
    with pytest.raises(ValueError, match="seed=None"):
        MoMos(2, k=6).load_state_dict(state)


def test_the_assign_method_is_not_part_of_the_state():
    """Every method gives the same argmin, so a state moves between them."""
    mm = MoMos(**CONFIG, assign="brute")
    mm.project(small_model(1))
    MoMos(**CONFIG, assign="auto").load_state_dict(mm.state_dict())
