"""Tests for momos.models: parameter counts, forward shapes, registry."""

import pytest
import torch
from torch import nn

import momos.models as models
from momos.models import MODELS, build_model, mlp, resnet20, vit

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_all_is_pinned():
    assert sorted(models.__all__) == [
        "MODELS",
        "ResNet20",
        "ViT",
        "build_model",
        "mlp",
        "resnet20",
        "vit",
    ]
    assert set(MODELS) == {"mlp", "resnet20", "vit"}


def test_mlp_parameter_count_matches_paper():
    model = mlp()
    assert n_params(model) == 986_634
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (3072, 256),
        (256, 256),
        (256, 256),
        (256, 256),
        (256, 10),
    ]
    assert isinstance(model[0], nn.Flatten)


@pytest.mark.parametrize(
    "in_f,hidden,depth,classes", [(64, 256, 4, 10), (10, 7, 0, 3), (5, 8, 2, 2)]
)
def test_mlp_parameter_formula(in_f, hidden, depth, classes):
    widths = [in_f] + [hidden] * depth + [classes]
    expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    assert n_params(mlp(in_f, hidden, depth, classes)) == expected


def test_resnet20_parameter_count_matches_paper():
    model = resnet20()
    assert n_params(model) == 269_722
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19  # 1 stem + 9 blocks x 2; option-A shortcuts have no parameters
    assert all(m.bias is None for m in convs)
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 1


def test_resnet_depth_is_configurable():
    from momos.models import ResNet20

    assert len(ResNet20(blocks=(5, 5, 5)).layer1) == 5
    with pytest.raises(ValueError, match="blocks must be 3"):
        ResNet20(blocks=(3, 3))


def test_resnet20_kaiming_init():
    torch.manual_seed(0)
    model = resnet20()
    w = model.layer3[1].conv1.weight  # 64 x 64 x 3 x 3, fan_in 576
    assert w.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)


def test_resnet20_option_a_shortcut_subsamples_and_pads():
    block = resnet20().layer2[0]
    x = torch.randn(2, 16, 8, 8)
    out = block.shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def vit_formula(image_size, patch, in_channels, dim, depth, heads, mlp_dim, classes):
    tokens = (image_size // patch) ** 2 + 1
    embed = in_channels * patch * patch * dim + dim  # conv weight + bias
    cls_pos = dim + tokens * dim
    block = (
        2 * dim  # LayerNorm 1
        + 3 * dim * dim
        + 3 * dim  # q, k, v projections
        + dim * dim
        + dim  # attention output projection
        + 2 * dim  # LayerNorm 2
        + dim * mlp_dim
        + mlp_dim
        + mlp_dim * dim
        + dim  # MLP
    )
    return embed + cls_pos + depth * block + 2 * dim + dim * classes + classes


@pytest.mark.parametrize(
    "cfg",
    [
        dict(
            image_size=32, patch=4, in_channels=3, dim=64, depth=6, heads=4, mlp_dim=128, classes=10
        ),
        dict(
            image_size=8, patch=2, in_channels=1, dim=32, depth=2, heads=2, mlp_dim=64, classes=10
        ),
        dict(
            image_size=28, patch=7, in_channels=1, dim=48, depth=0, heads=3, mlp_dim=96, classes=5
        ),
    ],
)
def test_vit_parameter_count_closed_form(cfg):
    assert n_params(vit(**cfg)) == vit_formula(**cfg)


def test_vit_rejects_bad_sizes():
    with pytest.raises(ValueError, match="patch 3 must divide"):
        vit(image_size=32, patch=3)
    with pytest.raises(ValueError, match="heads 5 must divide"):
        vit(dim=64, heads=5)
    with pytest.raises(ValueError, match="built for 32x32"):
        vit()(torch.zeros(1, 3, 28, 28))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_shape(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, classes=7)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_backward_runs(name):
    model = build_model(name, (1, 8, 8), classes=10)
    loss = model(torch.randn(4, 1, 8, 8)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_build_model_adapts_to_input_shape():
    assert build_model("mlp", (1, 8, 8), 10)[1].in_features == 64
    assert build_model("mlp", (3, 32, 32), 10)[1].in_features == 3072
    assert build_model("resnet20", (1, 8, 8), 10).conv1.in_channels == 1
    assert n_params(build_model("mlp", (3, 32, 32), 10)) == 986_634
    assert n_params(build_model("resnet20", (3, 32, 32), 10)) == 269_722
    assert {s: build_model("vit", s, 10).patch for s in SHAPES} == {
        (1, 8, 8): 2,
        (1, 28, 28): 4,
        (3, 32, 32): 4,
    }
    assert build_model("vit", (1, 28, 28), 10, patch=7).patch == 7
    assert build_model("mlp", (1, 8, 8), 10, hidden=16)[1].out_features == 16


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model 'lenet'; valid models: mlp, resnet20, vit"):
        build_model("lenet", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="in_shape"):
        build_model("mlp", (8, 8), 10)
    with pytest.raises(ValueError, match="square"):
        build_model("vit", (1, 8, 16), 10)
    with pytest.raises(ValueError, match="classes"):
        build_model("mlp", (1, 8, 8), 0)


def test_construction_is_seeded():
    torch.manual_seed(1)
    a = build_model("vit", (1, 8, 8), 10)
    torch.manual_seed(1)
    b = build_model("vit", (1, 8, 8), 10)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
