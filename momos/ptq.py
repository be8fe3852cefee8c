"""Post-training quantization (PTQ): quantize the weights of a trained float network.

PTQ is the baseline a compression method is first compared with: take the trained
weights, replace each quantized tensor by ``q``-bit values, evaluate. The values returned
here are exactly the float values the network then computes with, so they can be coded
exactly afterwards:

* ``levels="uniform"``: :func:`momos.qat.quantize_weight`, bit for bit (per-tensor
  symmetric, ``2**q - 1`` levels ``scale * k`` with ``scale = max|w| / (2**(q-1) - 1)``),
  i.e. what a QAT network at ``q`` bits computes with.
* ``levels="kmeans"``: a 1-D k-means palette of at most ``2**q`` centers, each a value of
  the tensor's dtype; every weight becomes its nearest center (ties: the lower one).

Which weights are quantized is the QAT rule of :func:`momos.qat.attach_qat`:
:func:`ptq_targets` for a module, :func:`state_targets` for a bare state dict.

Examples
--------
>>> import torch
>>> from torch import nn
>>> _ = torch.manual_seed(0)
>>> from collections import OrderedDict
>>> model = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 3), norm=nn.LayerNorm(3),
...                                   fc2=nn.Linear(3, 2)))
>>> ptq_targets(model)  # by module name: "norm" is excluded
['fc1.weight', 'fc2.weight']
>>> new = post_training_quantize(model, 2, levels="kmeans")
>>> new["fc1.weight"].unique().numel()  # at most 2**2 values
4
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from kcomplex.validation import check_choice, check_int

from .qat import exclude_tokens, quantize_weight, weight_targets

__all__ = ["PTQ_LEVELS", "post_training_quantize", "ptq_targets", "quantize_tensor",
           "state_targets"]

#: The kinds of quantization levels :func:`quantize_tensor` knows.
PTQ_LEVELS = ("uniform", "kmeans")

#: Largest bit width per kind: uniform levels stop below QAT's "off" width (32); a k-means
#: palette of more than 2**16 centers is no longer a quantization worth coding as one.
_MAX_BITS = {"uniform": 31, "kmeans": 16}

#: Cap on Lloyd steps (1-D Lloyd converges slowly in the tails; each step is cheap).
_MAX_LLOYD_STEPS = 100

_DEFAULT_EXCLUDE = ("bn", "norm")


def quantize_tensor(w: torch.Tensor, q: int, levels: str = "uniform") -> torch.Tensor:
    """Quantize one tensor to ``q``-bit values.

    Parameters
    ----------
    w : torch.Tensor
        Floating tensor, any shape; it is not modified.
    q : int
        Bit width: 2..31 for ``"uniform"``, 2..16 for ``"kmeans"``.
    levels : {"uniform", "kmeans"}
        ``"uniform"``: exactly :func:`momos.qat.quantize_weight` (``2**q - 1`` symmetric
        levels). ``"kmeans"``: 1-D k-means with at most ``2**q`` centers, see Notes.

    Returns
    -------
    torch.Tensor
        A new tensor (no gradient), same shape, dtype and device as ``w``.

    Raises
    ------
    TypeError
        If ``w`` is not a floating tensor or ``q`` is not an integer (``bool`` is not).
    ValueError
        For an unknown ``levels``, ``q`` out of range, or non-finite values in ``w``.

    Notes
    -----
    The k-means is deterministic and runs on the CPU in float64, so the palette does not
    depend on the device. Lloyd steps (each weight to its nearest center, ties to the lower
    one; each center to its cluster's mean; empty clusters dropped) run until the
    assignment stops changing, or 100 steps, from two starts, and the one with the smaller
    squared error is kept (on a tie, the first):

    1. the sorted values at the quantiles ``(i + 1/2) / 2**q``, ``i = 0 .. 2**q - 1``;
    2. the same quantiles of the density to the power 1/3 (a histogram of ``4 * 2**q``
       equal bins), the point density of an asymptotically optimal quantizer. From start
       1 alone, Lloyd stops in a poor local optimum at 8 bits, worse than uniform levels
       on Gaussian weights.

    Duplicate starting centers are merged. The centers are then rounded to ``w``'s dtype
    and every weight is mapped to its nearest rounded center (ties to the lower one,
    decided exactly). A tensor with at most ``2**q`` distinct values is returned
    unchanged. Zeros come back as ``+0.0``, as from :func:`momos.qat.quantize_weight`, so
    the output has at most ``2**q`` distinct bit patterns.

    Examples
    --------
    >>> import torch
    >>> w = torch.tensor([-1.0, -0.9, 0.0, 0.1, 0.2, 2.0])
    >>> quantize_tensor(w, 3)  # 7 levels: multiples of 2/3 (round half to even)
    tensor([-1.3333, -0.6667,  0.0000,  0.0000,  0.0000,  2.0000])
    >>> quantize_tensor(w, 2, levels="kmeans")  # 4 centers: -0.95, 0, 0.15, 2
    tensor([-0.9500, -0.9500,  0.0000,  0.1500,  0.1500,  2.0000])
    """
    levels = check_choice(levels, "levels", PTQ_LEVELS)
    q = check_int(q, "bit width q", minimum=2, maximum=_MAX_BITS[levels])
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise TypeError("quantize_tensor needs a floating torch.Tensor, got "
                        + (f"dtype {w.dtype}" if isinstance(w, torch.Tensor)
                           else type(w).__name__))
    w = w.detach()
    if not bool(torch.isfinite(w).all()):
        raise ValueError("the tensor has non-finite values (nan or inf); PTQ needs finite "
                         "weights: fix or drop them before quantizing")
    if levels == "uniform":
        return quantize_weight(w, q)
    return _kmeans_quantize(w, 2 ** q)


def ptq_targets(model: nn.Module, exclude: Iterable[str] = _DEFAULT_EXCLUDE) -> list[str]:
    """The parameter names PTQ quantizes in ``model``: the weights QAT would quantize.

    The rule of :func:`momos.qat.attach_qat`: the ``.weight`` of every module whose
    qualified name contains none of the ``exclude`` tokens (case-insensitively) and whose
    ``weight`` is a floating ``Parameter``. Nothing is attached or changed.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    exclude : str or iterable of str
        Module-name tokens to skip, default ``("bn", "norm")``.

    Returns
    -------
    list of str
        Names as in ``named_parameters()`` (``"fc1.weight"``; ``"weight"`` for the root
        module), in ``named_modules()`` order.

    Raises
    ------
    TypeError
        If ``model`` is not a module or ``exclude`` is not strings.
    ValueError
        If a target weight carries a parametrization (e.g. QAT still attached): its
        ``Parameter`` is not the weight the network computes with.

    Examples
    --------
    >>> from torch import nn
    >>> ptq_targets(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)))  # names "0", "1"
    ['0.weight', '1.weight']
    >>> ptq_targets(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)), exclude=("1",))
    ['0.weight']
    >>> ptq_targets(nn.Linear(2, 2))
    ['weight']
    """
    return [f"{name}.weight" if name else "weight" for name, _ in weight_targets(model, exclude)]


def state_targets(state: Mapping[str, torch.Tensor],
                  exclude: Iterable[str] = _DEFAULT_EXCLUDE) -> list[str]:
    """The entries PTQ quantizes in a state dict, where module types are unknown.

    A key is a target when its value is a floating tensor with ``ndim >= 2``, its last
    dotted part is ``weight``, and its module part (the key without ``.weight``) contains
    none of the ``exclude`` tokens, case-insensitively.

    This differs from :func:`ptq_targets` only by the ``ndim >= 2`` condition, which stands
    in for the module type: 1-D weights (LayerNorm, GroupNorm or a BatchNorm under another
    name) are not quantized, whereas :func:`ptq_targets` quantizes every non-excluded
    module's weight, 1-D ones included.

    Parameters
    ----------
    state : Mapping[str, torch.Tensor]
        A state dict, e.g. ``model.state_dict()`` or a loaded checkpoint's. Entries that are
        not tensors are ignored.
    exclude : str or iterable of str
        Module-name tokens to skip, default ``("bn", "norm")``.

    Returns
    -------
    list of str
        The target keys, in the mapping's order.

    Raises
    ------
    TypeError
        If ``state`` is not a mapping or ``exclude`` is not strings.
    ValueError
        If it holds a QAT latent weight (``...parametrizations.weight.original``) of a
        non-excluded module: it would silently stay unquantized.

    Examples
    --------
    >>> from torch import nn
    >>> state_targets(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)).state_dict())
    ['0.weight']
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state_targets needs a mapping of names to tensors (a state dict), "
                        f"got {type(state).__name__}")
    tokens = exclude_tokens(exclude)
    names = []
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            continue
        module, _, last = key.rpartition(".")
        if _excluded(module, tokens):
            continue
        if key.endswith("parametrizations.weight.original"):
            raise ValueError(f"{key!r} is a QAT latent weight; save the state dict after "
                             "momos.qat.remove_qat(model) so it holds the plain weight")
        if last == "weight" and value.is_floating_point() and value.ndim >= 2:
            names.append(key)
    return names


def post_training_quantize(model_or_state: nn.Module | Mapping[str, torch.Tensor], q: int,
                           levels: str = "uniform", exclude: Iterable[str] = _DEFAULT_EXCLUDE,
                           inplace: bool = False) -> dict[str, torch.Tensor]:
    """Quantize a network's (or a state dict's) weights at ``q`` bits.

    Parameters
    ----------
    model_or_state : torch.nn.Module or Mapping[str, torch.Tensor]
        A module (its :func:`ptq_targets` are quantized) or a state dict (its
        :func:`state_targets`).
    q : int
        Bit width, as in :func:`quantize_tensor`.
    levels : {"uniform", "kmeans"}
        Kind of levels, as in :func:`quantize_tensor`.
    exclude : str or iterable of str
        Module-name tokens to skip, default ``("bn", "norm")``.
    inplace : bool
        True (modules only): also write the quantized values into the parameters, in place
        (same ``Parameter`` objects). False: nothing given is modified.

    Returns
    -------
    dict of str to torch.Tensor
        ``{name: quantized tensor}`` for the quantized entries only, new tensors without
        gradient. A tied weight is listed under each of its names, quantized from its
        float value.

    Raises
    ------
    TypeError
        For a bad ``q``, a non-bool ``inplace``, or an input that is neither a module nor
        a mapping.
    ValueError
        For a bad ``q`` or ``levels``, ``inplace=True`` with a state dict, non-finite
        weights, or the cases of :func:`ptq_targets` / :func:`state_targets`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> lin = nn.Linear(2, 1)
    >>> with torch.no_grad(): _ = lin.weight.copy_(torch.tensor([[1.0, 0.3]]))
    >>> post_training_quantize(lin, 2)
    {'weight': tensor([[1., 0.]])}
    >>> lin.weight.data  # untouched unless inplace=True
    tensor([[1.0000, 0.3000]])
    >>> _ = post_training_quantize(lin, 2, inplace=True); lin.weight.data
    tensor([[1., 0.]])
    """
    levels = check_choice(levels, "levels", PTQ_LEVELS)
    q = check_int(q, "bit width q", minimum=2, maximum=_MAX_BITS[levels])
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be True or False, got {inplace!r}")
    if isinstance(model_or_state, nn.Module):
        params = {name: model_or_state.get_parameter(name)
                  for name in ptq_targets(model_or_state, exclude)}
    elif isinstance(model_or_state, Mapping):
        if inplace:
            raise ValueError("inplace=True needs a module; for a state dict, apply the "
                             "result yourself: state.update(post_training_quantize(state, q))")
        params = {name: model_or_state[name] for name in state_targets(model_or_state, exclude)}
    else:
        raise TypeError("post_training_quantize needs a torch.nn.Module or a state dict, got "
                        f"{type(model_or_state).__name__}")
    # All values before any write: a tied weight must be quantized from its float value.
    out = {name: quantize_tensor(p, q, levels) for name, p in params.items()}
    if inplace:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(out[name])
    return out


# -- k-means --------------------------------------------------------------------------------

def _kmeans_quantize(w: torch.Tensor, k: int) -> torch.Tensor:
    """``w`` with every value replaced by its nearest of at most ``k`` k-means centers."""
    values = w.reshape(-1).to("cpu", torch.float64).numpy()
    ordered = np.sort(values)
    if ordered.size == 0 or np.count_nonzero(ordered[1:] != ordered[:-1]) < k:
        return w.clone() + 0.0  # at most k distinct values; + 0.0 turns -0.0 into +0.0
    sums = _PrefixSums(ordered)
    starts = (np.unique(ordered[(2 * np.arange(k) + 1) * ordered.size // (2 * k)]),
              _companded_start(ordered, k))
    fits = [_lloyd(ordered, sums, start) for start in starts]
    best = min(fits, key=lambda c: _sse(ordered, sums, c))  # ties: the first start
    centers = torch.from_numpy(best).to(w.dtype).unique()  # rounding may merge; unique sorts
    index = _nearest(values, centers.to(torch.float64).numpy())
    return (centers[torch.from_numpy(index)].reshape(w.shape) + 0.0).to(w.device)


class _PrefixSums:
    """Prefix sums of sorted values and their squares, centred on the median so that
    differences of them (cluster sums) lose little precision."""

    def __init__(self, ordered: np.ndarray) -> None:
        self.shift = ordered[ordered.size // 2]
        centred = ordered - self.shift
        self.s1 = np.concatenate(([0.0], np.cumsum(centred)))
        self.s2 = np.concatenate(([0.0], np.cumsum(centred * centred)))


def _companded_start(ordered: np.ndarray, k: int) -> np.ndarray:
    """Centers at evenly spaced quantiles of the density**(1/3) (see quantize_tensor's
    Notes), the density a histogram of ``4 k`` equal bins."""
    edges = np.linspace(ordered[0], ordered[-1], 4 * k + 1)
    counts = np.diff(np.searchsorted(ordered, edges[1:-1], side="right"),
                     prepend=0, append=ordered.size)
    mass = np.concatenate(([0.0], np.cumsum(np.cbrt(counts))))  # equal bins: cbrt(count)
    return np.unique(np.interp((np.arange(k) + 0.5) / k * mass[-1], mass, edges))


def _lloyd(ordered: np.ndarray, sums: _PrefixSums, centers: np.ndarray) -> np.ndarray:
    """Lloyd steps from strictly increasing ``centers``: strictly increasing centers."""
    bounds = None
    for _ in range(_MAX_LLOYD_STEPS):
        new = np.unique(_cluster_edges(ordered, centers))  # unique: empty clusters dropped
        if bounds is not None and np.array_equal(new, bounds):
            break
        bounds = new
        lo, hi = bounds[:-1], bounds[1:]
        means = sums.shift + (sums.s1[hi] - sums.s1[lo]) / (hi - lo)
        # Rounding must not push a mean outside its cluster, which keeps centers increasing.
        centers = np.minimum(np.maximum(means, ordered[lo]), ordered[hi - 1])
    return centers


def _cluster_edges(ordered: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """``ordered[e[j]:e[j+1]]`` are the values nearest to ``centers[j]`` (ties lower)."""
    cuts = np.searchsorted(ordered, (centers[:-1] + centers[1:]) / 2, side="right")
    return np.concatenate(([0], cuts, [ordered.size]))


def _sse(ordered: np.ndarray, sums: _PrefixSums, centers: np.ndarray) -> float:
    """Sum of squared errors of the sorted values mapped to their nearest center."""
    edges = _cluster_edges(ordered, centers)
    lo, hi = edges[:-1], edges[1:]
    c = centers - sums.shift
    s1, s2 = sums.s1[hi] - sums.s1[lo], sums.s2[hi] - sums.s2[lo]
    return float(np.sum(s2 - 2 * c * s1 + (hi - lo) * c * c))


def _nearest(values: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest of the strictly increasing ``centers`` (float64), ties lower.

    Comparing with the rounded midpoints ``m = fl(a + b) / 2`` is exact except for a value
    equal to ``m``; for those, the rounding error ``e`` of ``a + b`` (TwoSum, exact) says
    on which side of the true midpoint ``(fl(a + b) + e) / 2`` the value lies.
    """
    if centers.size == 1:
        return np.zeros(values.shape, dtype=np.int64)
    a, b = centers[:-1], centers[1:]
    total = a + b
    b_part = total - a
    error = (a - (total - b_part)) + (b - b_part)
    mids = total / 2
    index = np.searchsorted(mids, values, side="left")  # midpoints below: ties lower
    at = np.minimum(index, mids.size - 1)
    past_true_mid = (index < mids.size) & (values == mids[at]) & (error[at] < 0)
    return index + past_true_mid


# -- names ----------------------------------------------------------------------------------

def _excluded(name: str, tokens: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(t in lowered for t in tokens)
