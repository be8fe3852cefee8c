"""PTQ: uniform levels are QAT's bit for bit; k-means palettes against a brute-force
nearest-center oracle; the targets follow attach_qat's rule; inputs are never modified."""

from __future__ import annotations

import copy
from collections import OrderedDict
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from momos.models import build_model
from momos.ptq import (
    PTQ_LEVELS,
    post_training_quantize,
    ptq_targets,
    quantize_tensor,
    state_targets,
)
from momos.qat import attach_qat, quantize_weight, remove_qat


def _gauss(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64).to(dtype)


def _oracle_nearest(w: torch.Tensor, centers: list[float]) -> list[float]:
    """Nearest center of every value, ties to the lower one, in exact rational arithmetic."""
    cs = sorted(centers)
    out = []
    for v in w.reshape(-1).tolist():
        fv = Fraction(v)
        out.append(min(cs, key=lambda c: (abs(fv - Fraction(c)), c)))
    return out


def _distinct_bits(t: torch.Tensor) -> int:
    ints = {torch.float64: torch.int64, torch.float32: torch.int32,
            torch.float16: torch.int16, torch.bfloat16: torch.int16}[t.dtype]
    return t.view(ints).unique().numel()


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).mean())


# -- uniform ----------------------------------------------------------------------------

@pytest.mark.parametrize("q", [2, 3, 4, 8, 16, 31])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_is_quantize_weight_bit_for_bit(q, dtype):
    w = _gauss(1000, seed=q, dtype=dtype).reshape(10, 100)
    got = quantize_tensor(w, q)
    want = quantize_weight(w, q)
    assert got.dtype == dtype and got.shape == w.shape
    assert torch.equal(got.view(torch.int64 if dtype == torch.float64 else torch.int32),
                       want.view(torch.int64 if dtype == torch.float64 else torch.int32))


def test_uniform_levels_closed_form():
    w = torch.tensor([-1.0, -0.2, 0.3, 0.6, 0.75])
    # q=2: levels {-1, 0, 1} (scale max|w| = 1); 0.6 -> 1, 0.3 -> 0
    assert quantize_tensor(w, 2).tolist() == [-1.0, 0.0, 0.0, 1.0, 1.0]


# -- k-means ----------------------------------------------------------------------------

@pytest.mark.parametrize("q", [2, 3, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_kmeans_nearest_center_against_brute_force(q, dtype):
    w = _gauss(300, seed=10 + q, dtype=dtype).reshape(3, 100) * 0.1
    out = quantize_tensor(w, q, levels="kmeans")
    centers = out.unique().tolist()
    assert len(centers) <= 2 ** q and _distinct_bits(out) <= 2 ** q
    assert out.reshape(-1).tolist() == _oracle_nearest(w, centers)


@pytest.mark.parametrize("q", [2, 4, 8])
def test_kmeans_beats_uniform_distortion_on_gaussians(q):
    w = _gauss(20_000, seed=q)
    uni = _mse(quantize_tensor(w, q), w)
    km = _mse(quantize_tensor(w, q, levels="kmeans"), w)
    assert km <= uni


def test_kmeans_converges_to_lloyd_fixed_point_on_clusters():
    # Three well separated clusters with q=2 (4 centers): the clusters' means are among
    # the centers, and no value maps to a center of another cluster.
    g = torch.Generator().manual_seed(3)
    parts = [c + 0.01 * torch.randn(200, generator=g, dtype=torch.float64)
             for c in (-5.0, 0.0, 7.0)]
    w = torch.cat(parts)
    out = quantize_tensor(w, 2, levels="kmeans")
    for c, part, got in zip((-5.0, 0.0, 7.0), parts, out.split(200)):
        assert torch.all((got - c).abs() < 0.1)
    assert out.unique().numel() == 4


def test_kmeans_cluster_means_are_centers():
    # At a converged Lloyd fixed point, each center is the mean of the values mapped to it
    # (up to the final rounding to float32).
    w = _gauss(5000, seed=7)
    out = quantize_tensor(w, 3, levels="kmeans")
    for c in out.unique():
        members = w[out == c].double()
        assert abs(float(members.mean()) - float(c)) < 1e-6


def test_kmeans_deterministic():
    w = _gauss(10_000, seed=5)
    a = quantize_tensor(w, 4, levels="kmeans")
    b = quantize_tensor(w.clone(), 4, levels="kmeans")
    assert torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize("levels", PTQ_LEVELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_shape_device_kept_and_input_untouched(levels, dtype):
    w = _gauss(600, seed=1, dtype=dtype).reshape(2, 3, 100).requires_grad_(True)
    before = w.detach().clone()
    out = quantize_tensor(w, 3, levels)
    assert out.dtype == dtype and out.shape == w.shape and out.device == w.device
    assert not out.requires_grad
    assert torch.equal(w.detach(), before)
    assert out.data_ptr() != w.data_ptr()


@pytest.mark.parametrize("levels", PTQ_LEVELS)
def test_constant_and_zero_tensors(levels):
    c = torch.full((4, 5), 0.37)
    assert torch.equal(quantize_tensor(c, 2, levels), c)
    z = -torch.zeros(3, 3)  # -0.0 everywhere: written as +0.0
    out = quantize_tensor(z, 2, levels)
    assert torch.equal(out, z) and not torch.signbit(out).any()


def test_kmeans_few_distinct_values_returned_unchanged():
    w = torch.tensor([[0.5, -1.25, 3.0], [0.5, 3.0, 7.125]])  # 4 distinct values
    assert torch.equal(quantize_tensor(w, 2, levels="kmeans"), w)
    w16 = torch.arange(16, dtype=torch.float64).reshape(4, 4) / 7
    assert torch.equal(quantize_tensor(w16, 4, levels="kmeans"), w16)


def test_kmeans_empty_tensor():
    out = quantize_tensor(torch.empty(0, 3), 2, levels="kmeans")
    assert out.shape == (0, 3)


def test_kmeans_value_on_a_starting_midpoint_matches_oracle():
    # 5 distinct values, 4 centers: the quantile start is 0, 2, 10, 20, whose first
    # midpoint is the lone 1.0 (a tie, to the lower center); the result is still nearest.
    w = torch.tensor([0.0] * 50 + [1.0] + [2.0] * 50 + [10.0] * 50 + [20.0] * 50,
                     dtype=torch.float64)
    out = quantize_tensor(w, 2, levels="kmeans")
    centers = out.unique().tolist()
    assert len(centers) == 4
    assert out.tolist() == _oracle_nearest(w, centers)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_kmeans_exact_tie_goes_to_lower_center(dtype):
    # Converged clusters {-1.5, -1.5, -1.125} and {-1, -0.75}: centers -1.375 and -0.875,
    # whose midpoint is exactly -1.125, which must stay with the lower center.
    w = torch.tensor([-0.75, -1.5, 0.0, -1.125, 1.5, -1.5, 1.375, 0.5, 0.0, 1.0, 0.625, -1.0],
                     dtype=dtype)
    out = quantize_tensor(w, 2, levels="kmeans")
    assert out.unique().tolist()[:2] == [-1.375, -0.875]
    assert out[3].item() == -1.375
    assert out.tolist() == _oracle_nearest(w, out.unique().tolist())


def test_kmeans_million_weights():
    # 10^6 weights at q=8: an n x k distance matrix would need 2 GB in float64.
    w = _gauss(1_000_000, seed=2)
    out = quantize_tensor(w, 8, levels="kmeans")
    assert out.unique().numel() <= 256


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([32, 64]).flatmap(lambda width: st.tuples(
           st.just(width),
           st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=width), min_size=1,
                    max_size=60))),
       st.integers(2, 4))
def test_kmeans_properties(width_values, q):
    width, values = width_values
    w = torch.tensor(values, dtype=torch.float32 if width == 32 else torch.float64)
    out = quantize_tensor(w, q, levels="kmeans")
    assert out.shape == w.shape and out.dtype == w.dtype
    assert _distinct_bits(out) <= 2 ** q
    centers = out.unique().tolist()
    assert out.tolist() == _oracle_nearest(w, centers)
    assert float(out.min()) >= float(w.min()) and float(out.max()) <= float(w.max())
    # idempotent: a k-means output has <= 2^q distinct values, so it comes back unchanged
    assert torch.equal(quantize_tensor(out, q, levels="kmeans"), out)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
                min_size=1, max_size=60),
       st.integers(2, 12))
def test_uniform_properties(values, q):
    w = torch.tensor(values, dtype=torch.float64)
    out = quantize_tensor(w, q)
    assert torch.equal(out, quantize_weight(w, q))
    assert out.unique().numel() <= 2 ** q - 1
    amax = float(w.abs().max())
    if amax > 0:  # within half a step of the input
        step = amax / (2 ** (q - 1) - 1)
        assert float((out - w).abs().max()) <= step / 2 * (1 + 1e-9)


# -- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("q, levels, err, match", [
    (True, "uniform", TypeError, "integer"),
    (4.0, "uniform", TypeError, "integer"),
    ("4", "kmeans", TypeError, "integer"),
    (1, "uniform", ValueError, r"\[2, 31\]"),
    (32, "uniform", ValueError, r"\[2, 31\]"),
    (17, "kmeans", ValueError, r"\[2, 16\]"),
    (4, "lloyd", ValueError, "'uniform', 'kmeans'"),
    (4, None, ValueError, "levels"),
])
def test_bad_q_or_levels(q, levels, err, match):
    with pytest.raises(err, match=match):
        quantize_tensor(torch.ones(3), q, levels)
    with pytest.raises(err, match=match):
        post_training_quantize(nn.Linear(2, 2), q, levels)


def test_bad_tensor_inputs():
    with pytest.raises(TypeError, match="floating"):
        quantize_tensor(torch.arange(4), 4)
    with pytest.raises(TypeError, match="floating"):
        quantize_tensor([1.0, 2.0], 4)
    for levels in PTQ_LEVELS:
        with pytest.raises(ValueError, match="non-finite"):
            quantize_tensor(torch.tensor([1.0, float("nan")]), 4, levels)


# -- targets ----------------------------------------------------------------------------

def _qat_names(model: nn.Module, exclude=("bn", "norm")) -> list[str]:
    names = attach_qat(model, 8, exclude)
    remove_qat(model, bake=False)
    return [f"{n}.weight" if n else "weight" for n in names]


def _conv_bn_net() -> nn.Module:
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(1, 4, 3), bn=nn.BatchNorm2d(4), act=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
        fc=nn.Linear(4, 6), LayerNorm=nn.LayerNorm(6), head=nn.Linear(6, 3, bias=False)))


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)),
    _conv_bn_net,
    lambda: build_model("mlp", (1, 8, 8), classes=10, hidden=16, depth=2),
    lambda: build_model("resnet20", (3, 8, 8), classes=10),
    lambda: nn.Linear(3, 2),
])
def test_ptq_targets_follow_attach_qat(make):
    model = make()
    assert ptq_targets(model) == _qat_names(copy.deepcopy(model))
    assert ptq_targets(model, ("fc", "conv")) == _qat_names(copy.deepcopy(model), ("fc", "conv"))


def test_ptq_targets_closed_form_and_root():
    assert ptq_targets(_conv_bn_net()) == ["conv.weight", "fc.weight", "head.weight"]
    assert ptq_targets(nn.Linear(3, 2)) == ["weight"]
    assert ptq_targets(nn.Linear(3, 2), exclude="") == []  # "" is in every name


def test_ptq_targets_refuses_attached_qat():
    model = _conv_bn_net()
    attach_qat(model, 4)
    with pytest.raises(ValueError, match="remove_qat"):
        ptq_targets(model)


def test_state_targets_rule():
    model = _conv_bn_net()
    state = model.state_dict()
    # LayerNorm's 1-D weight is excluded by name here; bn by name; fc/head/conv are 2-D+.
    assert state_targets(state) == ["conv.weight", "fc.weight", "head.weight"]
    odd = OrderedDict([
        ("ln.weight", torch.ones(4)),                      # 1-D: not a target
        ("emb.weight", torch.ones(5, 2)),                  # 2-D: target
        ("Norm2.weight", torch.ones(3, 3)),                # excluded, case-insensitively
        ("weight", torch.ones(2, 2)),                      # root module
        ("x.weight_g", torch.ones(2, 2)),                  # last part is not "weight"
        ("ids.weight", torch.ones(2, 2, dtype=torch.int64)),  # not floating
        ("step", 3),                                       # not a tensor
    ])
    assert state_targets(odd) == ["emb.weight", "weight"]
    # vs ptq_targets: only the 1-D weights differ
    want = [n for n in ptq_targets(model, exclude=("bn",)) if state[n].ndim >= 2]
    assert state_targets(state, exclude=("bn",)) == want


def test_state_targets_refuses_qat_latent_weights():
    model = _conv_bn_net()
    attach_qat(model, 4)
    with pytest.raises(ValueError, match="remove_qat"):
        state_targets(model.state_dict())


@pytest.mark.parametrize("bad", [3, [1, 2], ("bn", 2)])
def test_bad_exclude(bad):
    with pytest.raises(TypeError, match="exclude"):
        ptq_targets(nn.Linear(2, 2), bad)


# -- post_training_quantize --------------------------------------------------------------

@pytest.mark.parametrize("levels", PTQ_LEVELS)
def test_module_not_modified_by_default(levels):
    model = build_model("resnet20", (3, 8, 8), classes=10)
    before = copy.deepcopy(model.state_dict())
    out = post_training_quantize(model, 3, levels)
    assert list(out) == ptq_targets(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    params = dict(model.named_parameters())
    for name, value in out.items():
        assert torch.equal(value, quantize_tensor(params[name], 3, levels))
        assert not value.requires_grad


def test_module_inplace_writes_same_parameters():
    model = _conv_bn_net()
    params = dict(model.named_parameters())
    bn_before = model.bn.weight.detach().clone()
    out = post_training_quantize(model, 2, "kmeans", inplace=True)
    for name, value in out.items():
        assert model.get_parameter(name) is params[name]
        assert torch.equal(params[name].detach(), value)
    assert torch.equal(model.bn.weight.detach(), bn_before)
    assert model.fc.bias.requires_grad


def test_tied_weights_quantized_from_float_once():
    a, b = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    b.weight = a.weight
    model = nn.Sequential(a, b)
    w = a.weight.detach().clone()
    out = post_training_quantize(model, 3, inplace=True)
    assert list(out) == ["0.weight", "1.weight"]
    assert torch.equal(out["0.weight"], quantize_weight(w, 3))
    assert torch.equal(out["1.weight"], out["0.weight"])
    assert torch.equal(a.weight.detach(), quantize_weight(w, 3))


def test_state_dict_input_untouched():
    model = _conv_bn_net()
    state = model.state_dict()
    before = {k: v.clone() for k, v in state.items()}
    keys = list(state)
    out = post_training_quantize(state, 4, "kmeans")
    assert list(out) == state_targets(state)
    assert list(state) == keys and all(torch.equal(before[k], state[k]) for k in keys)
    for name, value in out.items():
        assert torch.equal(value, quantize_tensor(before[name], 4, "kmeans"))


def test_post_training_quantize_bad_inputs():
    with pytest.raises(ValueError, match="inplace=True needs a module"):
        post_training_quantize(nn.Linear(2, 2).state_dict(), 4, inplace=True)
    with pytest.raises(TypeError, match="inplace"):
        post_training_quantize(nn.Linear(2, 2), 4, inplace=1)
    with pytest.raises(TypeError, match="Module or a state dict"):
        post_training_quantize([torch.ones(2, 2)], 4)
