"""momos.complexity: one column per model, consistent with its sources."""

import pandas as pd
import torch

import kcomplex
import momos


def _mlp():
    return torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.ReLU(), torch.nn.Linear(20, 5))


def test_columns_match_their_sources():
    torch.manual_seed(0)
    init, model = _mlp(), _mlp()
    model.load_state_dict(init.state_dict())
    mm = momos.MoMos(s=2, capacity=0.1, seed=0)
    mm.project(model)
    table = pd.DataFrame({"init": momos.complexity(init),
                          "momos": momos.complexity(model, mm)})
    n = sum(p.numel() for p in init.parameters())
    assert table.loc["n", "init"] == n and table.loc["trivial_bits", "init"] == 32 * n
    assert table.loc["gzip_bits", "init"] == kcomplex.analyze(init, ["gzip"]).total["gzip_bits"]
    assert pd.isna(table.loc["momos_bits", "init"])
    data = momos.encode(model, mm)
    assert table.loc["momos_bits", "momos"] == 8 * len(data)
    assert table.loc["bound_bits", "momos"] == momos.bound_bits(n, s=2, capacity=0.1)
