"""One column of numbers per model: trivial bits, kcomplex's estimators, and for a
projected model the exact MoMos description length beside the paper's bound."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from kcomplex import analyze

from .codec import description_length
from .projection import MoMos

__all__ = ["complexity"]


def complexity(
    model: nn.Module | Mapping[str, torch.Tensor],
    momos: MoMos | None = None,
    *,
    q: int = 32,
    estimators: str | Sequence[str] = "paper",
) -> pd.Series:
    """Bits of a model's weight vector by every measure, as one column.

    Parameters
    ----------
    model : torch.nn.Module or Mapping[str, torch.Tensor]
        Any model; its trainable parameters in ``parameters()`` order are the vector.
        Or a state dict: its tensors in order (the weights a model computes with, say,
        where those are not its parameters, as under fake quantization).
    momos : MoMos, optional
        The projector last applied to ``model``: adds the exact description length
        (``momos_bits``, from a real encoding), the paper's bound and their RACs.
    q : int
        Bits per motif value for the encoding.
    estimators : str or sequence of str
        kcomplex estimators (default: the paper's bdm, gzip, bz2, lzma).

    Returns
    -------
    pandas.Series
        ``n``, ``trivial_bits`` (32 n), ``<estimator>_bits`` for the whole vector, and with
        ``momos``: ``momos_bits``, ``bound_bits``, ``rac_exact``, ``rac_bound``.
        Columns of several models side by side make the init vs trained table.

    Examples
    --------
    >>> import pandas as pd, torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> init = torch.nn.Linear(64, 32)
    >>> trained = torch.nn.Linear(64, 32); trained.load_state_dict(init.state_dict())
    <All keys matched successfully>
    >>> mm = MoMos(s=2, capacity=0.05, seed=0); _ = mm.project(trained)
    >>> table = pd.DataFrame({"init": complexity(init, estimators=["bdm"]),
    ...                       "momos": complexity(trained, mm, estimators=["bdm"])})
    >>> bool(table.loc["momos_bits", "momos"] < table.loc["trivial_bits", "momos"])
    True
    """
    total = analyze(model, estimators, per_tensor=False, progress=False).total
    out = {"n": int(total["numel"]), "trivial_bits": int(total["raw_bits"])}
    for name in total.index:
        if name.endswith("_bits") and name != "raw_bits":
            out[name] = float(total[name])
    if momos is not None:
        dl = description_length(model, momos, q=q)
        out.update(momos_bits=dl.total_bits, bound_bits=dl.bound_bits,
                   rac_exact=dl.rac_exact, rac_bound=dl.rac_bound)
    return pd.Series(out, dtype=object)
