"""The paper's models: an MLP, ResNet-20 for CIFAR and a small vision transformer.

Every model takes images shaped ``(batch, channels, height, width)`` and returns logits
shaped ``(batch, classes)``. :func:`build_model` picks one by name from :data:`MODELS` and
adapts its input size to a dataset's ``in_shape``.

Examples
--------
>>> import torch
>>> model = build_model("mlp", (1, 8, 8), classes=10)
>>> model(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
>>> sum(p.numel() for p in mlp().parameters())
986634
>>> sum(p.numel() for p in resnet20().parameters())
269722
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MODELS", "ResNet20", "ViT", "build_model", "mlp", "resnet20", "vit"]


# --------------------------------------------------------------------------------------- MLP


def mlp(
    in_features: int = 3072, hidden: int = 256, depth: int = 4, classes: int = 10
) -> nn.Sequential:
    """A ReLU multilayer perceptron: ``in_features - hidden x depth - classes``.

    Parameters
    ----------
    in_features : int
        Number of input values after flattening (3072 for 3x32x32 images).
    hidden : int
        Width of every hidden layer.
    depth : int
        Number of hidden layers (each ``Linear`` followed by ``ReLU``); 0 gives a linear model.
    classes : int
        Number of output logits.

    Returns
    -------
    torch.nn.Sequential
        ``Flatten``, then ``depth`` pairs of ``Linear``/``ReLU``, then ``Linear`` to ``classes``.

    Examples
    --------
    >>> sum(p.numel() for p in mlp(64, classes=10).parameters())
    216586
    """
    _check_positive(in_features=in_features, hidden=hidden, classes=classes)
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------- ResNet-20


class _ShortcutA(nn.Module):
    """Parameter-free shortcut (option A): subsample by ``stride``, zero-pad the channels."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride = stride
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            before = self.extra // 2
            x = F.pad(x, (0, 0, 0, 0, before, self.extra - before))
        return x


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a ReLU between and an identity/option-A shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = _ShortcutA(stride, planes - in_planes)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """ResNet-20 for CIFAR (He et al., 2016): 3 stages of 3 basic blocks, 16/32/64 channels.

    Shortcuts are option A (stride-2 subsampling and zero-padded channels, no parameters);
    conv and linear weights use Kaiming normal initialization. Works on any image of at
    least 1x1 pixels thanks to global average pooling. ``blocks`` gives the number of basic
    blocks per stage: (3, 3, 3) is ResNet-20, (5, 5, 5) ResNet-32, (9, 9, 9) ResNet-56.
    """

    def __init__(self, classes: int = 10, in_channels: int = 3, blocks: Sequence[int] = (3, 3, 3)):
        super().__init__()
        _check_positive(classes=classes, in_channels=in_channels)
        if len(blocks) != 3 or min(blocks) < 1:
            raise ValueError(f"blocks must be 3 positive stage depths, got {tuple(blocks)}")
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages = []
        in_planes = 16
        for i, (planes, n) in enumerate(zip((16, 32, 64), blocks, strict=True)):
            layers = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(_BasicBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(in_planes, classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet20(classes: int = 10, in_channels: int = 3) -> ResNet20:
    """ResNet-20 for CIFAR with option-A shortcuts: 269,722 parameters for 3 channels, 10 classes.

    Examples
    --------
    >>> sum(p.numel() for p in resnet20(classes=10, in_channels=1).parameters())
    269434
    """
    return ResNet20(classes=classes, in_channels=in_channels)


# --------------------------------------------------------------------------------------- ViT


class _Block(nn.Module):
    """Pre-norm transformer encoder block: x + MHA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A small vision transformer (Dosovitskiy et al., 2021), written without timm.

    Patch embedding by a ``patch x patch`` convolution with stride ``patch``, a learned class
    token and position embedding, ``depth`` pre-norm blocks, a final LayerNorm and a linear
    head on the class token.

    Parameters
    ----------
    image_size : int
        Height and width of the (square) input images; must be divisible by ``patch``.
    patch : int
        Side of the square patches.
    in_channels, dim, depth, heads, mlp_dim, classes : int
        Input channels, embedding width, number of blocks, attention heads (must divide
        ``dim``), hidden width of each block's MLP, output logits.
    dropout : float
        Dropout in attention and MLPs (0 by default).
    """

    def __init__(
        self,
        image_size: int = 32,
        patch: int = 4,
        in_channels: int = 3,
        dim: int = 64,
        depth: int = 6,
        heads: int = 4,
        mlp_dim: int = 128,
        classes: int = 10,
        dropout: float = 0.0,
    ):
        super().__init__()
        _check_positive(
            image_size=image_size,
            patch=patch,
            in_channels=in_channels,
            dim=dim,
            heads=heads,
            mlp_dim=mlp_dim,
            classes=classes,
        )
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if image_size % patch:
            raise ValueError(f"patch {patch} must divide image_size {image_size}")
        if dim % heads:
            raise ValueError(f"heads {heads} must divide dim {dim}")
        self.image_size, self.patch = image_size, patch
        tokens = (image_size // patch) ** 2 + 1
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.Sequential(*(_Block(dim, heads, mlp_dim, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"ViT built for {self.image_size}x{self.image_size} images, "
                f"got {tuple(x.shape[-2:])}"
            )
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def vit(
    image_size: int = 32,
    patch: int = 4,
    in_channels: int = 3,
    dim: int = 64,
    depth: int = 6,
    heads: int = 4,
    mlp_dim: int = 128,
    classes: int = 10,
    dropout: float = 0.0,
) -> ViT:
    """A small vision transformer; see :class:`ViT` for the parameters.

    Examples
    --------
    >>> sum(p.numel() for p in vit(image_size=8, patch=2, in_channels=1, depth=1).parameters())
    35722
    """
    return ViT(image_size, patch, in_channels, dim, depth, heads, mlp_dim, classes, dropout)


# ---------------------------------------------------------------------------------- registry

MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "resnet20": resnet20, "vit": vit}
"""Model constructors by name."""


def _default_patch(size: int) -> int:
    """4 for images of side >= 16 divisible by 4 (28, 32), else the largest of 2, 1 that divides."""
    if size >= 16 and size % 4 == 0:
        return 4
    return 2 if size % 2 == 0 else 1


def build_model(name: str, in_shape: Sequence[int], classes: int, **kw) -> nn.Module:
    """Build the model ``name`` for inputs shaped ``in_shape = (channels, height, width)``.

    The MLP gets ``in_features = C*H*W``; ResNet-20 gets ``in_channels = C``; the ViT gets
    ``in_channels = C``, ``image_size = H`` (square images only) and, unless given, a patch
    of 4 for sides >= 16 divisible by 4 (28, 32) and 2 for small images (8). Other keyword
    arguments go to the constructor.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones) or a bad ``in_shape``.

    Examples
    --------
    >>> build_model("vit", (1, 28, 28), classes=10).patch
    4
    >>> build_model("vit", (1, 8, 8), classes=10).patch
    2
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    shape = tuple(int(d) for d in in_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"in_shape must be (channels, height, width) with positive sizes, got {tuple(in_shape)}"
        )
    c, h, w = shape
    if name == "mlp":
        return mlp(in_features=c * h * w, classes=classes, **kw)
    if name == "resnet20":
        return resnet20(classes=classes, in_channels=c, **kw)
    if h != w:
        raise ValueError(f"the ViT needs square images, got {h}x{w}")
    kw.setdefault("patch", _default_patch(h))
    return vit(image_size=h, in_channels=c, classes=classes, **kw)


def _check_positive(**sizes: int) -> None:
    for key, value in sizes.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
