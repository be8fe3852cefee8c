"""Tests for momos.data: digits splits, IDX and CIFAR-10 readers on tiny files, errors."""

import gzip
import struct

import numpy as np
import pytest
import torch

import momos.data as data
from momos.data import DATASETS, Splits, load_dataset, read_idx, stratified_split

IDX_NAMES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
CIFAR_NAMES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype("u1"): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.tobytes()


def labels_for(n, rng):
    return (np.arange(n) % 10).astype(np.uint8)[rng.permutation(n)]


def write_idx_set(folder, n_train=40, n_test=20, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        labels_for(n_train, rng),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        labels_for(n_test, rng),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        raw = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


def write_cifar_set(folder, per_batch=8, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in CIFAR_NAMES:
        n = n_test if name == "test_batch.bin" else per_batch
        labels = labels_for(n, rng)
        images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels[:, None], images], axis=1).tobytes())
        written[name] = (labels, images)
    return written


def check_splits(s: Splits, in_shape, total_train, n_test):
    assert s.in_shape == in_shape and s.classes == 10
    for split in (s.train, s.val, s.test):
        x, y = split.tensors
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == in_shape and len(x) == len(y)
        assert 0 <= y.min() and y.max() <= 9
        assert torch.isfinite(x).all()
    assert len(s.train) + len(s.val) == total_train
    assert len(s.test) == n_test


def same(a: Splits, b: Splits) -> bool:
    return all(
        torch.equal(u, v)
        for sa, sb in ((a.train, b.train), (a.val, b.val), (a.test, b.test))
        for u, v in zip(sa.tensors, sb.tensors, strict=True)
    )


def test_all_and_registry():
    assert sorted(data.__all__) == [
        "DATASETS",
        "Splits",
        "load_dataset",
        "read_idx",
        "stratified_split",
    ]
    assert set(DATASETS) == {"digits", "mnist", "fashion-mnist", "cifar10"}


# ------------------------------------------------------------------------------ splitting


@pytest.mark.parametrize("n,count", [(10, 0), (10, 3), (37, 5), (100, 100)])
def test_stratified_split_partitions(n, count):
    labels = np.arange(n) % 4
    rest, held = stratified_split(labels, count, seed=3)
    assert len(held) == count
    assert np.array_equal(np.sort(np.concatenate([rest, held])), np.arange(n))


def test_stratified_split_is_proportional():
    labels = np.repeat(np.arange(5), [10, 20, 30, 40, 100])
    _, held = stratified_split(labels, 40, seed=0)
    counts = np.bincount(labels[held], minlength=5)
    assert np.all(np.abs(counts - np.array([2, 4, 6, 8, 20])) <= 1)


def test_stratified_split_rejects_bad_count():
    with pytest.raises(ValueError, match="cannot hold out 11 of 10"):
        stratified_split(np.zeros(10), 11, seed=0)


# --------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return load_dataset("digits", seed=0)


def test_digits_sizes_and_types(digits):
    check_splits(digits, (1, 8, 8), 1797 - len(digits.test), len(digits.test))
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1258, 180, 359)
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert digits.name == "digits"


def test_digits_stratified(digits):
    for split in (digits.train, digits.val, digits.test):
        counts = torch.bincount(split.tensors[1], minlength=10)
        assert (counts > 0).all()
        assert counts.max() - counts.min() <= 0.1 * len(split) + 2


def test_digits_standardized_with_train_stats(digits):
    x = digits.train.tensors[0]
    assert x.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert x.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


def test_digits_deterministic_and_seeded(digits):
    assert same(digits, load_dataset("digits", seed=0))
    other = load_dataset("digits", seed=1)
    assert not same(digits, other)

    # the same 1,797 labels, just split differently
    def counts(s):
        return torch.bincount(
            torch.cat([t.tensors[1] for t in (s.train, s.val, s.test)]), minlength=10
        )

    assert torch.equal(counts(digits), counts(other))


def test_digits_splits_disjoint(digits):
    rows = lambda split: {tuple(r) for r in split.tensors[0].flatten(1).tolist()}  # noqa: E731
    # the digits contain a few duplicate images, so allow a handful of coincidences
    assert len(rows(digits.train) & rows(digits.test)) <= 5


def test_digits_val_fraction():
    s = load_dataset("digits", val_fraction=0.2)
    assert len(s.val) == round(0.2 * 1797) and len(s.test) == 359


# ------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = idx_bytes(a)
    (tmp_path / "a").write_bytes(gzip.compress(raw) if gz else raw)
    assert np.array_equal(read_idx(tmp_path / "a"), a)
    b = np.arange(-3, 3, dtype=">i4")
    (tmp_path / "b").write_bytes(idx_bytes(b))
    out = read_idx(tmp_path / "b")
    assert out.tolist() == b.tolist() and out.dtype == np.int32


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"", "bad magic"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x02ab", "bad magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x02ab", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
        (
            b"\x00\x00\x08\x01\x00\x00\x00\x05ab",
            r"shape \(5,\) \(5 data bytes\) but the file holds 2",
        ),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01ab", "holds 2"),
        (b"\x1f\x8b\x08garbage", "corrupt gzip"),
    ],
)
def test_read_idx_rejects_corrupt(tmp_path, raw, match):
    (tmp_path / "f").write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        read_idx(tmp_path / "f")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_dataset(tmp_path, name, gz):
    arrays = write_idx_set(tmp_path, gz=gz)
    s = load_dataset(name, data_dir=tmp_path, seed=0)
    check_splits(s, (1, 28, 28), 40, 20)
    assert len(s.val) == 2 and s.name == name
    # the test split keeps the file's order; standardization is per channel and monotone
    assert torch.equal(s.test.tensors[1], torch.from_numpy(arrays[3].astype(np.int64)))
    order = np.argsort(arrays[2].reshape(-1), kind="stable")
    assert torch.all(torch.diff(s.test.tensors[0].reshape(-1)[order]) >= 0)
    assert same(s, load_dataset(name, data_dir=tmp_path, seed=0))
    assert not torch.equal(
        s.val.tensors[0], load_dataset(name, data_dir=tmp_path, seed=5).val.tensors[0]
    )


def test_idx_dataset_in_subfolder_and_val_fraction(tmp_path):
    write_idx_set(tmp_path / "mnist", gz=True)
    s = load_dataset("mnist", data_dir=tmp_path, val_fraction=0.25)
    assert len(s.val) == 10
    assert (torch.bincount(s.val.tensors[1], minlength=10) == 1).all()


def test_idx_missing_file_lists_names(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(err.value)
    assert all(n in message for n in IDX_NAMES)
    assert str(tmp_path) in message and ".gz" in message


def test_idx_mismatched_counts(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(39, np.uint8)))
    with pytest.raises(ValueError, match="train images .* and labels .* do not match"):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_truncated_file(tmp_path):
    write_idx_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*but the file holds"):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_needs_data_dir():
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("mnist")


# ---------------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("sub", ["", "cifar-10-batches-bin"])
def test_cifar10(tmp_path, sub):
    written = write_cifar_set(tmp_path / sub if sub else tmp_path)
    s = load_dataset("cifar10", data_dir=tmp_path, seed=0)
    check_splits(s, (3, 32, 32), 40, 10)
    assert len(s.val) == 2 and s.name == "cifar10"
    labels, images = written["test_batch.bin"]
    assert s.test.tensors[1].tolist() == labels.tolist()
    # channel-major layout: each channel standardized on its own, order within a channel kept
    red = images.reshape(-1, 3, 1024)[:, 0].reshape(-1)
    got = s.test.tensors[0][:, 0].reshape(-1)[np.argsort(red, kind="stable")]
    assert torch.all(torch.diff(got) >= 0)
    assert same(s, load_dataset("cifar10", data_dir=tmp_path, seed=0))


def test_cifar10_missing_file_lists_names(tmp_path):
    write_cifar_set(tmp_path)
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    message = str(err.value)
    assert all(n in message for n in CIFAR_NAMES)
    assert str(tmp_path) in message and "cifar-10-batches-bin" in message


def test_cifar10_corrupt_sizes_and_labels(tmp_path):
    write_cifar_set(tmp_path)
    path = tmp_path / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="data_batch_2.bin.*3073-byte"):
        load_dataset("cifar10", data_dir=tmp_path)
    write_cifar_set(tmp_path)
    raw = bytearray((tmp_path / "test_batch.bin").read_bytes())
    raw[0] = 10
    (tmp_path / "test_batch.bin").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        load_dataset("cifar10", data_dir=tmp_path)


# ---------------------------------------------------------------------------------- errors


def test_unknown_dataset_lists_valid():
    with pytest.raises(
        ValueError,
        match="unknown dataset 'svhn'; valid datasets: cifar10, digits, fashion-mnist, mnist",
    ):
        load_dataset("svhn")


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_bad_val_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("digits", val_fraction=fraction)


def test_digits_fractions_must_leave_train():
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction"):
        load_dataset("digits", val_fraction=0.8)


def test_splits_is_frozen(digits):
    with pytest.raises(AttributeError):
        digits.classes = 3
