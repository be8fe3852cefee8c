"""QAT: fake quantization math vs numpy, the straight-through gradient, and the
parametrization's life cycle (attach / set bits / remove) with optimizers across it."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import momos.qat as qat_mod
from momos.blocks import layout_of, pool_parameters, to_blocks, write_blocks
from momos.qat import (
    FakeQuantize,
    attach_qat,
    fake_quantize,
    is_qat,
    quantize_weight,
    quantized_weights,
    remove_qat,
    set_qat_bits,
)


def _numpy_fake_quantize(w: np.ndarray, q: int) -> np.ndarray:
    """The spec, directly, in the array's own dtype."""
    qmax = 2 ** (q - 1) - 1
    amax = np.abs(w).max()
    if amax == 0:
        return w.copy()
    scale = amax / w.dtype.type(qmax)
    return np.clip(np.round(w / scale), -qmax, qmax) * scale


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv=nn.Conv1d(2, 3, 3),
        bn1=nn.BatchNorm1d(3),
        act=nn.ReLU(),
        flat=nn.Flatten(),
        fc=nn.Linear(3 * 6, 5),
        LayerNorm=nn.LayerNorm(5),          # upper case: exclusion is case-insensitive
        head=nn.Linear(5, 2),
    ))


def _x(seed: int = 1) -> torch.Tensor:
    return torch.randn(4, 2, 8, generator=torch.Generator().manual_seed(seed))


def _names(model):
    return [(n, id(p)) for n, p in model.named_parameters()]


# -- fake_quantize ---------------------------------------------------------------------


def test_all_exports_exist():
    assert sorted(qat_mod.__all__) == sorted(
        ["FakeQuantize", "fake_quantize", "attach_qat", "set_qat_bits", "remove_qat", "is_qat",
         "quantize_weight", "quantized_weights", "weight_targets", "exclude_tokens"])
    for name in qat_mod.__all__:
        assert hasattr(qat_mod, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("q", [2, 4, 8, 16])
def test_fake_quantize_matches_numpy(q, dtype):
    rng = np.random.default_rng(q)
    w = (rng.standard_normal((7, 13)) * 0.1).astype(dtype)
    w[0, 0] = 0.5 * w[0, 1]  # a few exact relations; ties to even covered by numpy too
    got = fake_quantize(torch.from_numpy(w), q).numpy()
    want = _numpy_fake_quantize(w, q)
    assert got.dtype == w.dtype
    np.testing.assert_array_equal(got, want)
    # at most 2*qmax + 1 levels, all integer multiples of the scale
    qmax = 2 ** (q - 1) - 1
    scale = np.abs(w).max() / dtype(qmax)
    levels = np.round(got / scale)
    assert len(np.unique(got)) <= 2 * qmax + 1
    assert np.abs(levels).max() <= qmax
    np.testing.assert_allclose(got, levels * scale, rtol=0, atol=np.finfo(dtype).eps * scale * qmax)


def test_fake_quantize_ternary_at_two_bits():
    w = torch.tensor([-2.0, -1.1, -0.9, 0.0, 0.9, 1.0, 2.0])
    # scale = 2; 1.0 / 2 = 0.5 rounds half to even, to 0
    assert fake_quantize(w, 2).tolist() == [-2.0, -2.0, 0.0, 0.0, 0.0, 0.0, 2.0]


def test_fake_quantize_keeps_extremes_and_sign():
    w = torch.randn(100, generator=torch.Generator().manual_seed(3))
    for q in (2, 4, 8):
        wq = fake_quantize(w, q)
        i = w.abs().argmax()
        assert wq[i] == w[i]  # max|w| is exactly representable: scale * qmax
        assert torch.all(wq * w >= 0)


def test_straight_through_gradient_is_identity():
    w = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 4, dtype=torch.float64)
    wq = fake_quantize(w, 3)
    assert not torch.equal(wq, w)
    (wq * g).sum().backward()
    assert torch.equal(w.grad, g)


def test_all_zero_weight_unchanged_no_nan():
    w = torch.zeros(3, 3, requires_grad=True)
    wq = fake_quantize(w, 4)
    assert torch.equal(wq, w) and not torch.isnan(wq).any()
    wq.sum().backward()
    assert torch.equal(w.grad, torch.ones(3, 3))


@pytest.mark.parametrize("q", [32, 33, 64])
def test_fake_quantize_off_at_32_bits_and_above(q):
    w = torch.randn(10)
    assert fake_quantize(w, q) is w


@pytest.mark.parametrize("q", [1, 0, -3])
def test_bits_below_two_is_an_error(q):
    with pytest.raises(ValueError, match="must be >= 2"):
        fake_quantize(torch.ones(2), q)
    with pytest.raises(ValueError, match="must be >= 2"):
        attach_qat(nn.Linear(2, 2), q)
    model = nn.Linear(2, 2)
    attach_qat(model, 8)
    with pytest.raises(ValueError, match="must be >= 2"):
        set_qat_bits(model, q)


@pytest.mark.parametrize("q", [8.0, True, "8", None])
def test_non_integer_bits_is_a_type_error(q):
    with pytest.raises(TypeError, match="integer"):
        fake_quantize(torch.ones(2), q)


def test_numpy_integer_bits_accepted():
    w = torch.randn(6)
    assert torch.equal(fake_quantize(w, np.int64(4)), fake_quantize(w, 4))


def test_non_floating_input_is_a_type_error():
    with pytest.raises(TypeError, match="floating"):
        fake_quantize(torch.arange(4), 4)


# -- attach / exclude ------------------------------------------------------------------


def test_attach_quantizes_weights_only_and_skips_excluded_tokens():
    model = _net()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = attach_qat(model, 4)
    assert names == ["conv", "fc", "head"]
    assert is_qat(model)
    for name in names:
        mod = model.get_submodule(name)
        assert torch.equal(mod.weight, fake_quantize(before[f"{name}.weight"], 4))
        assert torch.equal(mod.bias, before[f"{name}.bias"])  # biases untouched
        assert isinstance(mod.parametrizations.weight[0], FakeQuantize)
    for name in ("bn1", "LayerNorm"):
        mod = model.get_submodule(name)
        assert not hasattr(mod, "parametrizations")
        assert torch.equal(mod.weight, before[f"{name}.weight"])


def test_custom_and_empty_exclude():
    model = _net()
    assert attach_qat(model, 8, exclude=("HEAD",)) == ["conv", "bn1", "fc", "LayerNorm"]
    remove_qat(model)
    assert attach_qat(model, 8, exclude=()) == ["conv", "bn1", "fc", "LayerNorm", "head"]
    remove_qat(model)
    assert attach_qat(model, 8, exclude="fc") == ["conv", "bn1", "LayerNorm", "head"]


def test_modules_without_floating_weight_parameter_are_skipped():
    model = nn.Sequential(OrderedDict(
        ln=nn.LayerNorm(4, elementwise_affine=False),    # weight is None
        emb=nn.Linear(4, 4),
        act=nn.ReLU(),                                    # no weight at all
    ))
    odd = nn.Module()
    odd.weight = nn.Parameter(torch.arange(4), requires_grad=False)  # integer weight
    model.add_module("odd", odd)
    assert attach_qat(model, 8) == ["emb"]


def test_root_module_is_quantized_under_empty_name():
    lin = nn.Linear(3, 3)
    assert attach_qat(lin, 8) == [""]
    assert is_qat(lin)


@pytest.mark.parametrize("q", [32, 40])
def test_attach_at_32_bits_attaches_nothing(q):
    model = _net()
    before = _names(model)
    assert attach_qat(model, q) == []
    assert not is_qat(model)
    assert _names(model) == before
    assert set_qat_bits(model, 32) == []  # nothing attached, nothing to switch off
    with pytest.raises(ValueError, match="no QAT attached"):
        set_qat_bits(model, 8)


def test_attach_twice_is_an_error():
    model = _net()
    attach_qat(model, 8)
    with pytest.raises(ValueError, match="already attached"):
        attach_qat(model, 4)


def test_attach_on_a_weight_with_another_parametrization_is_an_error():
    model = nn.Sequential(nn.Linear(3, 3))
    torch.nn.utils.parametrizations.weight_norm(model[0])
    with pytest.raises(ValueError, match="already carries a parametrization"):
        attach_qat(model, 8)
    assert attach_qat(model, 8, exclude=("0",)) == []


# -- set bits / remove -----------------------------------------------------------------


def test_set_qat_bits_changes_forward_and_32_is_identity():
    model = _net()
    plain = {n: p.detach().clone() for n, p in model.named_parameters()}
    attach_qat(model, 8)
    assert set_qat_bits(model, 3) == ["conv", "fc", "head"]
    assert torch.equal(model.fc.weight, fake_quantize(plain["fc.weight"], 3))
    set_qat_bits(model, 32)
    assert is_qat(model)
    assert torch.equal(model.fc.weight, plain["fc.weight"])
    set_qat_bits(model, 16)
    assert torch.equal(model.fc.weight, fake_quantize(plain["fc.weight"], 16))


def test_forward_equals_a_plain_model_with_quantized_weights():
    model = _net().eval()
    ref = _net().eval()
    with torch.no_grad():
        for name in ("conv", "fc", "head"):
            w = ref.get_submodule(name).weight
            w.copy_(fake_quantize(w, 4))
    attach_qat(model, 4)
    assert torch.equal(model(_x()), ref(_x()))


@pytest.mark.parametrize("bake", [True, False])
def test_remove_restores_parameter_objects_names_and_order(bake):
    model = _net()
    before = _names(model)
    latent = {n: p.detach().clone() for n, p in model.named_parameters()}
    attach_qat(model, 4)
    assert _names(model) != before  # parametrize moved the weights
    assert remove_qat(model, bake=bake) == ["conv", "fc", "head"]
    assert not is_qat(model)
    assert _names(model) == before  # same names, same order, same objects
    for name in ("conv", "fc", "head"):
        mod = model.get_submodule(name)
        assert not hasattr(mod, "parametrizations")
        assert type(mod) in (nn.Conv1d, nn.Linear)  # parametrize's injected class is gone
        want = fake_quantize(latent[f"{name}.weight"], 4) if bake else latent[f"{name}.weight"]
        assert torch.equal(mod.weight, want)
        assert mod.weight.requires_grad


def test_bake_uses_the_current_bit_width():
    model = nn.Linear(6, 6)
    latent = model.weight.detach().clone()
    attach_qat(model, 8)
    set_qat_bits(model, 2)
    remove_qat(model, bake=True)
    assert torch.equal(model.weight.detach(), fake_quantize(latent, 2))
    assert model.weight.detach().unique().numel() <= 3


def test_remove_without_qat_is_a_no_op():
    model = _net()
    before = _names(model)
    assert remove_qat(model) == []
    assert _names(model) == before


def test_parameter_order_while_attached():
    """parametrize moves a weight into the module's new `parametrizations` child, which
    comes after the module's own parameters and after its other children."""
    lin = nn.Linear(2, 2)
    w = lin.weight
    attach_qat(lin, 8)
    assert [n for n, _ in lin.named_parameters()] == ["bias", "parametrizations.weight.original"]
    assert lin.parametrizations.weight.original is w

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3))
            self.scale = nn.Parameter(torch.ones(3))
            self.inner = nn.Linear(3, 3)

        def forward(self, x):
            return self.inner(x * self.weight * self.scale)

    blk = Block()
    before = [n for n, _ in blk.named_parameters()]
    assert before == ["weight", "scale", "inner.weight", "inner.bias"]
    attach_qat(blk, 8)
    assert [n for n, _ in blk.named_parameters()] == [
        "scale", "inner.bias", "inner.parametrizations.weight.original",
        "parametrizations.weight.original"]
    remove_qat(blk)
    assert [n for n, _ in blk.named_parameters()] == before


# -- optimizers and the MoMos pool across attach/remove --------------------------------


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam])
def test_optimizer_built_before_attach_survives_attach_and_remove(opt_cls):
    model = _net()
    params = list(model.parameters())
    opt = opt_cls(model.parameters(), lr=0.05)
    fc_w = model.fc.weight
    attach_qat(model, 4)
    assert model.fc.parametrizations.weight.original is fc_w
    start = fc_w.detach().clone()
    for _ in range(2):
        opt.zero_grad()
        model(_x()).square().mean().backward()
        assert fc_w.grad is not None and fc_w.grad.abs().sum() > 0
        opt.step()
    assert not torch.equal(fc_w.detach(), start)  # the latent Parameter was trained
    # Quantized forward follows the latent weight.
    assert torch.equal(model.fc.weight, fake_quantize(fc_w.detach(), 4))
    remove_qat(model, bake=False)
    assert model.fc.weight is fc_w
    assert list(model.parameters()) == params  # same objects, same order as the optimizer's
    middle = fc_w.detach().clone()
    opt.zero_grad()
    model(_x()).square().mean().backward()
    opt.step()
    assert not torch.equal(fc_w.detach(), middle)


def test_ste_gradient_through_the_parametrization():
    model = _net().eval()
    ref = _net().eval()
    with torch.no_grad():
        for name in ("conv", "fc", "head"):
            w = ref.get_submodule(name).weight
            w.copy_(fake_quantize(w, 3))
    attach_qat(model, 3)
    model(_x()).sum().backward()
    ref(_x()).sum().backward()
    for name in ("conv", "fc", "head"):
        latent = model.get_submodule(name).parametrizations.weight.original
        assert torch.allclose(latent.grad, ref.get_submodule(name).weight.grad, atol=1e-6)


def test_pool_parameters_after_attach_are_the_latent_originals():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    w0, b0, w2, b2 = model.parameters()
    attach_qat(model, 4)
    pooled = pool_parameters(model)
    assert [n for n, _ in pooled] == [
        "0.bias", "0.parametrizations.weight.original",
        "2.bias", "2.parametrizations.weight.original"]
    assert [t for _, t in pooled] == [b0, w0, b2, w2]  # identity, not values
    # A MoMos-style write into the pool lands in the latent weights; the forward then
    # sees their quantization.
    layout = layout_of(pooled, 2)
    pool = to_blocks(pooled, layout)
    write_blocks(pooled, pool.round(decimals=1), layout)
    assert torch.equal(w0.detach(), w0.detach().round(decimals=1))
    assert torch.equal(model[0].weight, fake_quantize(w0.detach(), 4))
    remove_qat(model, bake=False)
    assert [t for _, t in pool_parameters(model)] == [w0, b0, w2, b2]


def test_quantize_weight_is_the_forward_value_bit_for_bit():
    w = torch.tensor([-0.01, 0.0, -0.0, 0.3, -1.0, 0.49])
    for q in (2, 3, 8):
        got = quantize_weight(w, q)
        want = FakeQuantize(q)(w.clone().requires_grad_()).detach()
        assert torch.equal(got.view(torch.int32), want.view(torch.int32))
        assert not (got.view(torch.int32) == torch.tensor(-0.0).view(torch.int32)).any()
    assert quantize_weight(w, 32) is not w and torch.equal(quantize_weight(w, 32), w)


def test_quantized_weights_names_the_plain_weights():
    from collections import OrderedDict

    model = torch.nn.Sequential(OrderedDict(fc=torch.nn.Linear(3, 2), bn=torch.nn.BatchNorm1d(2),
                                            out=torch.nn.Linear(2, 1)))
    assert quantized_weights(model) == []
    attach_qat(model, 4)
    assert quantized_weights(model) == ["fc.weight", "out.weight"]
    remove_qat(model)
    assert quantized_weights(model) == []
