"""MoMos.project against the reference oracle (tests/momos/reference.py), bit for bit."""

from __future__ import annotations

import copy

import momos_reference as ref
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from momos import projection
from momos.projection import MOTIF_INITS, MoMos, ProjectionStats, project


def small_model(seed: int = 0) -> nn.Module:
    """Odd sizes everywhere (91 weights), so every s > 1 pads; LayerNorm keeps its ones and
    zeros (duplicated blocks)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 3), nn.Conv2d(3, 2, 3), nn.LayerNorm(7), nn.Linear(3, 1, bias=False)
    )


def weights(source) -> list[torch.Tensor]:
    return [t.detach().clone() for t in ref.pooled_tensors(source)]


def apply(source, new: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for t, w in zip(ref.pooled_tensors(source), new):
            t.copy_(w)


def assert_same(stats: ProjectionStats, mm: MoMos, source, step: ref.Step) -> None:
    got = ref.pooled_tensors(source)
    assert len(got) == len(step.weights)
    for a, b in zip(got, step.weights):
        assert a.dtype == b.dtype and torch.equal(a.detach().cpu(), b)
    assert stats.k == step.k
    assert stats.changed == step.changed
    assert stats.distortion == pytest.approx(step.distortion, rel=1e-12, abs=1e-300)
    assert torch.equal(stats.motif_counts.cpu(), step.motif_counts)
    assert torch.equal(mm.motifs.cpu(), step.motifs)
    assert torch.equal(mm.mosaic.cpu(), step.mosaic)
    assert mm.layout.m == step.m == int(stats.motif_counts.sum())


def check_against_reference(source, s, k=None, capacity=None, force_zero=True, seed=0,
                            calls=2, **options) -> list[ProjectionStats]:
    """``calls`` successive projections by one MoMos vs the reference with its own
    advancing generator, each reference step applied to its own copy of the weights."""
    mirror = copy.deepcopy(source)
    mm = MoMos(s, k=k, capacity=capacity, force_zero=force_zero, seed=seed, **options)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(calls):
        step = ref.project(weights(mirror), s, k, capacity, force_zero, gen)
        apply(mirror, step.weights)
        stats = mm.project(source)
        assert_same(stats, mm, source, step)
        out.append(stats)
    return out


SIZES = [dict(k=1), dict(k=5), dict(k=40), dict(k=10**6),
         dict(capacity=0.05), dict(capacity=0.3), dict(capacity=1.0)]


@pytest.mark.parametrize("force_zero", [True, False])
@pytest.mark.parametrize("size", SIZES, ids=lambda d: "-".join(f"{a}={b}" for a, b in d.items()))
@pytest.mark.parametrize("s", [1, 2, 3, 4, 7])
def test_matches_reference(s, size, force_zero):
    seed = 1000 * s + 10 * SIZES.index(size) + force_zero
    check_against_reference(small_model(seed), s, force_zero=force_zero, seed=seed, **size)


@given(
    shapes=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 6), st.booleans()),
                    min_size=1, max_size=5),
    s=st.integers(1, 8), k=st.integers(1, 30), force_zero=st.booleans(),
    seed=st.integers(0, 2**32), integral=st.booleans(),
)
def test_matches_reference_any_shapes(shapes, s, k, force_zero, seed, integral):
    """Random shapes (some empty, some frozen); integer weights give many exact ties."""
    torch.manual_seed(seed)
    params = nn.ParameterList()
    for rows, cols, trainable in shapes:
        w = torch.randn(rows, cols)
        params.append(nn.Parameter(w.round() if integral else w, requires_grad=trainable))
    if not ref.pooled_tensors(params):
        params.append(nn.Parameter(torch.randn(3)))
    check_against_reference(params, s, k=k, force_zero=force_zero, seed=seed)


def test_seed_none_uses_global_rng():
    a, b = small_model(1), small_model(1)
    torch.manual_seed(7)
    MoMos(2, k=6, seed=None).project(a)
    torch.manual_seed(7)
    step = ref.project(weights(b), 2, k=6, generator=None)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), step.weights))


def test_generator_advances_between_calls():
    mm, fresh = MoMos(3, k=8, seed=5), MoMos(3, k=8, seed=5)
    first, second, again = small_model(2), small_model(2), small_model(2)
    mm.project(first)
    bank1 = mm.motifs
    mm.project(second)  # same weights, next permutation
    assert not torch.equal(bank1, mm.motifs)
    fresh.project(again)  # a new MoMos with the same seed starts over
    assert torch.equal(fresh.motifs, bank1)
    assert all(torch.equal(x, y) for x, y in zip(weights(first), weights(again)))


def test_padding_excluded_from_distortion_but_counted_in_usage():
    # one tensor [5, 5, 5], s = 2: blocks [5, 5] and [5, 0 (padding)]; k = 1, no zero motif
    for seed in range(50):
        if torch.randperm(2, generator=torch.Generator().manual_seed(seed))[0] == 0:
            break
    p = nn.Parameter(torch.full((3,), 5.0))
    holder = nn.ParameterList([p])
    mm = MoMos(2, k=1, force_zero=False, seed=seed)
    stats = mm.project(holder)
    assert torch.equal(mm.motifs, torch.tensor([[5.0, 5.0]]))  # the padding block [5, 0] -> [5, 5]
    assert stats.distortion == 0.0 and stats.changed == 0  # only padding changed
    assert stats.motif_counts.tolist() == [2]
    assert torch.equal(p.detach(), torch.full((3,), 5.0))


def test_k1_force_zero_zeroes_everything():
    model = small_model(3)
    before = weights(model)
    stats = MoMos(4, k=1, seed=0).project(model)
    assert all(not w.any() for w in weights(model))
    assert stats.k == 1 and stats.motif_counts.tolist() == [sum(-(-w.numel() // 4) for w in before)]
    assert stats.distortion == pytest.approx(sum(float((w.double() ** 2).sum()) for w in before))
    assert stats.changed == sum(int((w != 0).sum()) for w in before)


def test_k1_without_force_zero_is_one_sampled_block():
    model = small_model(4)
    mm = MoMos(2, k=1, force_zero=False, seed=1)
    mm.project(model)
    assert mm.motifs.shape == (1, 2)
    for w in weights(model):
        flat = w.reshape(-1)
        assert torch.equal(flat, mm.motifs[0].repeat(flat.numel())[: flat.numel()])


def test_k_at_least_m_keeps_distinct_blocks_without_force_zero():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1))  # 12+3+3+1 weights, all distinct
    before = weights(model)
    mm = MoMos(2, k=1000, force_zero=False, seed=0)
    stats = mm.project(model)
    m = 6 + 2 + 2 + 1
    assert stats.k == m and mm.motifs.shape == (m, 2)
    assert stats.distortion == 0.0 and stats.changed == 0
    assert sorted(stats.motif_counts.tolist()) == [1] * m
    assert all(torch.equal(a, b) for a, b in zip(before, weights(model)))


@pytest.mark.parametrize("force_zero", [True, False])
def test_duplicated_motifs_mostly_zero_model(force_zero):
    model = small_model(5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(torch.rand_like(p) < 0.15)  # ~85% exact zeros
    mirror = copy.deepcopy(model)
    check_against_reference(model, 2, k=20, force_zero=force_zero, seed=3, calls=1)
    mm = MoMos(2, k=20, force_zero=force_zero, seed=3)
    stats = mm.project(mirror)
    bank = [tuple(z) for z in mm.motifs.tolist()]
    assert len(set(bank)) < len(bank)  # duplicates really drawn
    first: dict = {}
    for i, z in enumerate(bank):
        if first.setdefault(z, i) != i:  # a later copy never wins a tie
            assert stats.motif_counts[i] == 0


def test_ties_go_to_lowest_index():
    # s = 1, integer weights: 1 is as near to 0 as to 2, and the zero motif comes first
    p = nn.Parameter(torch.tensor([1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]))
    holder = nn.ParameterList([p])
    mm = MoMos(1, k=2, seed=0)
    mm.project(holder)
    assert mm.motifs.tolist() == [[0.0], [2.0]]
    assert p.detach().tolist() == [0.0] + [2.0] * 7


def test_frozen_and_empty_parameters_are_left_out():
    model = small_model(6)
    model[1].weight.requires_grad_(False)
    model.register_parameter("empty", nn.Parameter(torch.empty(0, 4)))
    frozen = model[1].weight.detach().clone()
    check_against_reference(model, 3, k=4, seed=11)
    assert torch.equal(model[1].weight, frozen)
    mm = MoMos(3, k=4, seed=11)
    mm.project(model)
    names = [sp.name for sp in mm.layout.spans]
    assert "1.weight" not in names and "empty" not in names and "1.bias" in names


def test_parameters_stay_the_same_objects():
    model = small_model(7)
    params = list(model.parameters())
    ptrs = [p.data_ptr() for p in params]
    MoMos(2, capacity=0.2, seed=0).project(model)
    assert all(a is b for a, b in zip(params, model.parameters()))
    assert [p.data_ptr() for p in params] == ptrs
    assert all(p.requires_grad and p.grad is None for p in params)


def test_state_dict_in_place():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(9, 2))
    model.train()(torch.randn(4, 2, 5, 3))  # non-trivial running stats
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    tracked = sd["1.num_batches_tracked"].clone()
    mirror = {k: v.clone() for k, v in sd.items()}
    step = ref.project(weights(mirror), 2, k=7, generator=torch.Generator().manual_seed(4))
    mm = MoMos(2, k=7, seed=4)
    stats = mm.project(sd, include_buffers=True)
    assert_same(stats, mm, sd, step)
    assert "1.running_var" in [sp.name for sp in mm.layout.spans]  # buffers pooled too
    assert torch.equal(sd["1.num_batches_tracked"], tracked)


def test_state_dict_buffers_are_not_pooled_by_default():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(9, 2))
    model.train()(torch.randn(4, 2, 5, 3))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    running = sd["1.running_var"].clone()
    mm = MoMos(2, k=7, seed=4)
    mm.project(sd)
    # The same pool as the module's: its parameters, in order.
    assert [sp.name for sp in mm.layout.spans] == [n for n, _ in model.named_parameters()]
    assert torch.equal(sd["1.running_var"], running)


def test_stats_match_direct_computation():
    model = small_model(9)
    before = weights(model)
    mm = MoMos(3, capacity=0.25, seed=2)
    stats = mm.project(model)
    after = weights(model)
    assert stats.distortion == pytest.approx(
        sum(float(((a.double() - b.double()) ** 2).sum()) for a, b in zip(after, before)),
        rel=1e-12)
    assert stats.changed == sum(int((a != b).sum()) for a, b in zip(after, before))
    assert int(stats.motif_counts.sum()) == mm.layout.m and stats.motif_counts.dtype == torch.int64
    assert stats.k == max(1, int(0.25 * mm.layout.m)) == mm.motifs.shape[0]
    assert isinstance(stats.distortion, float) and isinstance(stats.changed, int)
    # the weights are the mosaic of the bank, padding trimmed
    flat = mm.motifs[mm.mosaic].reshape(-1)
    for sp, w in zip(mm.layout.spans, after):
        assert torch.equal(flat[sp.start * 3 : sp.start * 3 + sp.numel], w.reshape(-1))
    with pytest.raises(AttributeError):
        stats.k = 3  # frozen


def test_float64_model_keeps_its_dtype():
    model = small_model(10).double()
    mm = MoMos(2, k=9, seed=0)
    check_against_reference(model, 2, k=9, seed=0, calls=1)
    mm.project(model)
    assert mm.motifs.dtype == torch.float64


def test_project_function_is_one_step():
    a, b = small_model(11), small_model(11)
    sa = project(a, 4, k=5, seed=9)
    sb = MoMos(4, k=5, seed=9).project(b)
    assert (sa.k, sa.distortion, sa.changed) == (sb.k, sb.distortion, sb.changed)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))


# -- kmeans --------------------------------------------------------------------------------


@pytest.mark.parametrize("force_zero", [True, False])
@pytest.mark.parametrize("s", [1, 2, 4])
def test_kmeans_never_worse_than_sampled(s, force_zero):
    torch.manual_seed(s)
    model = nn.Sequential(nn.Linear(30, 20), nn.Linear(20, 7))
    sampled, refined = copy.deepcopy(model), copy.deepcopy(model)
    kw = dict(k=12, force_zero=force_zero, seed=s)
    st_sample = MoMos(s, **kw).project(sampled)
    mm = MoMos(s, motif_init="kmeans", kmeans_iters=5, **kw)
    st_kmeans = mm.project(refined)
    assert st_kmeans.distortion < st_sample.distortion  # strictly better on random weights
    if force_zero:
        assert not mm.motifs[0].any()
    # the mosaic is the exact nearest-motif assignment of the refined bank, applied
    pool = ref.blocks_of(weights(model), s)
    assert torch.equal(mm.mosaic, ref.nearest(pool, mm.motifs))
    assert int(st_kmeans.motif_counts.sum()) == mm.layout.m


def test_kmeans_empty_cluster_keeps_its_motif():
    # s = 1, ten 5s and a 1 and a 2; a seed whose bank is three copies of 5
    values = [5.0] * 10 + [1.0, 2.0]
    seed = next(sd for sd in range(1000)
                if (torch.randperm(12, generator=torch.Generator().manual_seed(sd))[:3] < 10).all())
    p = nn.Parameter(torch.tensor(values))
    mm = MoMos(1, k=3, force_zero=False, seed=seed, motif_init="kmeans", kmeans_iters=1)
    stats = mm.project(nn.ParameterList([p]))
    # Lloyd: every block ties to motif 0 -> mean 53/12; motifs 1, 2 are empty and stay 5
    assert mm.motifs.tolist() == [[torch.tensor(53 / 12).item()], [5.0], [5.0]]
    assert mm.mosaic.tolist() == [1] * 10 + [0, 0]
    assert stats.motif_counts.tolist() == [2, 10, 0]


def test_kmeans_zero_iters_is_sample():
    stats = check_against_reference(small_model(12), 3, k=6, seed=4, motif_init="kmeans",
                                    kmeans_iters=0)
    assert len(stats) == 2


def test_kmeans_keeps_sampled_bank_when_refinement_is_worse(monkeypatch):
    monkeypatch.setattr(projection, "_cluster_means", lambda pool, z, mosaic, fz: z + 100.0)
    check_against_reference(small_model(13), 2, k=6, seed=1, motif_init="kmeans",
                            kmeans_iters=3)


def test_kmeans_draws_the_same_permutations():
    a, b = small_model(14), small_model(14)
    ma = MoMos(2, k=6, seed=3, motif_init="kmeans", kmeans_iters=2)
    mb = MoMos(2, k=6, seed=3)
    ma.project(a), mb.project(b)
    assert torch.equal(ma._generator.get_state(), mb._generator.get_state())


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(s=0, k=2), "block size s must be an integer >= 1"),
    (dict(s=2.0, k=2), "block size s must be an integer"),
    (dict(s=True, k=2), "block size s must be an integer"),
    (dict(s=2), "exactly one of k"),
    (dict(s=2, k=3, capacity=0.1), "exactly one of k"),
    (dict(s=2, k=0), "k must be an integer >= 1"),
    (dict(s=2, k=2.5), "k must be an integer"),
    (dict(s=2, capacity=0.0), r"capacity must be a number in \(0, 1\]"),
    (dict(s=2, capacity=1.5), r"capacity must be a number in \(0, 1\]"),
    (dict(s=2, capacity=float("nan")), "capacity must be"),
    (dict(s=2, capacity="0.1"), "capacity must be"),
    (dict(s=2, k=2, motif_init="random"), "unknown motif_init 'random'; valid: sample, kmeans"),
    (dict(s=2, k=2, motif_init="kmeans", kmeans_iters=-1), "kmeans_iters must be an integer >= 0"),
    (dict(s=2, k=2, kmeans_iters=3), "kmeans_iters=3 needs motif_init='kmeans'"),
    (dict(s=2, k=2, assign=3), "unknown assign method 3; valid: 'auto', 'kdtree'"),
    (dict(s=2, k=2, seed=1.5), "seed must be an integer or None"),
    (dict(s=2, k=2, seed=2**80), "seed .* out of range"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MoMos(**kwargs)


def test_unknown_assign_method():
    with pytest.raises(ValueError, match="unknown assign method 'no-such-method'; valid: 'auto'"):
        MoMos(2, k=2, assign="no-such-method")


def test_motif_inits_registry():
    assert MOTIF_INITS == ("sample", "kmeans")


def test_bad_models():
    mm = MoMos(2, k=2, seed=0)
    with pytest.raises(TypeError, match="nn.Module or a state dict"):
        mm.project([torch.ones(3)])
    with pytest.raises(ValueError, match="no parameters to pool"):
        mm.project(nn.ReLU())
    with pytest.raises(ValueError, match="'b' is torch.float64 .* share one dtype and device"):
        mm.project({"a": torch.ones(3), "b": torch.ones(2, dtype=torch.float64)})
    nan = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    with torch.no_grad():
        nan[1].bias[1] = float("nan")
    before = weights(nan)
    with pytest.raises(ValueError, match="'1.bias' has NaN or infinite values"):
        mm.project(nan)
    assert all(torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)  # untouched
               for a, b in zip(before, weights(nan)))
    assert mm.motifs is None  # nothing kept from a failed call


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("force_zero", [True, False])
def test_cuda_stays_on_device_and_matches_cpu(force_zero):
    cpu = small_model(15)
    gpu = copy.deepcopy(cpu).cuda()
    kw = dict(capacity=0.2, force_zero=force_zero, seed=6)
    m_cpu, m_gpu = MoMos(3, **kw), MoMos(3, **kw)
    for _ in range(2):
        s_cpu, s_gpu = m_cpu.project(cpu), m_gpu.project(gpu)
        assert all(p.is_cuda for p in gpu.parameters())
        assert m_gpu.motifs.is_cuda and m_gpu.mosaic.is_cuda and s_gpu.motif_counts.is_cuda
        assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu.parameters(), gpu.parameters()))
        assert torch.equal(s_cpu.motif_counts, s_gpu.motif_counts.cpu())
        assert (s_cpu.k, s_cpu.changed) == (s_gpu.k, s_gpu.changed)
        assert s_gpu.distortion == pytest.approx(s_cpu.distortion, rel=1e-12)
    km = MoMos(3, motif_init="kmeans", kmeans_iters=3, **kw)
    km.project(gpu)
    assert km.motifs.is_cuda
