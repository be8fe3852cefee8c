"""kcomplex.distance: conditional complexity and NCD against one-shot compression and pybdm.

Exact identities are checked against independent computations (a codec's one-shot size
of the concatenated bytes; pybdm's BDM of merged counters). The codecs' slack, the
amounts by which their estimates break the ideal identities, is bounded by properties on
random float32 weights of 10^3 to 10^4 values; the bounds are the measured worst cases
of docs/distance.md with some room.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pybdm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcomplex import BDM, compressed_bits
from kcomplex.distance import DISTANCE_ESTIMATORS, conditional, distance_matrix, ncd

CODECS = ("gzip", "bz2", "lzma", "zstd")

# Slack of the codecs on the weights below (docs/distance.md has the measured values).
SELF_NCD = 0.05  # ncd(x, x) for zstd and lzma on continuous values
ASYMMETRY = 0.05  # |ncd(a, b) - ncd(b, a)|
EPS = 0.1  # ncd <= 1 + EPS
SELF_CONDITIONAL = 0.05  # conditional(b, given=b) / C(b) for zstd and lzma
OVER = 0.15  # conditional(b, given=a) <= (1 + OVER) C(b)

SCALES = (1e-3, 1e-2, 0.1, 1.0, 10.0, 1e3)


@st.composite
def weights(draw, family: str = "continuous") -> np.ndarray:
    """Random float32 weights, 10^3 to 10^4 of them: normal or uniform at a random scale
    (`family` "continuous"), or quantized to 16 levels ("quantized")."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1000, 10_000))
    if family == "quantized":
        return (rng.integers(-8, 8, n) / 8).astype(np.float32)
    scale = draw(st.sampled_from(SCALES))
    if draw(st.booleans()):
        return rng.normal(0, scale, n).astype(np.float32)
    return rng.uniform(-scale, scale, n).astype(np.float32)


@st.composite
def pairs(draw) -> tuple[np.ndarray, np.ndarray]:
    """Two weight sets of one family (scales may differ). Across families the slack is
    larger (docs/distance.md) and not bounded here."""
    family = draw(st.sampled_from(("continuous", "quantized")))
    return draw(weights(family)), draw(weights(family))


def random_weights(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n).astype(np.float32)


# -- exact identities -------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_conditional_is_the_one_shot_difference(codec):
    a, b = random_weights(3000, 1), random_weights(2000, 2)
    expected = compressed_bits(np.concatenate([a, b]), codec) - compressed_bits(a, codec)
    assert conditional(b, given=a, estimator=codec) == expected


@pytest.mark.parametrize("codec", CODECS)
def test_ncd_is_the_formula(codec):
    a, b = random_weights(3000, 3), random_weights(1500, 4)[::-1] * 0.01
    ca, cb = compressed_bits(a, codec), compressed_bits(b, codec)
    cab = compressed_bits(np.concatenate([a, b]), codec)
    assert ncd(a, b, codec) == (cab - min(ca, cb)) / max(ca, cb)


def test_a_dict_is_its_tensors_concatenated():
    parts = {"w1": random_weights(700, 5).reshape(35, 20), "b1": random_weights(13, 6),
             "w2": random_weights(1200, 7)}
    flat = np.concatenate([v.reshape(-1) for v in parts.values()])
    other = random_weights(2000, 8)
    for est in ("zstd", "bdm"):
        assert ncd(parts, other, est) == ncd(flat, other, est)
        assert conditional(other, given=parts, estimator=est) == conditional(
            other, given=flat, estimator=est)


def test_floats_are_measured_as_float32():
    w = np.random.default_rng(9).normal(size=2000)
    w32 = w.astype(np.float32)
    assert conditional(w, given=w[::-1], estimator="lzma") == conditional(
        w32, given=w32[::-1], estimator="lzma")
    assert ncd(w, w[:1000], "bdm") == ncd(w32, w32[:1000], "bdm")


def test_torch_tensors_are_read():
    torch = pytest.importorskip("torch")
    w = random_weights(1000, 10)
    t = torch.nn.Linear(50, 20)
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(w.reshape(20, 50)))
        t.bias.zero_()
    flat = np.concatenate([w, np.zeros(20, np.float32)])
    assert ncd(t, torch.from_numpy(w), "gzip") == ncd(flat, w, "gzip")


# -- BDM: merged counts, against pybdm --------------------------------------------------


def pybdm_conditional(a_signs: np.ndarray, b_signs: np.ndarray) -> tuple[float, float, float]:
    """BDM(a), BDM(b) and BDM(a's counter + b's counter) by pybdm (blocks of 12, ignore)."""
    ref = pybdm.BDM(ndim=1, warn_if_missing_ctm=False, raise_if_zero=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ca, cb = ref.decompose_and_count(a_signs), ref.decompose_and_count(b_signs)
        return ref.compute_bdm(ca), ref.compute_bdm(cb), ref.compute_bdm(ca, cb)


@st.composite
def sign_patterned(draw) -> np.ndarray:
    """Weights whose signs are random, periodic or constant runs: 12 to 300 values."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(12, 300))
    kind = draw(st.sampled_from(("random", "periodic", "runs")))
    if kind == "random":
        signs = rng.integers(0, 2, n)
    elif kind == "periodic":
        signs = np.resize(rng.integers(0, 2, draw(st.integers(1, 7))), n)
    else:
        signs = np.repeat(rng.integers(0, 2, n // 12 + 1), 12)[:n]
    return (np.where(signs > 0, 1, -1) * rng.uniform(0.1, 1, n)).astype(np.float32)


@given(sign_patterned(), sign_patterned())
def test_bdm_conditional_and_ncd_are_pybdms_merged_counters(a, b):
    bdm_a, bdm_b, joint = pybdm_conditional((a > 0).astype(int), (b > 0).astype(int))
    assert conditional(b, given=a, estimator="bdm") == pytest.approx(joint - bdm_a, abs=1e-9)
    expected = (joint - min(bdm_a, bdm_b)) / max(bdm_a, bdm_b)
    assert ncd(a, b, "bdm") == pytest.approx(expected, abs=1e-12)


@given(sign_patterned(), sign_patterned())
def test_bdm_bounds_are_exact(a, b):
    bdm_b = BDM().bdm(b > 0)
    cond = conditional(b, given=a, estimator="bdm")
    assert -1e-9 <= cond <= bdm_b + 1e-9
    assert ncd(a, b, "bdm") == pytest.approx(ncd(b, a, "bdm"), abs=1e-12)
    assert -1e-12 <= ncd(a, b, "bdm") <= 1 + 1e-12


@given(sign_patterned())
def test_bdm_self_conditional_is_one_bit_per_distinct_block(b):
    counts = BDM().count(b > 0)
    assert conditional(b, given=b, estimator="bdm") == pytest.approx(counts.n_distinct,
                                                                     abs=1e-9)
    assert ncd(b, b, "bdm") == pytest.approx(counts.n_distinct / BDM().bdm(b > 0),
                                             abs=1e-12)


# -- the codecs' slack ------------------------------------------------------------------


@settings(max_examples=10)
@given(weights(), st.sampled_from(("zstd", "lzma")))
def test_self_distance_is_near_zero(x, codec):
    assert 0 <= ncd(x, x, codec) <= SELF_NCD
    assert conditional(x, given=x, estimator=codec) <= SELF_CONDITIONAL * compressed_bits(
        x, codec)


@settings(max_examples=10)
@given(pairs(), st.sampled_from(CODECS))
def test_ncd_is_symmetric_and_bounded_within_the_slack(pair, codec):
    a, b = pair
    ab, ba = ncd(a, b, codec), ncd(b, a, codec)
    assert abs(ab - ba) <= ASYMMETRY
    assert 0 <= min(ab, ba) and max(ab, ba) <= 1 + EPS


@settings(max_examples=10)
@given(pairs(), st.sampled_from(CODECS))
def test_conditional_costs_at_most_the_input_alone(pair, codec):
    a, b = pair
    assert conditional(b, given=a, estimator=codec) <= (1 + OVER) * compressed_bits(b, codec)


def test_perturbed_weights_are_close_and_random_ones_far():
    rng = np.random.default_rng(12)
    w = rng.normal(0, 0.05, (256, 256)).astype(np.float32)
    perturbed = w.copy()
    hit = rng.choice(w.size, w.size // 100, replace=False)
    perturbed.reshape(-1)[hit] += rng.normal(0, 1e-3, hit.size).astype(np.float32)
    unrelated = rng.normal(0, 0.05, w.shape).astype(np.float32)
    for codec in ("zstd", "lzma"):
        near, far = ncd(w, perturbed, codec), ncd(w, unrelated, codec)
        assert near < 0.1 < 0.9 < far


# -- distance_matrix --------------------------------------------------------------------


def test_matrix_is_pairwise_ncd_with_a_measured_diagonal():
    rng = np.random.default_rng(13)
    items = {"a": random_weights(1500, 14), "b": rng.uniform(-1, 1, 1200),
             "c": random_weights(2000, 15)}
    for est in ("zstd", "bdm"):
        frame = distance_matrix(items, est, symmetric=False)
        assert list(frame.index) == list(frame.columns) == ["a", "b", "c"]
        for x in items:
            for y in items:
                assert frame.loc[x, y] == ncd(items[x], items[y], est)
        assert (np.diag(frame.to_numpy()) > 0).all()
        assert frame.attrs["bits"]["a"] == (compressed_bits(items["a"], "zstd") if est == "zstd"
                                            else BDM().bdm(items["a"] > 0))


def test_symmetric_matrix_mirrors_row_before_column():
    items = [random_weights(1000 + 100 * i, i) for i in range(4)]
    frame = distance_matrix(items, "gzip")
    assert list(frame.index) == ["0", "1", "2", "3"]
    values = frame.to_numpy()
    assert np.array_equal(values, values.T)
    assert values[0, 3] == ncd(items[0], items[3], "gzip")


def test_sequence_of_paths_is_named_by_path(tmp_path):
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"ckpt{i}.npy")
        np.save(paths[-1], random_weights(1000, i))
    frame = distance_matrix(paths, "bdm")
    assert list(frame.columns) == [str(p) for p in paths]
    assert isinstance(frame, pd.DataFrame)


def test_progress_bar_shows_for_many_pairs(capsys):
    items = [random_weights(1000, i) for i in range(5)]  # 15 joint values
    distance_matrix(items, "bdm", progress=True)
    assert "distance" in capsys.readouterr().err


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("est", DISTANCE_ESTIMATORS)
def test_empty_input_is_named(est):
    with pytest.raises(ValueError, match="given holds no weights"):
        conditional(random_weights(100), given=np.empty(0, np.float32), estimator=est)
    with pytest.raises(ValueError, match="b holds no weights"):
        ncd(random_weights(100), np.empty(0, np.float32), est)


def test_sub_block_input_is_named_for_bdm():
    with pytest.raises(ValueError, match="a holds 11 weights, fewer than one BDM block"):
        ncd(random_weights(11), random_weights(100), "bdm")
    with pytest.raises(ValueError, match="item 'tiny' holds 5 weights"):
        distance_matrix({"big": random_weights(100), "tiny": random_weights(5)}, "bdm")
    assert math.isfinite(ncd(random_weights(11), random_weights(100), "zstd"))


def test_bad_arguments():
    w = random_weights(100)
    with pytest.raises(ValueError, match="estimator must be one of"):
        ncd(w, w, "entropy")
    with pytest.raises(ValueError, match="non-finite"):
        conditional(np.r_[w, np.nan], given=w)
    with pytest.raises(ValueError, match="no items"):
        distance_matrix({})
    with pytest.raises(TypeError, match="item names must be strings"):
        distance_matrix({1: w})
    with pytest.raises(TypeError, match="mapping .* or a sequence"):
        distance_matrix(w for _ in range(2))
    with pytest.raises(ValueError, match="repeat a name"):
        distance_matrix(["x.npy", "x.npy"])


# -- the heatmap ------------------------------------------------------------------------


def test_heatmap_is_saved_and_annotated_when_small(tmp_path):
    pytest.importorskip("matplotlib")
    from kcomplex.plot import plot_distance_matrix

    frame = distance_matrix([random_weights(1000, i) for i in range(3)], "bdm")
    fig = plot_distance_matrix(frame, tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[1] == f"{frame.iloc[0, 1]:.2f}" and len(texts) == 9
    assert "bdm" in fig.axes[0].get_title()
    big = pd.DataFrame(np.zeros((13, 13)), index=list("abcdefghijklm"),
                       columns=list("abcdefghijklm"))
    assert not plot_distance_matrix(big).axes[0].texts
    with pytest.raises(ValueError, match="square"):
        plot_distance_matrix(big.iloc[:2])


def test_compare_has_the_conditional_column():
    from kcomplex import BDM, compare

    rng = np.random.default_rng(3)
    a = {"w": rng.normal(size=(64, 64)).astype(np.float32),
         "v": rng.normal(size=120).astype(np.float32)}
    b = {"w": np.round(a["w"], 1).astype(np.float32), "v": a["v"] * 2}
    table = compare(a, b, ["zstd", "bdm"], progress=False).table.set_index(
        ["tensor", "estimator"])
    for name in ("w", "v"):  # zstd: the same estimate as kcomplex.conditional
        assert table.loc[(name, "zstd"), "conditional_bits"] == conditional(
            b[name], given=a[name], estimator="zstd")
    both = np.concatenate([a["w"].ravel(), a["v"], b["w"].ravel(), b["v"]])
    alone = np.concatenate([a["w"].ravel(), a["v"]])
    bdm = BDM()  # bdm: the estimator over a's weights then b's, one block grid, less a's
    want = bdm.bdm((both > 0).view(np.uint8)) - bdm.bdm((alone > 0).view(np.uint8))
    assert table.loc[("(all)", "bdm"), "conditional_bits"] == pytest.approx(want, rel=1e-12)
