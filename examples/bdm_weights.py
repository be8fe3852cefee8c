"""Is a weight array algorithmically simpler than random? BDM of random vs structured weights.

Three 256x256 weight matrices, binarized with the paper's convention (w > 0 -> 1):
Kaiming-uniform random initialization, a smooth low-rank matrix (what training tends to
push towards), and a matrix built from a few repeated 4x4 motifs (what MoMos imposes).
Their BDM is printed in bits, per weight, and relative to the random one.

Run: python examples/bdm_weights.py [--size 256] [--seed 0]
"""

import argparse

import numpy as np

import kcomplex


def weights(size: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    bound = np.sqrt(6 / size)
    random = rng.uniform(-bound, bound, (size, size))
    u, v = rng.normal(size=(size, 2)), rng.normal(size=(2, size))
    low_rank = np.sin(u @ v)
    motifs = rng.normal(size=(8, 4, 4))
    pick = rng.integers(0, 8, (size // 4, size // 4))
    mosaic = motifs[pick].transpose(0, 2, 1, 3).reshape(size, size)
    return {"random init": random, "low rank": low_rank, "8 motifs of 4x4": mosaic}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    one_d, two_d = kcomplex.BDM(ndim=1), kcomplex.BDM(ndim=2)
    rows = []
    for name, w in weights(args.size, args.seed).items():
        bits = kcomplex.binarize(w)
        rows.append((name, one_d.bdm(bits.ravel()), two_d.bdm(bits)))
    base_1d, base_2d = rows[0][1], rows[0][2]
    n = args.size**2
    print(f"{'weights':<18}{'BDM 1-D bits':>14}{'bits/weight':>13}{'vs random':>11}"
          f"{'BDM 2-D bits':>14}{'vs random':>11}")
    for name, b1, b2 in rows:
        print(f"{name:<18}{b1:>14.1f}{b1 / n:>13.4f}{b1 / base_1d:>11.3f}"
              f"{b2:>14.1f}{b2 / base_2d:>11.3f}")


if __name__ == "__main__":
    main()
