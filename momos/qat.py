"""Quantization-aware training (QAT): fake quantization of module weights.

Per-tensor symmetric quantization at ``q`` bits, as in the MoMos paper's QAT baseline and
MoMos+QAT runs: with ``qmax = 2**(q-1) - 1`` and ``scale = max|w| / qmax``,

    w_q = scale * clamp(round(w / scale), -qmax, qmax)

(``round`` is round-half-to-even). The forward pass sees ``w_q``; the backward pass is the
straight-through estimator (the gradient w.r.t. ``w`` is the gradient w.r.t. ``w_q``). An
all-zero tensor is returned unchanged. ``q >= 32`` means off; ``q < 2`` is an error.

:func:`attach_qat` registers the quantizer as a :mod:`torch.nn.utils.parametrize`
parametrization on the ``.weight`` of every module whose qualified name contains none of
the excluded tokens (biases are never quantized). The latent float weight stays the *same*
``Parameter`` object (``module.parametrizations.weight.original``), so an optimizer built
before :func:`attach_qat` keeps training it, and it is still there, same object and storage,
after :func:`remove_qat`.

MoMos + QAT: the projection acts on the latent float weights, i.e. on what
``model.parameters()`` yields, and after :func:`attach_qat` that is each quantized module's
``parametrizations.weight.original``. ``momos.blocks.pool_parameters(model)`` therefore
pools the latent originals, under names ending in ``.parametrizations.weight.original``,
and **in a different order**: ``named_parameters`` lists a module's own parameters, then
its submodules' ones, and parametrize moves the weight into the new ``parametrizations``
submodule, registered last. So the latent weight of a quantized module comes after that
module's other own parameters (its bias) *and* after every parameter of its other
submodules; e.g. ``Linear``: ``bias, parametrizations.weight.original``. A block layout
must be computed after :func:`attach_qat` for a QAT model (the seeded MoMos projection
pools in that order). :func:`remove_qat` puts every weight back at its original position,
so a model after attach/remove has exactly the parameter names and order it had before.
With ``q >= 32`` nothing is attached at all, so QAT-off runs pool in the plain order.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["FakeQuantize", "fake_quantize", "attach_qat", "set_qat_bits", "remove_qat", "is_qat",
           "quantize_weight", "quantized_weights", "weight_targets",
           "exclude_tokens"]

#: Bit widths at or above this are "no quantization".
QAT_OFF_BITS = 32


def _check_bits(q: object) -> int:
    if isinstance(q, bool) or not isinstance(q, numbers.Integral):
        raise TypeError(f"bit width q must be an integer, got {q!r}")
    q = int(q)
    if q < 2:
        raise ValueError(f"bit width q must be >= 2 (q >= {QAT_OFF_BITS} turns QAT off), got {q}")
    return q


def _quantize(w: torch.Tensor, q: int) -> torch.Tensor:
    """Forward value only: ``w_q`` for ``2 <= q < 32``, no STE, no checks."""
    qmax = 2 ** (q - 1) - 1
    w = w.detach()
    scale = w.abs().amax() / qmax
    nonzero = scale > 0  # all-zero (or underflowing) tensor -> unchanged, no 0/0
    safe = torch.where(nonzero, scale, torch.ones_like(scale))
    w_q = torch.clamp(torch.round(w / safe), -qmax, qmax) * safe
    return torch.where(nonzero, w_q, w)


def quantize_weight(w: torch.Tensor, q: int) -> torch.Tensor:
    """The weight a QAT network computes with, as a plain tensor (no gradient).

    Exactly the forward value of :func:`fake_quantize` and :class:`FakeQuantize`, bit for
    bit: ``scale * clamp(round(w / scale), -qmax, qmax)`` in the dtype of ``w``, with a
    zero level written as ``+0.0`` (the straight-through sum ``w_q + (w - w)`` turns
    ``-0.0`` into ``+0.0``). Post-training quantization and the exact codes use it, so
    that what is coded is what the network evaluates.

    Parameters
    ----------
    w : torch.Tensor
        Floating tensor, any shape.
    q : int
        Bit width; ``q >= 32`` returns a copy of ``w``.

    Returns
    -------
    torch.Tensor
        A new tensor, same shape, dtype and device.

    Raises
    ------
    TypeError, ValueError
        As :func:`fake_quantize`.

    Examples
    --------
    >>> import torch
    >>> quantize_weight(torch.tensor([-1.0, -0.2, 0.3, 0.6]), 2)
    tensor([-1.,  0.,  0.,  1.])
    >>> torch.equal(quantize_weight(torch.tensor([0.1, -0.7]), 4),
    ...             fake_quantize(torch.tensor([0.1, -0.7]), 4))
    True
    """
    return fake_quantize(w.detach() if isinstance(w, torch.Tensor) else w, q).clone()


def fake_quantize(w: torch.Tensor, q: int) -> torch.Tensor:
    """Per-tensor symmetric fake quantization with a straight-through gradient.

    Parameters
    ----------
    w : torch.Tensor
        Floating tensor, any shape.
    q : int
        Bit width. ``q >= 32`` returns ``w`` itself (off).

    Returns
    -------
    torch.Tensor
        ``scale * clamp(round(w / scale), -qmax, qmax)`` with ``qmax = 2**(q-1) - 1`` and
        ``scale = max|w| / qmax``, same shape and dtype; its gradient w.r.t. ``w`` is the
        identity. An all-zero ``w`` comes back unchanged.

    Raises
    ------
    TypeError
        If ``q`` is not an integer or ``w`` is not a floating tensor.
    ValueError
        If ``q < 2``.

    Examples
    --------
    >>> import torch
    >>> fake_quantize(torch.tensor([-1.0, -0.2, 0.3, 0.6]), 2)  # ternary: scale 1
    tensor([-1.,  0.,  0.,  1.])
    >>> fake_quantize(torch.tensor([0.0, 1.0, 0.26, -0.5]), 3)  # qmax 3: multiples of 1/3
    tensor([ 0.0000,  1.0000,  0.3333, -0.6667])
    >>> w = torch.tensor([0.1, -0.7], requires_grad=True)
    >>> fake_quantize(w, 4).sum().backward(); w.grad  # straight-through
    tensor([1., 1.])
    """
    q = _check_bits(q)
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise TypeError(f"fake_quantize needs a floating torch.Tensor, got {type(w).__name__}"
                        + (f" of dtype {w.dtype}" if isinstance(w, torch.Tensor) else ""))
    if q >= QAT_OFF_BITS:
        return w
    # Forward value exactly w_q (w - w.detach() is exactly 0); gradient exactly identity.
    return _quantize(w, q) + (w - w.detach())


class FakeQuantize(nn.Module):
    """The QAT parametrization: ``forward(w) = fake_quantize(w, self.q)``.

    ``q`` may be changed at any time (:func:`set_qat_bits`); ``q >= 32`` is the identity.
    """

    def __init__(self, q: int) -> None:
        super().__init__()
        self.q = _check_bits(q)
        # The owning module's parameter order before attach, restored on removal.
        self._order: tuple[str, ...] = ()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """The fake-quantized weight (identity gradient); ``w`` itself when ``q >= 32``."""
        if self.q >= QAT_OFF_BITS:
            return w
        return _quantize(w, self.q) + (w - w.detach())

    def extra_repr(self) -> str:
        return f"q={self.q}"


# -- parameter order across parametrize (shared with momos.finetune, hence public names
# that stay out of __all__: they are momos's internals, not its API) -------------------

def param_order(module: nn.Module) -> tuple[str, ...]:
    """The names of ``module``'s own parameters, in registration order.

    Parameters
    ----------
    module : torch.nn.Module
        The module.

    Returns
    -------
    tuple of str
        To give back to :func:`restore_param_order` after parametrize has reordered them.
    """
    return tuple(module._parameters.keys())


def restore_param_order(module: nn.Module, order: tuple[str, ...]) -> None:
    """Reorder ``module._parameters`` to ``order`` (names not in it keep their relative
    order, at the end).

    Parametrize re-registers a removed tensor at the end; this undoes that so
    ``named_parameters()`` (and the MoMos pool) has its pre-attach order.

    Parameters
    ----------
    module : torch.nn.Module
        The module, reordered in place.
    order : tuple of str
        From :func:`param_order`.
    """
    params = module._parameters
    names = [n for n in order if n in params] + [n for n in params if n not in order]
    items = [(n, params[n]) for n in names]
    params.clear()
    params.update(items)


def exclude_tokens(exclude: str | Iterable[str]) -> tuple[str, ...]:
    """The lower-cased module-name tokens of an ``exclude`` argument (one string or many).

    Raises
    ------
    TypeError
        If it is not a string or an iterable of strings.

    Examples
    --------
    >>> exclude_tokens("BN"), exclude_tokens(["bn", "Norm"])
    (('bn',), ('bn', 'norm'))
    """
    if isinstance(exclude, str):
        exclude = (exclude,)
    try:
        tokens = tuple(exclude)
    except TypeError:
        raise TypeError(f"exclude must be a string or an iterable of strings, got "
                        f"{type(exclude).__name__}") from None
    bad = [t for t in tokens if not isinstance(t, str)]
    if bad:
        raise TypeError(f"exclude must hold strings (module-name tokens), got {bad[0]!r}")
    return tuple(t.lower() for t in tokens)


def weight_targets(model: nn.Module, exclude: Iterable[str] = ("bn", "norm")
                   ) -> list[tuple[str, nn.Module]]:
    """The modules whose ``.weight`` QAT and post-training quantization round.

    Every module whose qualified name (as in ``named_modules()``) contains none of the
    `exclude` tokens, case-insensitively, and whose ``weight`` is a floating
    ``Parameter``; the one rule of :func:`attach_qat` and :func:`momos.ptq.ptq_targets`.

    Parameters
    ----------
    model : torch.nn.Module
    exclude : str or iterable of str
        Module-name tokens to skip, default ``("bn", "norm")``.

    Returns
    -------
    list of (str, torch.nn.Module)
        Qualified names (the root module is ``""``) and modules, in ``named_modules()``
        order.

    Raises
    ------
    TypeError
        If `model` is not a module or `exclude` is not strings.
    ValueError
        If a target weight already carries a parametrization (QAT, a frozen mosaic,
        weight norm): its ``Parameter`` is not the weight the network computes with.

    Examples
    --------
    >>> from torch import nn
    >>> [n for n, _ in weight_targets(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)),
    ...                                exclude=("1",))]
    ['0']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    tokens = exclude_tokens(exclude)
    targets = []
    for name, mod in model.named_modules():
        if any(t in name.lower() for t in tokens):
            continue
        if parametrize.is_parametrized(mod, "weight"):
            kinds = sorted({type(p).__name__ for p in mod.parametrizations.weight})
            raise ValueError(f"the weight of module {name!r} already carries a parametrization "
                             f"({', '.join(kinds)}); quantization needs a plain Parameter "
                             "(bake or remove it first, for QAT momos.remove_qat(model), or "
                             "exclude the module)")
        w = mod._parameters.get("weight")
        if isinstance(w, nn.Parameter) and w.is_floating_point():
            targets.append((name, mod))
    return targets


def _quantizers(module: nn.Module) -> list[FakeQuantize]:
    if not parametrize.is_parametrized(module, "weight"):
        return []
    return [p for p in module.parametrizations.weight if isinstance(p, FakeQuantize)]


def quantized_weights(model: nn.Module) -> list[str]:
    """The names of the weights QAT quantizes in ``model``, as they were before
    :func:`attach_qat` (``"fc1.weight"``; ``"weight"`` for the root module).

    Examples
    --------
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    >>> _ = attach_qat(model, 4); quantized_weights(model)
    ['0.weight', '2.weight']
    """
    return [f"{name}.weight" if name else "weight" for name, _ in _qat_modules(model)]


def _qat_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, mod) for name, mod in model.named_modules() if _quantizers(mod)]


def attach_qat(model: nn.Module, q: int, exclude: tuple[str, ...] | list[str] = ("bn", "norm")
               ) -> list[str]:
    """Attach fake quantization at ``q`` bits to the weights of ``model``'s modules.

    Parameters
    ----------
    model : torch.nn.Module
        Modified in place.
    q : int
        Bit width, ``>= 2``. ``q >= 32`` attaches nothing and returns ``[]``.
    exclude : sequence of str
        A module whose qualified name (as in ``named_modules()``) contains any of these
        tokens, case-insensitively, is skipped. Default ``("bn", "norm")``.

    Returns
    -------
    list of str
        Qualified names of the quantized modules, in ``named_modules()`` order (the root
        module, if quantized, is ``""``). Modules without a floating ``.weight``
        ``Parameter`` (no weight, ``weight=None``, integer tensors) are skipped.

    Raises
    ------
    TypeError, ValueError
        For a bad ``q``; ``ValueError`` if QAT is already attached or a target weight
        already carries another parametrization (e.g. :func:`momos.freeze_mosaic`).

    Notes
    -----
    The latent weight stays the same ``Parameter`` object, so an optimizer built before
    the call keeps working. See the module docstring for how the parameter order changes
    while QAT is attached (it matters for the MoMos block pool).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from collections import OrderedDict
    >>> model = nn.Sequential(OrderedDict(
    ...     fc1=nn.Linear(4, 3), bn1=nn.BatchNorm1d(3), act=nn.ReLU(), fc2=nn.Linear(3, 2)))
    >>> attach_qat(model, 8)
    ['fc1', 'fc2']
    >>> [n for n, _ in model.named_parameters()][:3]  # bias first, then the latent weight
    ['fc1.bias', 'fc1.parametrizations.weight.original', 'bn1.weight']
    >>> is_qat(model), remove_qat(model), is_qat(model)
    (True, ['fc1', 'fc2'], False)
    >>> [n for n, _ in model.named_parameters()][:3]
    ['fc1.weight', 'fc1.bias', 'bn1.weight']
    """
    q = _check_bits(q)
    if is_qat(model):
        raise ValueError("QAT is already attached to this model; use set_qat_bits(model, q) "
                         "to change the bit width, or remove_qat(model) first")
    if q >= QAT_OFF_BITS:
        return []
    targets = weight_targets(model, exclude)
    for _, mod in targets:
        fq = FakeQuantize(q)
        fq._order = param_order(mod)
        # No right_inverse: parametrize keeps the Parameter itself as `original`.
        parametrize.register_parametrization(mod, "weight", fq)
    return [name for name, _ in targets]


def set_qat_bits(model: nn.Module, q: int) -> list[str]:
    """Set the bit width of every attached quantizer (``q >= 32``: identity, still attached).

    Parameters
    ----------
    model : torch.nn.Module
    q : int
        New bit width, ``>= 2``.

    Returns
    -------
    list of str
        Names of the modules updated. With no QAT attached and ``q >= 32``: ``[]``.

    Raises
    ------
    ValueError
        If ``q < 2``, or ``q < 32`` but no QAT is attached (call :func:`attach_qat`).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> lin = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad(): _ = lin.weight.copy_(torch.tensor([[1.0, 0.3]]))
    >>> attach_qat(lin, 8)
    ['']
    >>> set_qat_bits(lin, 2); lin.weight.tolist()
    ['']
    [[1.0, 0.0]]
    >>> _ = set_qat_bits(lin, 32); lin.weight.detach()  # identity, still attached
    tensor([[1.0000, 0.3000]])
    """
    q = _check_bits(q)
    mods = _qat_modules(model)
    if not mods and q < QAT_OFF_BITS:
        raise ValueError("no QAT attached to this model; call attach_qat(model, q) first")
    for _, mod in mods:
        for fq in _quantizers(mod):
            fq.q = q
    return [name for name, _ in mods]


def remove_qat(model: nn.Module, bake: bool = True) -> list[str]:
    """Remove the QAT parametrizations, keeping every weight's ``Parameter`` object.

    Parameters
    ----------
    model : torch.nn.Module
    bake : bool
        True: the weights keep the quantized values (at the current bit width), as with
        ``leave_parametrized=True``. False: the latent float weights are restored as
        they are.

    Returns
    -------
    list of str
        Names of the modules whose quantizer was removed (``[]`` if none was attached).

    Notes
    -----
    Values are written in place into the original ``Parameter`` (same object, same
    storage), so optimizers and their state stay valid; every module's parameter order is
    put back as before :func:`attach_qat`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> lin = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad(): _ = lin.weight.copy_(torch.tensor([[1.0, 0.3]]))
    >>> w = lin.weight
    >>> _ = attach_qat(lin, 2)
    >>> remove_qat(lin, bake=True); lin.weight is w, lin.weight.data
    ['']
    (True, tensor([[1., 0.]]))
    """
    mods = _qat_modules(model)
    for name, mod in mods:
        if len(mod.parametrizations.weight) != len(_quantizers(mod)):
            raise ValueError(f"the weight of module {name!r} carries QAT and another "
                             "parametrization; remove the other one first")
    with torch.no_grad():  # all values first: tied weights must not see baked ones
        values = [mod.weight.clone() if bake else None for _, mod in mods]
    for (_, mod), value in zip(mods, values):
        order = _quantizers(mod)[0]._order
        parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)
        if value is not None:
            with torch.no_grad():
                mod.weight.copy_(value)
        restore_param_order(mod, order)
    return [name for name, _ in mods]


def is_qat(model: nn.Module) -> bool:
    """Whether any module of ``model`` has a QAT quantizer attached.

    Examples
    --------
    >>> from torch import nn
    >>> is_qat(nn.Linear(2, 2))
    False
    """
    return any(_quantizers(mod) for mod in model.modules())
