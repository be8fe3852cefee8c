"""momos.assign.nearest_motif against a float64 brute-force oracle written here."""

from __future__ import annotations

import operator
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from momos import assign
from momos.assign import SEARCH_METHODS, nearest_motif

FAST = ["kdtree", "kdtree_numba", "matmul"]
ALL = ["auto", *SEARCH_METHODS]


def oracle(blocks: torch.Tensor, motifs: torch.Tensor) -> torch.Tensor:
    """Float64 brute force: the first argmin of the squared Euclidean distances."""
    b = blocks.detach().cpu().to(torch.float64)
    z = motifs.detach().cpu().to(torch.float64)
    chunk = max(1, 2**24 // z.numel())
    out = [((b[i : i + chunk, None, :] - z[None]) ** 2).sum(-1).argmin(1)
           for i in range(0, b.shape[0], chunk)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def check(blocks: torch.Tensor, motifs: torch.Tensor, method: str, **kw) -> torch.Tensor:
    got = nearest_motif(blocks, motifs, method=method, **kw)
    assert got.dtype == torch.int64
    assert got.shape == (blocks.shape[0],)
    assert got.device == blocks.device
    want = oracle(blocks, motifs)
    bad = (got.cpu() != want).nonzero().flatten()
    assert bad.numel() == 0, f"{method}: {bad.numel()} blocks differ, first {bad[:5].tolist()}"
    return got


def weights_like(m: int, k: int, s: int, dtype: torch.dtype, seed: int):
    """Blocks from a few scales, zero blocks, a motif bank sampled from the blocks with
    the zero motif first (as MoMos does): duplicates and exact matches included."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.02, 0.06, 1.0])[torch.randint(0, 3, (m, 1), generator=g)]
    b = (torch.rand(m, s, generator=g, dtype=torch.float64) * 2 - 1) * scale
    b[torch.randint(0, m, (m // 10,), generator=g)] = 0.0
    b = b.to(dtype)
    z = b[torch.randint(0, m, (k,), generator=g)].clone()
    z[0] = 0.0
    return b, z


# -- equality with the oracle ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 2, 7, 100])
@pytest.mark.parametrize("s", [1, 2, 3, 4, 8, 16, 64])
@pytest.mark.parametrize("method", ALL)
def test_random_matches_oracle(method, s, k, dtype):
    blocks, motifs = weights_like(600, k, s, dtype, seed=s * 1000 + k)
    check(blocks, motifs, method)


@pytest.mark.parametrize("method", ALL)
def test_gaussian_blocks_foreign_motifs(method):
    g = torch.Generator().manual_seed(1)
    blocks = torch.randn(3000, 3, generator=g)
    motifs = torch.randn(50, 3, generator=g) * 2
    check(blocks, motifs, method)


@pytest.mark.parametrize("method", ALL)
def test_mixed_dtypes_and_half(method):
    blocks, motifs = weights_like(400, 30, 4, torch.float32, seed=3)
    check(blocks, motifs.double(), method)
    check(blocks.half(), motifs.half(), method)
    check(blocks.bfloat16(), motifs.bfloat16(), method)


# -- ties --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ALL)
def test_exact_halfway_ties_go_to_lowest_index(method, dtype):
    # Motifs on an integer grid in shuffled order; blocks at the half-integer points in
    # between: 2 or 4 motifs at exactly the same (exactly representable) distance.
    g = torch.Generator().manual_seed(0)
    grid = torch.cartesian_prod(torch.arange(8.0), torch.arange(8.0))
    motifs = grid[torch.randperm(len(grid), generator=g)].to(dtype)
    ii, jj = torch.meshgrid(torch.arange(15.0), torch.arange(15.0), indexing="ij")
    blocks = (torch.stack([ii.flatten(), jj.flatten()], 1) / 2).to(dtype)
    got = check(blocks, motifs, method)
    z = motifs.double()
    for row, idx in zip(blocks.double(), got.tolist()):
        d = ((z - row) ** 2).sum(1)
        assert idx == int((d == d.min()).nonzero()[0])  # the lowest of the tied


@pytest.mark.parametrize("method", ALL)
def test_halfway_between_two_motifs_in_either_order(method):
    b = torch.tensor([[1.0, 0.0], [1.0, 5.0]])
    for z, want in (([[0.0, 0.0], [2.0, 0.0]], [0, 0]), ([[2.0, 0.0], [0.0, 0.0]], [0, 0])):
        assert nearest_motif(b, torch.tensor(z), method).tolist() == want


@pytest.mark.parametrize("method", ALL)
def test_duplicated_motifs_lowest_index(method):
    g = torch.Generator().manual_seed(2)
    base = torch.randn(20, 3, generator=g)
    # each base row appears at 3 positions; the lowest is the first occurrence
    motifs = torch.cat([base[torch.randperm(20, generator=g)] for _ in range(3)])
    blocks = torch.cat([motifs, motifs + 1e-3 * torch.randn(60, 3, generator=g)])
    got = check(blocks, motifs, method)
    for idx in got.tolist():
        assert idx == int((motifs == motifs[idx]).all(1).nonzero()[0])


@pytest.mark.parametrize("method", ALL)
def test_zero_blocks_take_the_zero_motif_at_index_0(method):
    g = torch.Generator().manual_seed(4)
    motifs = torch.randn(40, 4, generator=g)
    motifs[0] = 0.0
    motifs[7] = 0.0
    motifs[23] = -0.0  # -0.0 is the same motif
    motifs[31, 2] = -0.0
    motifs[31, [0, 1, 3]] = 0.0
    blocks = torch.zeros(5000, 4)
    blocks[::3] = -0.0
    assert (nearest_motif(blocks, motifs, method) == 0).all()


@pytest.mark.parametrize("method", ALL)
def test_all_motifs_identical(method):
    blocks, _ = weights_like(300, 1, 2, torch.float32, seed=5)
    motifs = torch.full((9, 2), 0.25)
    assert (nearest_motif(blocks, motifs, method) == 0).all()


def _near_tie_case():
    # Large-norm blocks and motifs 1e-3 apart: the distances differ by ~1e-3 while
    # |b|^2 ~ 4e8 has a float32 ulp of 32, so a float32 GEMM cannot order them.
    g = torch.Generator().manual_seed(6)
    center = torch.full((4,), 1e4, dtype=torch.float64)
    motifs = center + torch.randint(-3, 4, (50, 4), generator=g) * 1e-3
    blocks = center + torch.randint(-30, 31, (4000, 4), generator=g) * 1e-4
    return blocks.float(), motifs.float()


def test_near_ties_defeat_a_float32_gemm():
    blocks, motifs = _near_tie_case()
    d = (blocks * blocks).sum(1, keepdim=True) - 2 * blocks @ motifs.T + (motifs * motifs).sum(1)
    naive = d.argmin(1)
    assert (naive != oracle(blocks, motifs)).sum() > 100  # the case is hard for float32


@pytest.mark.parametrize("method", ALL)
def test_near_ties_are_exact(method):
    blocks, motifs = _near_tie_case()
    check(blocks, motifs, method)
    check(blocks.double(), motifs.double(), method)


@pytest.mark.parametrize("precision", ["high", "medium"])
def test_reduced_float32_matmul_precision_stays_exact(precision):
    blocks, motifs = _near_tie_case()
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        check(blocks, motifs, "matmul")
    finally:
        torch.set_float32_matmul_precision(old)


@pytest.mark.parametrize("owner, setting", [
    ("", "tf32"), ("mkldnn.matmul", "bf16"), ("mkldnn.matmul", "tf32"), ("cuda.matmul", "tf32"),
])
def test_new_fp32_precision_api_stays_exact(owner, setting):
    blocks, motifs = _near_tie_case()
    target = operator.attrgetter(owner)(torch.backends) if owner else torch.backends
    old = target.fp32_precision
    try:
        target.fp32_precision = setting
        assert assign._gemm_dtype(torch.float32, torch.device("cpu")) == torch.float64
        check(blocks, motifs, "matmul")
    finally:
        target.fp32_precision = old
    assert torch.get_float32_matmul_precision() == "highest"  # state restored


@pytest.mark.parametrize("method", FAST)
def test_ties_within_rounding_of_the_search(method):
    # Distinct motifs whose distances to a block differ by one float64 ulp or less.
    b = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64).repeat(200, 1)
    g = torch.Generator().manual_seed(7)
    b = b + torch.randint(0, 5, b.shape, generator=g) * 2.0**-40
    z = torch.tensor([[0.1, 0.2, 0.3 + 1e-6], [0.1, 0.2, 0.3 - 1e-6],
                      [0.1 + 1e-6, 0.2, 0.3], [0.1, 0.2 - 1e-6, 0.3]], dtype=torch.float64)
    check(b, z, method)


# -- sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", FAST)
def test_more_than_2_16_blocks(method):
    blocks, motifs = weights_like(70_000, 300, 2, torch.float32, seed=8)
    check(blocks, motifs, method)


@pytest.mark.parametrize("method", FAST)
def test_more_than_2_16_motifs(method):
    g = torch.Generator().manual_seed(9)
    motifs = torch.randn(70_000, 2, generator=g)
    motifs[69_999] = torch.tensor([10.0, 10.0])  # the nearest of the last blocks
    motifs[69_998] = torch.tensor([10.0, 10.0])
    blocks = torch.cat([motifs[-400:] + 1e-4, torch.full((3, 2), 9.9)])
    got = check(blocks, motifs, method)
    assert (got[-3:] == 69_998).all()


@pytest.mark.parametrize("method", ALL)
def test_tiny_memory_budget(method):
    blocks, motifs = weights_like(200, 37, 3, torch.float32, seed=10)
    check(blocks, motifs, method, memory_budget=1)


@pytest.mark.parametrize("method", ALL)
def test_empty_blocks(method):
    out = nearest_motif(torch.empty(0, 3), torch.zeros(2, 3), method)
    assert out.dtype == torch.int64 and out.shape == (0,)


# -- purity ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ALL)
def test_inputs_unchanged(method):
    blocks, motifs = weights_like(500, 40, 4, torch.float64, seed=11)
    motifs[5] = -0.0
    blocks = blocks.t().contiguous().t()  # non-contiguous (column-major) view
    blocks.requires_grad_(True)
    motifs.requires_grad_(True)
    b0, z0 = blocks.detach().clone(), motifs.detach().clone()
    out = nearest_motif(blocks, motifs, method)
    assert not out.requires_grad
    assert torch.equal(blocks.detach(), b0) and torch.equal(motifs.detach(), z0)
    assert torch.equal(torch.signbit(motifs.detach()), torch.signbit(z0))  # -0.0 kept
    assert blocks.grad is None and motifs.grad is None


def test_auto_picks_the_numba_tree_for_small_s_on_cpu_and_matmul_otherwise(monkeypatch):
    calls = []

    def spy(name, real):
        def method(blocks, motifs, budget):
            calls.append(name)
            return real(blocks, motifs, budget)
        return method

    for name in ("kdtree_numba", "matmul"):
        monkeypatch.setitem(SEARCH_METHODS, name, spy(name, SEARCH_METHODS[name]))
    z = torch.zeros(3, assign.KDTREE_MAX_S)
    nearest_motif(torch.ones(4, assign.KDTREE_MAX_S), z)
    z = torch.zeros(3, assign.KDTREE_MAX_S + 1)
    nearest_motif(torch.ones(4, assign.KDTREE_MAX_S + 1), z)
    assert calls == ["kdtree_numba", "matmul"]


def test_numba_tree_runs_with_the_jit_off():
    # The kernels are plain Python under NUMBA_DISABLE_JIT=1 (as the kcomplex ones): same
    # answers, on a small case with ties, duplicates and blocks outside the home cell.
    code = textwrap.dedent("""
        import torch
        from momos.assign import nearest_motif
        g = torch.Generator().manual_seed(0)
        z = torch.randint(-3, 4, (60, 2), generator=g).double()
        b = torch.cat([torch.randint(-8, 9, (150, 2), generator=g) / 2, torch.randn(150, 2) * 3])
        d = ((b[:, None].double() - z[None]) ** 2).sum(-1).argmin(1)
        assert torch.equal(nearest_motif(b, z, "kdtree_numba"), d)
        print("ok")
    """)
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


# -- errors ------------------------------------------------------------------------------


def test_errors():
    b, z = torch.zeros(4, 2), torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"block size mismatch.*s=2.*s=3"):
        nearest_motif(b, torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"motifs is empty \(k == 0\)"):
        nearest_motif(b, torch.zeros(0, 2))
    with pytest.raises(ValueError, match=r"blocks must be 2-D.*\(8,\)"):
        nearest_motif(torch.zeros(8), z)
    with pytest.raises(ValueError, match=r"motifs must be 2-D.*\(1, 3, 2\)"):
        nearest_motif(b, torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match=r"blocks must have a floating dtype, got torch.int64"):
        nearest_motif(b.long(), z)
    with pytest.raises(ValueError, match=r"motifs must have a floating dtype, got torch.bool"):
        nearest_motif(b, z.bool())
    with pytest.raises(TypeError, match=r"blocks must be a torch.Tensor, got ndarray"):
        nearest_motif(b.numpy(), z)
    with pytest.raises(ValueError, match=r"unknown method 'ball'; valid: 'auto', 'kdtree', "):
        nearest_motif(b, z, method="ball")
    with pytest.raises(ValueError, match=r"memory_budget must be a positive"):
        nearest_motif(b, z, memory_budget=0)
    with pytest.raises(ValueError, match=r"devices|on meta"):
        nearest_motif(b, z.to("meta"))


def test_non_finite_errors_say_which_and_how_many():
    b, z = torch.zeros(4, 2), torch.zeros(3, 2)
    bad = b.clone()
    bad[0, 0] = float("nan")
    bad[1, 1] = float("nan")
    bad[2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"blocks contain non-finite values: 2 NaN and 1 Inf"):
        nearest_motif(bad, z)
    badz = z.clone()
    badz[2, 1] = -float("inf")
    with pytest.raises(ValueError, match=r"motifs contain non-finite values: 0 NaN and 1 Inf"):
        nearest_motif(b, badz)


# -- property ----------------------------------------------------------------------------

# Few distinct values (halves, duplicates, signed zeros) make exact ties common.
_values = st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 1.5, 2.0, 0.1, -0.3, 3.25])


@st.composite
def _case(draw):
    s = draw(st.integers(1, 5))
    m = draw(st.integers(0, 25))
    k = draw(st.integers(1, 10))
    b = draw(st.lists(_values, min_size=m * s, max_size=m * s))
    z = draw(st.lists(_values, min_size=k * s, max_size=k * s))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return (torch.tensor(b, dtype=dtype).reshape(m, s),
            torch.tensor(z, dtype=dtype).reshape(k, s))


@given(_case())
def test_property_methods_agree_with_oracle(case):
    blocks, motifs = case
    want = oracle(blocks, motifs)
    for method in ALL:
        assert torch.equal(nearest_motif(blocks, motifs, method), want), method


# -- CUDA --------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matmul_matches_cpu(dtype):
    cases = [weights_like(70_000, 2000, s, dtype, seed=12 + s) for s in (2, 4, 16, 64)]
    cases.append(tuple(t.to(dtype) for t in _near_tie_case()))
    for blocks, motifs in cases:
        cpu = nearest_motif(blocks, motifs, "kdtree" if blocks.shape[1] <= 8 else "matmul")
        got = nearest_motif(blocks.cuda(), motifs.cuda(), "matmul")
        assert got.device.type == "cuda" and got.dtype == torch.int64
        assert torch.equal(got.cpu(), cpu)
        assert torch.equal(nearest_motif(blocks.cuda(), motifs.cuda()).cpu(), cpu)  # auto


def test_numba_kernels_keep_torchs_thread_count():
    """numba's OpenMP layer would reset torch's thread count at its first parallel launch."""
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1)\n"
            "from momos.assign import nearest_motif\n"
            "nearest_motif(torch.randn(5000, 2), torch.randn(300, 2), method='kdtree_numba')\n"
            "nearest_motif(torch.randn(5000, 2), torch.randn(300, 2), method='kdtree_numba')\n"
            "print(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.split() == ["1"]
