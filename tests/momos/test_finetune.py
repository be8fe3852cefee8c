"""Frozen-mosaic fine-tuning: the model computes with bank[mosaic], the bank is the only
trainable tensor, its gradient is the sum over the blocks that use each motif, and bake()
gives back a plain model with the same Parameter objects."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import momos.finetune as finetune_mod
from momos.blocks import BlockLayout, layout_of, pool_parameters, to_blocks
from momos.finetune import MotifBank, bake, freeze_mosaic, is_frozen
from momos.projection import MoMos
from momos.qat import attach_qat, remove_qat


def _mlp(seed: int = 0, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(dtype)


def _projected(seed: int = 0, s: int = 3, k: int = 6, dtype=torch.float32):
    """A model projected by MoMos: 35+7+21+3 weights, s=3 -> 12+3+7+1 = 23 blocks,
    padding in three of the four tensors."""
    model = _mlp(seed, dtype)
    mm = MoMos(s=s, k=k, seed=seed)
    mm.project(model)
    return model, mm


def _x(n: int = 16, seed: int = 1, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _effective(model: nn.Module, layout) -> list[tuple[str, torch.Tensor]]:
    """The tensors the forward uses, under the layout's names (parametrized or not)."""
    out = []
    for sp in layout.spans:
        mod_name, _, tname = sp.name.rpartition(".")
        out.append((sp.name, getattr(model.get_submodule(mod_name), tname)))
    return out


def _assert_weights_are_motifs(model, bank: MotifBank) -> None:
    layout = bank.layout
    pool = to_blocks(_effective(model, layout), layout)
    mask = layout.real_mask()
    want = bank.weight.detach()[bank.mosaic]
    assert torch.equal(pool[mask], want[mask])


# -- freezing ---------------------------------------------------------------------------


def test_all_exports_exist():
    assert sorted(finetune_mod.__all__) == sorted(["MotifBank", "freeze_mosaic", "bake",
                                                   "is_frozen"])


def test_forward_equals_the_projected_model_exactly():
    model, mm = _projected()
    ref = copy.deepcopy(model)
    bank = freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
    assert is_frozen(model) and not is_frozen(ref)
    assert torch.equal(model(_x()), ref(_x()))
    for (_, got), (_, want) in zip(_effective(model, mm.layout), ref.named_parameters()):
        assert torch.equal(got, want)
    _assert_weights_are_motifs(model, bank)


def test_bank_is_the_only_trainable_tensor_and_a_copy():
    model, mm = _projected()
    originals = list(model.parameters())
    bank = freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
    assert (bank.k, bank.s, bank.m) == (mm.motifs.shape[0], 3, mm.layout.m)
    assert bank.weight.dtype == torch.float32 and bank.weight.device.type == "cpu"
    assert torch.equal(bank.weight.detach(), mm.motifs) and torch.equal(bank.mosaic, mm.mosaic)
    assert bank.weight.data_ptr() != mm.motifs.data_ptr()
    assert bank.mosaic.data_ptr() != mm.mosaic.data_ptr()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0] is bank.weight
    assert all(not p.requires_grad for p in originals)
    # The latent originals are kept, untouched, as the parametrizations' originals.
    assert model[0].parametrizations.weight.original is originals[0]
    assert model[0].parametrizations.bias.original is originals[1]


def test_conv_and_batchnorm_parameters_and_deepcopy():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))
    mm = MoMos(s=4, k=5, seed=0)
    mm.project(model)
    ref = copy.deepcopy(model)
    bank = freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
    assert [sp.name for sp in mm.layout.spans] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(x), ref(x))  # train mode: BN batch statistics, same affine
    _assert_weights_are_motifs(model, bank)
    twin = copy.deepcopy(model)  # the copy shares one (copied) bank across its tensors
    assert twin[0].parametrizations.weight[0].bank is twin[3].parametrizations.bias[0].bank
    assert twin[0].parametrizations.weight[0].bank is not bank
    assert torch.equal(twin(x), model(x))


def test_bank_follows_model_dtype_and_device():
    model, mm = _projected(dtype=torch.float64)
    bank = freeze_mosaic(model, mm.motifs.float(), mm.mosaic.int(), mm.layout)
    assert bank.weight.dtype == torch.float64 and bank.mosaic.dtype == torch.int64
    w = bank.weight
    model.float()  # converting the model converts the shared bank, same Parameter object
    assert bank.weight is w and w.dtype == torch.float32
    assert model(_x()).dtype == torch.float32
    _assert_weights_are_motifs(model, bank)


def test_gradient_matches_finite_differences():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2)).double()
    layout = layout_of(pool_parameters(model), 2)  # 6+2+4+2 -> 3+1+2+1 = 7 blocks
    motifs = torch.randn(3, 2, dtype=torch.float64)
    mosaic = torch.tensor([0, 1, 2, 1, 1, 0, 2])
    bank = freeze_mosaic(model, motifs, mosaic, layout)
    x = torch.randn(4, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda w: model(x), (bank.weight,), eps=1e-6, atol=1e-7)


def test_motif_gradient_is_the_sum_over_its_blocks():
    model, mm = _projected(dtype=torch.float64)
    plain = copy.deepcopy(model)
    bank = freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
    x = _x(dtype=torch.float64)
    model(x).square().sum().backward()
    plain(x).square().sum().backward()
    grads = [(n, p.grad) for n, p in plain.named_parameters()]
    block_grads = to_blocks(grads, mm.layout)  # padding entries: zero
    want = torch.zeros_like(bank.weight).index_add_(0, mm.mosaic, block_grads)
    torch.testing.assert_close(bank.weight.grad, want, rtol=1e-12, atol=1e-12)
    assert all(p.grad is None for n, p in model.named_parameters() if "original" in n)


def test_training_lowers_loss_and_keeps_every_weight_on_its_motif():
    model, mm = _projected(seed=2)
    mosaic0 = mm.mosaic.clone()
    latent0 = [p.detach().clone() for p in model.parameters()]
    bank = freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
    x = _x(64)
    y = torch.sin(x @ torch.linspace(-1, 1, 15).view(5, 3))
    opt = torch.optim.Adam([bank.weight], lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = (model(x) - y).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        _assert_weights_are_motifs(model, bank)
        assert torch.equal(bank.mosaic, mosaic0)
        assert tuple(bank.weight.shape) == tuple(mm.motifs.shape)
    assert losses[-1] < 0.9 * losses[0]
    assert not torch.equal(bank.weight.detach(), mm.motifs)
    # The latent originals never move while frozen.
    originals = [p for n, p in model.named_parameters() if n.endswith("original")]
    assert all(torch.equal(p, q) for p, q in zip(originals, latent0))


def test_tuning_the_bank_on_distortion_beats_the_projection():
    """Same description length (k, s, m, mosaic), less distortion."""
    model = _mlp(3)
    target = to_blocks(pool_parameters(model), layout_of(pool_parameters(model), 3))
    mm = MoMos(s=3, k=6, seed=3)
    stats = mm.project(model)
    bank = freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
    mask = mm.layout.real_mask()
    opt = torch.optim.Adam([bank.weight], lr=2e-2)
    for _ in range(60):
        opt.zero_grad()
        dist = torch.where(mask, (bank.blocks() - target).square(), 0.0).sum()
        dist.backward()
        opt.step()
    _assert_weights_are_motifs(model, bank)
    pool = to_blocks(_effective(model, mm.layout), mm.layout)
    tuned = torch.where(mask, (pool - target).double().square(), 0.0).sum().item()
    assert tuned < 0.9 * stats.distortion
    assert torch.equal(bank.mosaic, mm.mosaic)


def test_an_optimizer_on_the_bank_keeps_working():
    model, mm = _projected()
    bank = freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1,
                          momentum=0.9)
    assert opt.param_groups[0]["params"][0] is bank.weight
    outs = []
    for _ in range(4):
        with torch.no_grad():
            model(_x())  # extra forward passes in between must not replace anything
        opt.zero_grad()
        out = model(_x())
        outs.append(out.detach())
        out.square().mean().backward()
        opt.step()
        assert opt.param_groups[0]["params"][0] is bank.weight
        assert model[0].parametrizations.weight[0].bank is bank
        _assert_weights_are_motifs(model, bank)
    assert all(not torch.equal(a, b) for a, b in zip(outs, outs[1:]))


# -- bake -------------------------------------------------------------------------------


def test_bake_gives_a_plain_model_with_the_same_parameters_and_outputs():
    model, mm = _projected()
    before = [(n, p) for n, p in model.named_parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)  # built before freezing
    bank = freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
    tune = torch.optim.Adam([bank.weight], lr=1e-2)
    for _ in range(3):
        tune.zero_grad()
        model(_x()).square().mean().backward()
        tune.step()
    out = model(_x()).detach()
    tuned = bank.blocks().detach()
    assert bake(model) is model
    assert not is_frozen(model)
    for mod in model.modules():
        assert not hasattr(mod, "parametrizations")
        assert type(mod) in (nn.Sequential, nn.Linear, nn.Tanh)
    after = [(n, p) for n, p in model.named_parameters()]
    assert [n for n, _ in after] == [n for n, _ in before]
    assert all(p is q for (_, p), (_, q) in zip(after, before))
    assert all(p.requires_grad for _, p in after)
    assert torch.equal(model(_x()), out)
    mask = mm.layout.real_mask()
    pool = to_blocks(pool_parameters(model), mm.layout)
    assert torch.equal(pool[mask], tuned[mask])
    # The optimizer built before freeze_mosaic trains the baked model.
    w0 = model[0].weight.detach().clone()
    opt.zero_grad()
    model(_x()).square().mean().backward()
    opt.step()
    assert not torch.equal(model[0].weight.detach(), w0)


def test_bake_without_freeze_is_an_error():
    with pytest.raises(ValueError, match="no frozen mosaic"):
        bake(_mlp())


def test_tied_parameters_stay_tied_and_on_their_motifs():
    torch.manual_seed(0)
    enc, dec = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    dec.weight = enc.weight
    model = nn.Sequential(enc, nn.Tanh(), dec)
    mm = MoMos(s=2, k=3, seed=0)
    mm.project(model)  # one pooled tensor: named_parameters deduplicates
    assert [sp.name for sp in mm.layout.spans] == ["0.weight"]
    bank = freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
    opt = torch.optim.SGD([bank.weight], lr=0.1)
    model(torch.randn(3, 4)).square().sum().backward()
    opt.step()
    assert torch.equal(model[0].weight, model[2].weight)
    assert torch.equal(model[2].weight.detach(), bank.tensor(mm.layout.spans[0]).detach())
    bake(model)
    assert model[0].weight is model[2].weight
    assert torch.equal(model[0].weight.detach(), bank.tensor(mm.layout.spans[0]).detach())


# -- errors -----------------------------------------------------------------------------


def test_mismatched_layout_is_an_error():
    model, mm = _projected()
    other = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 4))
    wrong = layout_of(pool_parameters(other), 3)
    with pytest.raises(ValueError, match="layout does not match the model"):
        freeze_mosaic(model, mm.motifs, mm.mosaic[: wrong.m], wrong)
    short = layout_of(pool_parameters(model)[:2], 3)
    with pytest.raises(ValueError, match=r"4 vs 2 tensors"):
        freeze_mosaic(model, mm.motifs, mm.mosaic[: short.m], short)
    model[2].bias.requires_grad_(False)  # now not pooled
    with pytest.raises(ValueError, match="layout does not match"):
        freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
    with pytest.raises(TypeError, match="BlockLayout"):
        freeze_mosaic(model, mm.motifs, mm.mosaic, "layout")
    assert not is_frozen(model)


def test_bad_mosaic_is_an_error():
    model, mm = _projected()
    k = mm.motifs.shape[0]
    with pytest.raises(ValueError, match=r"one entry per pool block, shape \(23,\)"):
        freeze_mosaic(model, mm.motifs, mm.mosaic[:-1], mm.layout)
    with pytest.raises(ValueError, match=r"\[0, k\)"):
        freeze_mosaic(model, mm.motifs, torch.full((23,), k), mm.layout)
    with pytest.raises(ValueError, match=r"\[0, k\)"):
        freeze_mosaic(model, mm.motifs, mm.mosaic - 1, mm.layout)
    with pytest.raises(TypeError, match="integer"):
        freeze_mosaic(model, mm.motifs, mm.mosaic.float(), mm.layout)
    with pytest.raises(ValueError, match=r"shape \(k, s\)"):
        freeze_mosaic(model, mm.motifs[:, :2], mm.mosaic, mm.layout)
    with pytest.raises(TypeError, match="floating"):
        freeze_mosaic(model, mm.motifs.long(), mm.mosaic, mm.layout)
    assert not is_frozen(model)


def test_freeze_twice_and_with_qat_attached_are_errors():
    model, mm = _projected()
    freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
    with pytest.raises(ValueError, match="already frozen"):
        freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
    with pytest.raises(ValueError, match="already carries a parametrization"):
        attach_qat(model, 8)
    qmodel, qmm = _projected()
    attach_qat(qmodel, 8)
    with pytest.raises(ValueError, match="QAT attached"):
        freeze_mosaic(qmodel, qmm.motifs, qmm.mosaic, qmm.layout)
    remove_qat(qmodel, bake=False)  # the latent weights are the projected ones again
    bank = freeze_mosaic(qmodel, qmm.motifs, qmm.mosaic, qmm.layout)
    _assert_weights_are_motifs(qmodel, bank)


def test_empty_layout_is_an_error():
    model = _mlp()
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to freeze"):
        freeze_mosaic(model, torch.zeros(1, 2), torch.zeros(0, dtype=torch.long),
                      BlockLayout(2, ()))


def test_mixed_dtypes_are_an_error():
    model, mm = _projected()
    model[2].double()
    with pytest.raises(ValueError, match="share one dtype and device"):
        freeze_mosaic(model, mm.motifs, mm.mosaic, mm.layout)
