"""Fine-tuning of the motif bank with the mosaic frozen.

After a MoMos projection every pooled weight tensor is ``motifs[mosaic]`` over its span of
the block pool, padding trimmed. :func:`freeze_mosaic` makes that an identity of the model:
each pooled tensor becomes a :mod:`torch.nn.utils.parametrize` parametrization that reads
its blocks from one shared ``(k, s)`` ``nn.Parameter``, the :class:`MotifBank`. The bank is
then the only trainable tensor: a gradient step moves motifs, never the mosaic, so the
description length (``k``, ``s``, ``m`` and the mosaic itself) is unchanged while the
distortion / task loss goes down. A motif's gradient is the sum of the gradients of every
block that uses it (autograd's backward of the indexing ``bank[mosaic]``; padding entries
get none). :func:`bake` turns the model back into a plain one holding the tuned values.

The bank is a submodule of every tensor's parametrization (one object, shared), so it moves
with ``model.to(...)``, appears once in ``model.parameters()``, and is the only parameter
with ``requires_grad``: ``torch.optim.Adam(p for p in model.parameters() if
p.requires_grad)`` and ``torch.optim.Adam([bank.weight])`` train the same thing. (So
``momos.blocks.pool_parameters`` of a frozen model is the bank alone: do not project a
frozen model; its mosaic is fixed.)

The pooled ``Parameter`` objects are kept (as ``parametrizations.<name>.original``, with
``requires_grad=False`` and their values untouched while frozen); :func:`bake` writes the
motif values into them in place and puts them back where they were, same objects, same
names, same ``named_parameters()`` order, ``requires_grad=True``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from .blocks import BlockLayout, Span, pool_parameters
from .qat import param_order, restore_param_order

__all__ = ["MotifBank", "freeze_mosaic", "bake", "is_frozen"]


class MotifBank(nn.Module):
    """The trainable ``(k, s)`` motif bank of a frozen-mosaic model.

    Attributes
    ----------
    weight : torch.nn.Parameter
        ``(k, s)`` motifs: the tensor to optimize.
    mosaic : torch.Tensor
        Buffer, ``int64`` ``(m,)``: motif index of every pool block (fixed).
    layout : momos.blocks.BlockLayout
        The pool layout the mosaic refers to.
    """

    def __init__(self, motifs: torch.Tensor, mosaic: torch.Tensor, layout: BlockLayout) -> None:
        super().__init__()
        self.layout = layout
        self.weight = nn.Parameter(motifs)
        self.register_buffer("mosaic", mosaic)

    @property
    def k(self) -> int:
        """Number of motifs."""
        return self.weight.shape[0]

    @property
    def s(self) -> int:
        """Block size."""
        return self.weight.shape[1]

    @property
    def m(self) -> int:
        """Number of pool blocks (padding blocks included)."""
        return self.mosaic.shape[0]

    def blocks(self) -> torch.Tensor:
        """The current pool ``bank[mosaic]``, ``(m, s)`` (differentiable)."""
        return torch.index_select(self.weight, 0, self.mosaic)

    def tensor(self, span: Span) -> torch.Tensor:
        """The current value of one pooled tensor (differentiable), padding trimmed."""
        idx = self.mosaic[span.start : span.start + span.n_blocks]
        # index_select, not weight[idx]: the backward of advanced indexing accumulates
        # the motif gradients in a thread-dependent order on the CPU (index_put_), which
        # made fine-tuning runs differ in the last bits; index_select's (index_add_) does
        # not.
        return torch.index_select(self.weight, 0, idx).reshape(-1)[: span.numel].view(span.shape)

    def forward(self) -> torch.Tensor:
        """The pool of blocks, ``weight[mosaic]`` (m x s)."""
        return self.blocks()

    def extra_repr(self) -> str:
        return f"k={self.k}, s={self.s}, m={self.m}"


class MosaicSlice(nn.Module):
    """Parametrization of one pooled tensor: its span of ``bank[mosaic]``, padding trimmed.
    The latent original is ignored."""

    def __init__(self, bank: MotifBank, span: Span, order: tuple[str, ...]) -> None:
        super().__init__()
        self.bank = bank
        self.span = span
        # The owning module's parameter order before freeze_mosaic, restored by bake.
        self._order = order

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        """This tensor's weights from the bank; the frozen ``original`` is not used."""
        return self.bank.tensor(self.span)

    def extra_repr(self) -> str:
        return f"name={self.span.name!r}, blocks=[{self.span.start}, " \
               f"{self.span.start + self.span.n_blocks})"


def _slices(model: nn.Module) -> list[tuple[nn.Module, str, MosaicSlice]]:
    """Every (module, tensor name, MosaicSlice) of the model, modules deduplicated."""
    found = []
    for mod in model.modules():
        if not parametrize.is_parametrized(mod):
            continue
        for tname, plist in mod.parametrizations.items():
            for p in plist:
                if isinstance(p, MosaicSlice):
                    found.append((mod, tname, p))
    return found


def is_frozen(model: nn.Module) -> bool:
    """Whether :func:`freeze_mosaic` is in effect on ``model``."""
    return bool(_slices(model))


def _check_inputs(model, motifs, mosaic, layout):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(layout, BlockLayout):
        raise TypeError(f"layout must be a momos.blocks.BlockLayout, got {type(layout).__name__}")
    if is_frozen(model):
        raise ValueError("the mosaic of this model is already frozen; bake(model) first")
    tensors = pool_parameters(model)
    for name, _ in tensors:
        if name.startswith("parametrizations.") or ".parametrizations." in name:
            raise ValueError(f"pooled parameter {name!r} is the original of a parametrization "
                             "(QAT attached?); remove it first (e.g. remove_qat(model, "
                             "bake=False)) so that the pooled tensors are plain parameters")
    got = [(n, tuple(t.shape)) for n, t in tensors]
    want = [(sp.name, sp.shape) for sp in layout.spans]
    if got != want:
        diff = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                    min(len(got), len(want)))
        g = got[diff] if diff < len(got) else "nothing"
        w = want[diff] if diff < len(want) else "nothing"
        raise ValueError(f"layout does not match the model: pooled tensor #{diff} is {g} in the "
                         f"model but {w} in the layout ({len(got)} vs {len(want)} tensors); "
                         "use the layout of the projection of this very model")
    if not tensors:
        raise ValueError("nothing to freeze: the model has no trainable, non-empty parameters")
    first_name, first = tensors[0]
    for name, t in tensors:
        if not t.is_floating_point():
            raise TypeError(f"pooled parameter {name!r} has dtype {t.dtype}; need floating point")
        if t.dtype != first.dtype or t.device != first.device:
            raise ValueError(f"pooled parameter {name!r} is {t.dtype} on {t.device} but "
                             f"{first_name!r} is {first.dtype} on {first.device}; all pooled "
                             "tensors must share one dtype and device")

    motifs = torch.as_tensor(motifs)
    if motifs.dim() != 2 or motifs.shape[0] < 1 or motifs.shape[1] != layout.s:
        raise ValueError(f"motifs must have shape (k, s) = (k >= 1, {layout.s}), "
                         f"got {tuple(motifs.shape)}")
    if not motifs.is_floating_point():
        raise TypeError(f"motifs must be floating point, got {motifs.dtype}")
    mosaic = torch.as_tensor(mosaic)
    if mosaic.is_floating_point() or mosaic.is_complex() or mosaic.dtype == torch.bool:
        raise TypeError(f"mosaic must be an integer tensor, got {mosaic.dtype}")
    if mosaic.dim() != 1 or mosaic.shape[0] != layout.m:
        raise ValueError(f"mosaic must have one entry per pool block, shape ({layout.m},), "
                         f"got {tuple(mosaic.shape)}")
    k = motifs.shape[0]
    lo, hi = int(mosaic.min()), int(mosaic.max())
    if lo < 0 or hi >= k:
        raise ValueError(f"mosaic values must lie in [0, k) = [0, {k}), got [{lo}, {hi}]")
    bank = motifs.detach().to(device=first.device, dtype=first.dtype, copy=True)
    return tensors, bank, mosaic.to(device=first.device, dtype=torch.int64, copy=True)


def freeze_mosaic(model: nn.Module, motifs: torch.Tensor, mosaic: torch.Tensor,
                  layout: BlockLayout) -> MotifBank:
    """Freeze the mosaic of a projected model and make the motif bank its only trainable tensor.

    Parameters
    ----------
    model : torch.nn.Module
        Modified in place. Its pooled parameters (``momos.blocks.pool_parameters``) must be
        exactly those of ``layout``: same names, shapes and order, plain parameters (no QAT
        attached), one floating dtype and device.
    motifs : torch.Tensor
        ``(k, s)`` bank, e.g. ``MoMos.motifs``; copied to the model's device and dtype.
    mosaic : torch.Tensor
        Integer ``(m,)`` with values in ``[0, k)``, e.g. ``MoMos.mosaic``; copied.
    layout : momos.blocks.BlockLayout
        E.g. ``MoMos.layout``.

    Returns
    -------
    MotifBank
        ``bank.weight`` is the ``(k, s)`` Parameter to optimize.

    Raises
    ------
    TypeError
        For arguments of the wrong kind or dtype.
    ValueError
        If the layout does not match the model, the mosaic has not ``layout.m`` entries in
        ``[0, k)``, motifs are not ``(k, layout.s)``, the model is already frozen, or a
        pooled tensor is the original of a parametrization (QAT).

    Notes
    -----
    Every pooled tensor reads ``bank[mosaic]`` over its span, so right after the call the
    model computes with ``motifs[mosaic]`` whatever its weights were; for a model just
    projected by ``MoMos`` that is the same function, bit for bit. The latent originals
    (``requires_grad=False`` now) are left as they are. A parameter shared by several
    modules (tied weights) is parametrized in each of them.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from momos.blocks import layout_of, pool_parameters, to_blocks, write_blocks
    >>> model = nn.Linear(3, 1)                      # 3 + 1 weights, s = 2: 2 + 1 blocks
    >>> layout = layout_of(pool_parameters(model), 2)
    >>> motifs = torch.tensor([[0.0, 0.0], [0.5, -0.5]])
    >>> mosaic = torch.tensor([1, 1, 0])
    >>> bank = freeze_mosaic(model, motifs, mosaic, layout)
    >>> model.weight.tolist(), model.bias.tolist()
    ([[0.5, -0.5, 0.5]], [0.0])
    >>> [n for n, p in model.named_parameters() if p.requires_grad]
    ['parametrizations.weight.0.bank.weight']
    >>> opt = torch.optim.SGD([bank.weight], lr=0.25)
    >>> model(torch.ones(1, 3)).sum().backward()
    >>> bank.weight.grad.tolist()                    # motif 1: summed over 2 blocks
    [[1.0, 0.0], [2.0, 1.0]]
    >>> opt.step(); model.weight.tolist(), model.bias.tolist()
    ([[0.0, -0.75, 0.0]], [-0.25])
    >>> bake(model) is model, [n for n, _ in model.named_parameters()]
    (True, ['weight', 'bias'])
    """
    tensors, motifs, mosaic = _check_inputs(model, motifs, mosaic, layout)
    bank = MotifBank(motifs, mosaic, layout)
    spans = {id(t): sp for (_, t), sp in zip(tensors, layout.spans)}
    targets = []  # every (module, tensor name) holding a pooled Parameter (tied: several)
    for mod in model.modules():
        for tname, p in mod._parameters.items():
            if p is not None and id(p) in spans:
                targets.append((mod, tname, spans[id(p)]))
    orders = {id(mod): param_order(mod) for mod, _, _ in targets}
    for mod, tname, sp in targets:
        original = mod._parameters[tname]
        parametrize.register_parametrization(mod, tname, MosaicSlice(bank, sp, orders[id(mod)]))
        original.requires_grad_(False)
    return bank


def bake(model: nn.Module) -> nn.Module:
    """Undo :func:`freeze_mosaic`, leaving the current ``bank[mosaic]`` values in the weights.

    Parameters
    ----------
    model : torch.nn.Module
        A model frozen by :func:`freeze_mosaic`; modified in place.

    Returns
    -------
    torch.nn.Module
        The same object, without the mosaic parametrizations: every pooled ``Parameter`` is
        the object it was before :func:`freeze_mosaic` (so optimizers built on it earlier
        still hold it), at its original name and position in ``named_parameters()``, with
        ``requires_grad=True`` and the motif values written in place.

    Raises
    ------
    ValueError
        If the model has no frozen mosaic, or a frozen tensor carries another
        parametrization too.
    """
    slices = _slices(model)
    if not slices:
        raise ValueError("this model has no frozen mosaic (freeze_mosaic was not called, or "
                         "it was baked already)")
    for mod, tname, _ in slices:
        if len(mod.parametrizations[tname]) != 1:
            kinds = [type(p).__name__ for p in mod.parametrizations[tname]]
            raise ValueError(f"tensor {tname!r} carries other parametrizations too ({kinds}); "
                             "remove them first")
    with torch.no_grad():  # all values first, then remove (tied parameters)
        values = [getattr(mod, tname).clone() for mod, tname, _ in slices]
    orders = {}
    for (mod, tname, sl), value in zip(slices, values):
        parametrize.remove_parametrizations(mod, tname, leave_parametrized=False)
        p = mod._parameters[tname]
        with torch.no_grad():
            p.copy_(value)
        p.requires_grad_(True)
        orders[id(mod)] = (mod, sl._order)
    for mod, order in orders.values():
        restore_param_order(mod, order)
    return model
