"""The complexity map: its blocks, values and sum against BDM and a dictionary count."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kcomplex import BDM, binarize
from kcomplex.regions import complexity_map, plot_complexity_map

shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))


@given(shapes, st.integers(0, 2**32 - 1), st.sampled_from([2, 3, 4]))
def test_map_sums_to_the_bdm_and_has_one_value_per_block(shape, seed, side):
    rows, cols = shape
    w = np.random.default_rng(seed).normal(size=shape)
    if rows < side or cols < side:
        with pytest.raises(ValueError, match="smaller than one"):
            complexity_map(w, block=side)
        return
    m = complexity_map(w, block=side)
    assert m.shape == (rows // side, cols // side)
    total = BDM(ndim=2, shape=side).bdm(binarize(w))
    assert math.fsum(m.ravel()) == pytest.approx(total, rel=1e-9)


def test_values_are_shares_of_each_type():
    rng = np.random.default_rng(0)
    # Few patterns repeated: types with different counts.
    tiles = [rng.normal(size=(4, 4)) for _ in range(3)]
    grid = [[tiles[rng.integers(0, 3)] for _ in range(6)] for _ in range(5)]
    w = np.block(grid)
    m = complexity_map(w)
    bdm = BDM(ndim=2)
    pattern = {(i, j): binarize(w[4 * i:4 * i + 4, 4 * j:4 * j + 4]).tobytes()
               for i in range(5) for j in range(6)}
    n = Counter(pattern.values())
    for (i, j), key in pattern.items():
        ctm = bdm.bdm(binarize(w[4 * i:4 * i + 4, 4 * j:4 * j + 4]))  # one block: its CTM
        assert m[i, j] == pytest.approx((ctm + math.log2(n[key])) / n[key], rel=1e-12)


def test_edges_are_dropped_and_a_constant_matrix_is_flat():
    m = complexity_map(np.ones((10, 13)))
    assert m.shape == (2, 3)
    assert np.all(m == m[0, 0])
    assert m.sum() == pytest.approx(BDM(ndim=2).bdm(np.ones((10, 13), dtype=np.uint8)))


def test_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        complexity_map(np.ones(16))
    with pytest.raises(ValueError, match="NaN"):
        complexity_map(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="square"):
        complexity_map(np.ones((8, 8)), block=(2, 4))
    with pytest.raises(ValueError, match="not in the CTM table"):
        complexity_map(np.ones((8, 8)), block=5)
    with pytest.raises(TypeError, match="integer"):
        complexity_map(np.ones((8, 8)), block=4.0)


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    m = complexity_map(np.random.default_rng(1).normal(size=(16, 24)))
    fig = plot_complexity_map(m, tmp_path / "map.png")
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
    assert fig.axes[0].images[0].get_array().shape == (4, 6)
    with pytest.raises(ValueError, match="2-D"):
        plot_complexity_map(np.ones(3))
