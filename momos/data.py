"""Datasets for the paper's experiments, read from local files only (never a download).

``digits`` (the default) is the 1,797 8x8 handwritten digits that scikit-learn ships. MNIST
and Fashion-MNIST are read from their IDX files (raw or ``.gz``) and CIFAR-10 from its binary
version, all from a local ``data_dir``. Every loader returns :class:`Splits`: train,
validation and test :class:`~torch.utils.data.TensorDataset` objects of float32 images
``(N, C, H, W)`` standardized per channel with the training split's mean and std, and int64
labels. Splits are stratified by class and fixed by ``seed``.

Examples
--------
>>> splits = load_dataset("digits", seed=0)
>>> len(splits.train), len(splits.val), len(splits.test), splits.in_shape, splits.classes
(1258, 180, 359, (1, 8, 8), 10)
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = ["DATASETS", "Splits", "load_dataset", "read_idx", "stratified_split"]

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)
_CIFAR_RECORD = 1 + 3 * 32 * 32


@dataclass(frozen=True)
class Splits:
    """A dataset cut into train, validation and test splits.

    Attributes
    ----------
    train, val, test : torch.utils.data.TensorDataset
        ``(x, y)`` with ``x`` float32 ``(N, C, H, W)`` and ``y`` int64 ``(N,)``.
    in_shape : tuple of int
        ``(C, H, W)`` of one image.
    classes : int
        Number of classes; labels lie in ``0 .. classes-1``.
    name : str
        The dataset's registry name.
    """

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    in_shape: tuple[int, int, int]
    classes: int
    name: str


# ------------------------------------------------------------------------------- splitting


def stratified_split(labels: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices ``0..len(labels)-1`` into ``(rest, held_out)`` with ``len(held_out) == count``.

    Each class contributes to ``held_out`` in proportion to its size (to within one sample):
    samples are shuffled by ``seed``, ranked within their class, and the ``count`` samples
    with the smallest relative rank ``(rank + 0.5) / class_size`` are held out. Works for any
    sizes, even fewer held-out samples than classes. Both index arrays are sorted.

    Examples
    --------
    >>> rest, held = stratified_split(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 2, seed=0)
    >>> sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1])[held].tolist())
    [0, 1]
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not 0 <= count <= n:
        raise ValueError(f"cannot hold out {count} of {n} samples")
    order = np.random.default_rng(seed).permutation(n)
    shuffled = labels[order]
    rank = np.empty(n, dtype=np.int64)
    sizes = np.zeros(n, dtype=np.int64)
    for label in np.unique(shuffled):
        where = np.flatnonzero(shuffled == label)
        rank[where] = np.arange(len(where))
        sizes[where] = len(where)
    key = (rank + 0.5) / sizes
    chosen = order[np.argsort(key, kind="stable")[:count]]
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _standardized(
    x_train, x_val, x_test, y_train, y_val, y_test, classes: int, name: str
) -> Splits:
    """Standardize every split per channel with the training split's mean/std; wrap as Splits.

    The float32 image arrays are owned by the caller's fresh copies and normalized in place;
    statistics are accumulated in float64 over chunks, so memory stays at one float32 copy.
    """
    x_train = np.asarray(x_train, dtype=np.float32)
    if len(x_train) == 0:
        raise ValueError(f"{name}: the training split is empty")
    total = np.zeros(x_train.shape[1])
    squares = np.zeros(x_train.shape[1])
    for start in range(0, len(x_train), 4096):
        chunk = x_train[start : start + 4096].astype(np.float64)
        total += chunk.sum(axis=(0, 2, 3))
        squares += np.square(chunk).sum(axis=(0, 2, 3))
    count = x_train.size // x_train.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    std[std < 1e-12] = 1.0
    mean32 = mean.astype(np.float32)[:, None, None]
    std32 = std.astype(np.float32)[:, None, None]

    def wrap(x, y) -> TensorDataset:
        x = np.asarray(x, dtype=np.float32)
        x -= mean32
        x /= std32
        return TensorDataset(torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.int64)))

    return Splits(
        wrap(x_train, y_train),
        wrap(x_val, y_val),
        wrap(x_test, y_test),
        tuple(int(d) for d in x_train.shape[1:]),
        classes,
        name,
    )


def _hold_out(x, y, fraction: float, seed: int):
    """``(x_train, y_train, x_val, y_val)``: a stratified ``fraction`` of ``x`` held out."""
    rest, held = stratified_split(y, int(round(fraction * len(y))), seed)
    return x[rest], y[rest], x[held], y[held]


# ---------------------------------------------------------------------------------- digits


def _digits(
    data_dir=None, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> Splits:
    """scikit-learn's 8x8 digits, values /16, split 70/10/20 by default."""
    from sklearn.datasets import load_digits

    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
        )
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    n = len(y)
    rest, test = stratified_split(y, int(round(test_fraction * n)), seed)
    keep, val = stratified_split(y[rest], int(round(val_fraction * n)), seed + 1)
    train, val = rest[keep], rest[val]
    return _standardized(x[train], x[val], x[test], y[train], y[val], y[test], 10, "digits")


# ------------------------------------------------------------------------------------- IDX


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed, into a NumPy array.

    The header is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C
    int32, 0x0D float32, 0x0E float64), the number of dimensions, then each dimension as a
    big-endian uint32; the data follow, big-endian, row-major.

    Raises
    ------
    ValueError
        On a bad magic number, unknown type code, or a data size that does not match the
        header (truncated or trailing bytes); the message names the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt gzip stream ({exc})") from exc
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions, {len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    body = len(raw) - 4 - 4 * ndim
    if body != expected:
        raise ValueError(
            f"{path}: header declares shape {dims} ({expected} data bytes) "
            f"but the file holds {body}"
        )
    return (
        np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(dims).astype(dtype.newbyteorder("="))
    )


def _find(
    data_dir, names: tuple[str, ...], subdirs: tuple[str, ...], dataset: str, gz: bool
) -> list[Path]:
    """Locate every file of ``names`` in one of the searched directories, or raise."""
    if data_dir is None:
        raise ValueError(
            f"{dataset} is read from local files: "
            f"pass data_dir (--data-dir) holding {', '.join(names)}"
        )
    base = Path(data_dir)
    searched = [base] + [base / s for s in subdirs]
    for folder in searched:
        found = []
        for name in names:
            options = [folder / name] + ([folder / f"{name}.gz"] if gz else [])
            hit = next((p for p in options if p.is_file()), None)
            if hit is None:
                break
            found.append(hit)
        else:
            return found
    suffix = " (or with .gz)" if gz else ""
    raise FileNotFoundError(
        f"{dataset}: expected files {', '.join(names)}{suffix} "
        f"in {' or '.join(str(s) for s in searched)}; "
        "some are missing (nothing is downloaded)"
    )


def _idx_dataset(name: str) -> Callable[..., Splits]:
    def load(data_dir=None, seed: int = 0, val_fraction: float = 0.05) -> Splits:
        paths = _find(data_dir, _IDX_FILES, (name,), name, gz=True)
        x_tr, y_tr, x_te, y_te = (read_idx(p) for p in paths)
        for images, labels, split in ((x_tr, y_tr, "train"), (x_te, y_te, "t10k")):
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise ValueError(
                    f"{name}: {split} images {images.shape} and labels {labels.shape} do not match"
                )
            if labels.size and (labels.min() < 0 or labels.max() > 9):
                raise ValueError(f"{name}: {split} labels must lie in 0..9")
        x_tr = x_tr[:, None].astype(np.float32) / 255.0
        x_te = x_te[:, None].astype(np.float32) / 255.0
        y_tr, y_te = y_tr.astype(np.int64), y_te.astype(np.int64)
        x_tr, y_tr, x_va, y_va = _hold_out(x_tr, y_tr, val_fraction, seed)
        return _standardized(x_tr, x_va, x_te, y_tr, y_va, y_te, 10, name)

    load.__doc__ = f"{name} from its four IDX files in data_dir (raw or .gz); 5% of train held out."
    return load


# ----------------------------------------------------------------------------------- CIFAR


def _read_cifar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _CIFAR_RECORD:
        raise ValueError(
            f"{path}: {raw.size} bytes is not a whole number of "
            f"{_CIFAR_RECORD}-byte CIFAR-10 records"
        )
    records = raw.reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{path}: CIFAR-10 labels must lie in 0..9, found {labels.max()}")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _cifar10(data_dir=None, seed: int = 0, val_fraction: float = 0.05) -> Splits:
    """CIFAR-10, binary version; 5% of train held out for validation."""
    paths = _find(data_dir, _CIFAR_FILES, ("cifar-10-batches-bin",), "cifar10", gz=False)
    parts = [_read_cifar(p) for p in paths]
    x_tr = np.concatenate([p[0] for p in parts[:5]]).astype(np.float32) / 255.0
    y_tr = np.concatenate([p[1] for p in parts[:5]])
    x_te, y_te = parts[5][0].astype(np.float32) / 255.0, parts[5][1]
    x_tr, y_tr, x_va, y_va = _hold_out(x_tr, y_tr, val_fraction, seed)
    return _standardized(x_tr, x_va, x_te, y_tr, y_va, y_te, 10, "cifar10")


# -------------------------------------------------------------------------------- registry

DATASETS: dict[str, Callable[..., Splits]] = {
    "digits": _digits,
    "mnist": _idx_dataset("mnist"),
    "fashion-mnist": _idx_dataset("fashion-mnist"),
    "cifar10": _cifar10,
}
"""Dataset loaders by name; each takes ``(data_dir, seed, val_fraction)``."""


def load_dataset(
    name: str = "digits", data_dir=None, seed: int = 0, val_fraction: float | None = None
) -> Splits:
    """Load dataset ``name`` and split it, deterministically for a given ``seed``.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`: ``digits`` (embedded, 70/10/20 train/val/test), ``mnist``,
        ``fashion-mnist`` (IDX files) or ``cifar10`` (binary version), the last three with
        their official test set and a stratified validation split held out from train.
    data_dir : str or Path, optional
        Directory with the files (also searched: ``data_dir/<name>`` for the IDX datasets,
        ``data_dir/cifar-10-batches-bin`` for CIFAR-10). Unused for ``digits``.
    seed : int
        Seed of the stratified splits.
    val_fraction : float, optional
        Fraction of all samples (digits) or of the training files (others) held out for
        validation; default 0.1 for digits and 0.05 otherwise.

    Raises
    ------
    ValueError
        Unknown name (lists the valid ones), bad fraction, corrupt files.
    FileNotFoundError
        A file is missing; the message lists every expected file name and the directories.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    kw = {}
    if val_fraction is not None:
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
        kw["val_fraction"] = float(val_fraction)
    return DATASETS[name](data_dir=data_dir, seed=int(seed), **kw)
