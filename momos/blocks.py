"""Model parameters <-> the global block pool of MoMos.

Every parameter with ``requires_grad`` and at least one element, in ``parameters()``
order, is flattened on its own, zero-padded to a multiple of the block size ``s`` and cut
into blocks of ``s`` values; blocks never cross tensors. The pool is the concatenation of
all those blocks, ``(m, s)``, on the parameters' device.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["BUFFER_NAMES", "BlockLayout", "Span", "is_buffer_name", "layout_of", "to_blocks",
           "write_blocks", "pool_parameters"]

#: Last name parts of the buffers (not parameters) of common torch and Hugging Face
#: modules: batch-norm statistics, position ids, rotary frequencies, attention masks.
BUFFER_NAMES = frozenset({
    "running_mean", "running_var", "num_batches_tracked", "position_ids", "inv_freq",
    "masked_bias", "relative_position_index", "token_type_ids"})


def is_buffer_name(name: str) -> bool:
    """Whether a state-dict name is a buffer's by its last part (:data:`BUFFER_NAMES`).

    A state dict does not say which tensors are parameters; a module's does
    (``named_buffers``), and that is the rule for modules. For a state dict this name rule
    makes the pool the same as the module's for the standard layers.

    Examples
    --------
    >>> is_buffer_name("layer1.0.bn1.running_var"), is_buffer_name("layer1.0.bn1.weight")
    (True, False)
    """
    return name.rpartition(".")[2] in BUFFER_NAMES


@dataclass(frozen=True)
class Span:
    """Where one tensor lives in the pool: blocks ``[start, start + n_blocks)``."""

    name: str
    shape: tuple[int, ...]
    numel: int
    start: int
    n_blocks: int


@dataclass(frozen=True)
class BlockLayout:
    """Block size and the span of every pooled tensor, in pool order."""

    s: int
    spans: tuple[Span, ...]

    @property
    def m(self) -> int:
        """Number of blocks in the pool, padding blocks included."""
        return sum(sp.n_blocks for sp in self.spans)

    @property
    def n(self) -> int:
        """Number of real weights (padding excluded)."""
        return sum(sp.numel for sp in self.spans)

    def real_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``(m, s)`` bool: True where a pool entry is a real weight, False on padding."""
        mask = torch.ones(self.m * self.s, dtype=torch.bool, device=device)
        for sp in self.spans:
            mask[sp.start * self.s + sp.numel : (sp.start + sp.n_blocks) * self.s] = False
        return mask.view(self.m, self.s)


def pool_parameters(
    source: nn.Module | Mapping[str, torch.Tensor], include_buffers: bool = False,
) -> list[tuple[str, torch.Tensor]]:
    """The tensors that MoMos pools: trainable, non-empty parameters of a module in
    ``parameters()`` order, or the non-empty floating tensors of a state dict in order,
    except those named like buffers (:func:`is_buffer_name`) unless `include_buffers`.

    Examples
    --------
    >>> state = {"bn.weight": torch.ones(2), "bn.running_var": torch.ones(2)}
    >>> [n for n, _ in pool_parameters(state)]
    ['bn.weight']
    >>> [n for n, _ in pool_parameters(state, include_buffers=True)]
    ['bn.weight', 'bn.running_var']
    """
    if isinstance(source, nn.Module):
        items: Iterable = source.named_parameters()
        return [(n, p) for n, p in items if p.requires_grad and p.numel() > 0]
    if isinstance(source, Mapping):
        return [(n, t) for n, t in source.items()
                if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() > 0
                and (include_buffers or not is_buffer_name(n))]
    raise TypeError(
        f"expected an nn.Module or a state dict of tensors, got {type(source).__name__}"
    )


def layout_of(tensors: list[tuple[str, torch.Tensor]], s: int) -> BlockLayout:
    """Layout of ``(name, tensor)`` pairs cut into blocks of ``s``."""
    if isinstance(s, bool) or not isinstance(s, int) or s < 1:
        raise ValueError(f"block size s must be an integer >= 1, got {s!r}")
    if not tensors:
        raise ValueError("no parameters to pool: none is trainable and non-empty")
    spans, start = [], 0
    for name, t in tensors:
        n_blocks = -(-t.numel() // s)
        spans.append(Span(name, tuple(t.shape), t.numel(), start, n_blocks))
        start += n_blocks
    return BlockLayout(s, tuple(spans))


def to_blocks(tensors: list[tuple[str, torch.Tensor]], layout: BlockLayout) -> torch.Tensor:
    """The pool ``(m, s)``: each tensor flattened and zero-padded on its own. A new tensor
    on the tensors' device and dtype (of the first tensor), detached."""
    first = tensors[0][1]
    pool = torch.zeros(layout.m * layout.s, dtype=first.dtype, device=first.device)
    for (_, t), sp in zip(tensors, layout.spans):
        pool[sp.start * layout.s : sp.start * layout.s + sp.numel] = t.detach().reshape(-1)
    return pool.view(layout.m, layout.s)


@torch.no_grad()
def write_blocks(
    tensors: list[tuple[str, torch.Tensor]], blocks: torch.Tensor, layout: BlockLayout
) -> None:
    """Write a pool back into the tensors in place, padding trimmed."""
    if tuple(blocks.shape) != (layout.m, layout.s):
        raise ValueError(
            f"pool of shape {tuple(blocks.shape)}; layout needs {(layout.m, layout.s)}")
    flat = blocks.reshape(-1)
    for (_, t), sp in zip(tensors, layout.spans):
        t.copy_(flat[sp.start * layout.s : sp.start * layout.s + sp.numel].view(t.shape))
