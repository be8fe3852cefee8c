"""MoMos on your own model: a plain training loop plus one projection per epoch.

Any ``nn.Module`` works: ``momos.MoMos(s, capacity).project(model)`` replaces every block
of ``s`` consecutive weights (tensor by tensor, biases included) by the nearest of
``k = floor(capacity * m)`` shared motifs, in place. Called after every epoch, as in the
paper, the network learns to live with it. At the end ``momos.description_length``
gives the exact length in bits of a real encoding of the weights, beside the paper's
bound ``k*s*32 + m*ceil(log2 k)`` and the trivial 32 bits per weight.

The data are the handwritten digits that scikit-learn ships (8x8 images, no download).
This uses the library directly; ``momos train`` (docs/tutorial-training.md) does the same
for the paper's models with measurements and checkpoints.

Run:
    python examples/momos_your_model.py [--epochs 20] [--s 2] [--capacity 0.05]
    python examples/momos_your_model.py --smoke        # 1 epoch, a few seconds
"""

import argparse

import torch
from torch import nn

import momos


class SmallNet(nn.Module):
    """Your model: here a small MLP for 8x8 images."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(),
                                  nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@torch.no_grad()
def accuracy(model: nn.Module, split) -> float:
    x, y = split.tensors
    model.eval()
    return (model(x).argmax(1) == y).double().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--s", type=int, default=2, help="block size")
    parser.add_argument("--capacity", type=float, default=0.05, help="k/m, the share of motifs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="1 epoch")
    args = parser.parse_args()
    epochs = 1 if args.smoke else args.epochs

    torch.manual_seed(args.seed)
    splits = momos.load_dataset("digits", seed=args.seed)
    model = SmallNet(splits.classes)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    mm = momos.MoMos(s=args.s, capacity=args.capacity, seed=args.seed)
    loader = torch.utils.data.DataLoader(splits.train, batch_size=64, shuffle=True)

    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        # After the optimizer steps, before validation, as in the paper. The optimizer
        # keeps its state: the projection only moves the weights.
        stats = mm.project(model)
        print(f"epoch {epoch:3d}  val acc {accuracy(model, splits.val):.3f}  "
              f"k {stats.k}  distortion {stats.distortion:.4f}  moved {stats.changed:,} weights")

    dl = momos.description_length(model, mm)
    n = sum(p.numel() for p in model.parameters())
    print(f"test accuracy {accuracy(model, splits.test):.3f} with {stats.k} "
          f"motifs of {args.s} values for {n:,} weights")
    print(f"exact description length {dl.total_bits:>10,} bits  (RAC {dl.rac_exact:.2f})")
    print(f"paper's bound            {dl.bound_bits:>10,} bits  (RAC {dl.rac_bound:.2f})")
    print(f"trivial, 32 bits/weight  {dl.trivial_bits:>10,} bits")


if __name__ == "__main__":
    main()
