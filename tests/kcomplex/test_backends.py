"""Every backend of ``analyze`` reads the same inputs the same way: a sharded checkpoint's
index in-process as when streamed, options that mean the same everywhere, and a clear
error for inputs that cannot go to a cluster."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

import kcomplex
from kcomplex import distributed as kd
from kcomplex.io import INDEX_SUFFIX, WeightsFormatError, read_index


def _shard(seed):
    # Sizes that are not multiples of the BDM block (12), repeated values, several dtypes.
    rng = np.random.default_rng(seed)
    return {
        f"l{seed}.weight": rng.normal(size=(23, 17)).astype(np.float32),
        f"l{seed}.bias": rng.normal(size=5).astype(np.float32),
        f"l{seed}.scale": np.round(rng.normal(size=301), 1).astype(np.float16),
        f"l{seed}.proj": rng.normal(size=(3, 2, 7)),
    }


@pytest.fixture
def ckpt(tmp_path):
    """A three-shard checkpoint whose weight_map lists the last shard first, so that the
    order of the weight_map and the order of the shards' names differ."""
    shards = {f"model-{i + 1:05d}-of-00003.safetensors": _shard(i) for i in range(3)}
    for name, weights in shards.items():
        save_file(weights, tmp_path / name)
    weight_map = {t: name for name in reversed(shards) for t in shards[name]}
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    whole = {}
    for name in sorted(shards):
        whole.update(kcomplex.load_weights(tmp_path / name))
    return index, whole


def assert_same(report, reference):
    pd.testing.assert_frame_equal(report.table, reference.table, check_exact=True)
    assert report.meta == reference.meta


# --- a sharded checkpoint in-process ------------------------------------------------------


def test_index_in_process_equals_streamed_and_the_dict(ckpt):
    index, whole = ckpt
    report = kcomplex.analyze(index, "all")
    assert_same(report, kd.analyze(index, "all", chunk=100))
    assert_same(report, kcomplex.analyze(whole, "all"))
    assert list(report.table["tensor"])[:-1] == list(whole)
    assert report.meta["n_tensors"] == 12


@pytest.mark.parametrize("options", [{"per_tensor": False}, {"nonfinite": "drop"}])
def test_index_options_mean_the_same(ckpt, options):
    index, whole = ckpt
    report = kcomplex.analyze(index, ["bdm", "zstd", "entropy"], **options)
    assert_same(report, kd.analyze(index, ["bdm", "zstd", "entropy"], **options))
    assert_same(report, kcomplex.analyze(whole, ["bdm", "zstd", "entropy"], **options))


def test_dropped_nonfinite_in_a_shard(tmp_path):
    w = np.random.default_rng(1).normal(size=200).astype(np.float32)
    w[[3, 50]] = [np.nan, np.inf]
    save_file({"a": w}, tmp_path / "a.safetensors")
    save_file({"b": np.ones(40, np.float32)}, tmp_path / "b.safetensors")
    index = tmp_path / "m.index.json"
    index.write_text(json.dumps({"weight_map": {"b": "b.safetensors", "a": "a.safetensors"}}))
    report = kcomplex.analyze(index, ["bdm", "gzip"], nonfinite="drop")
    assert_same(report, kd.analyze(index, ["bdm", "gzip"], nonfinite="drop"))
    assert report.meta["dropped_nonfinite"] == 2
    with pytest.raises(ValueError, match="nonfinite='drop'"):
        kcomplex.analyze(index, ["gzip"])


def test_loaders_read_the_shards_in_the_order_of_their_names(ckpt):
    index, whole = ckpt
    assert [p.name for p in read_index(index)] == [
        f"model-{i + 1:05d}-of-00003.safetensors" for i in range(3)
    ]
    loaded = kcomplex.load_weights(index)
    assert list(loaded) == list(whole)
    assert all(np.array_equal(loaded[k], whole[k]) for k in whole)
    assert [k for k, _ in kcomplex.iter_weights(index)] == list(whole)
    assert kcomplex.weight_shapes(str(index)) == {k: v.shape for k, v in whole.items()}


def test_any_index_json_and_floating_only(tmp_path):
    # Not a .safetensors.index.json: any JSON index with a weight_map, any shard format.
    np.savez(tmp_path / "a.npz", w=np.ones(3, np.float32), steps=np.arange(2))
    np.save(tmp_path / "b.npy", np.zeros(4))
    index = tmp_path / "weights.INDEX.JSON"
    index.write_text(json.dumps({"weight_map": {"weights": "b.npy", "w": "a.npz"}}))
    assert INDEX_SUFFIX == ".json"
    assert {k: v.shape for k, v in kcomplex.load_weights(index).items()} == {
        "w": (3,), "weights": (4,)}
    assert list(kcomplex.load_weights(index, floating_only=False)) == ["w", "steps", "weights"]


def test_module_prefix_is_removed_per_shard(tmp_path):
    save_file({"module.a": np.ones(5, np.float32)}, tmp_path / "1.safetensors")
    save_file({"b": np.ones(6, np.float32)}, tmp_path / "2.safetensors")
    index = tmp_path / "m.index.json"
    index.write_text(json.dumps({"weight_map": {"module.a": "1.safetensors",
                                                "b": "2.safetensors"}}))
    assert list(kcomplex.load_weights(index)) == ["a", "b"]
    assert list(kd.analyze(index, ["gzip"]).table["tensor"]) == ["a", "b", "(all)"]


def test_a_tensor_in_two_shards_is_an_error(tmp_path):
    save_file({"a": np.ones(5, np.float32)}, tmp_path / "1.safetensors")
    save_file({"a": np.ones(5, np.float32)}, tmp_path / "2.safetensors")
    index = tmp_path / "m.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "1.safetensors", "x": "2.safetensors"}}))
    with pytest.raises(WeightsFormatError, match="has no tensor 'x'"):
        kcomplex.load_weights(index)
    index.write_text(json.dumps({"weight_map": {"a": "1.safetensors", "b": "2.safetensors"}}))
    # Both shards hold 'a': the index names it once, but both are read whole.
    save_file({"a": np.ones(5, np.float32), "b": np.ones(2, np.float32)},
              tmp_path / "2.safetensors")
    match = re.escape("tensor 'a' is in both ")
    with pytest.raises(ValueError, match=match):
        kcomplex.load_weights(index)
    with pytest.raises(ValueError, match=match):
        kd.analyze(index, ["gzip"])


@pytest.mark.parametrize("shard", ["../secret.safetensors", "/tmp/secret.safetensors",
                                   "other.index.json"])
def test_shards_are_confined_in_process(tmp_path, shard):
    (tmp_path / "ckpt").mkdir()
    save_file({"w": np.ones(30, np.float32)}, tmp_path / "secret.safetensors")
    index = tmp_path / "ckpt" / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": shard}}))
    match = rf"{re.escape(str(index))}: shard '{re.escape(shard)}' is (not inside|an index)"
    for read in (kcomplex.load_weights, kcomplex.weight_shapes, kcomplex.analyze, read_index):
        with pytest.raises(WeightsFormatError, match=match):
            read(index)


def test_missing_shard_and_malformed_index_in_process(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "gone.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="shard 'gone.safetensors' of .* is missing"):
        kcomplex.analyze(index)
    index.write_text("{}")
    with pytest.raises(WeightsFormatError, match="not a safetensors index"):
        kcomplex.load_weights(index)


def test_distributed_has_no_index_parser_of_its_own():
    assert not any(hasattr(kd, name) for name in ("_read_index", "_shard_path", "_shards"))


# --- the same options, and what cannot go to a cluster ------------------------------------


def test_trainable_only_changes_nothing_for_files(ckpt):
    index, _ = ckpt
    assert_same(kcomplex.analyze(index, ["gzip"], trainable_only=False),
                kcomplex.analyze(index, ["gzip"]))


@pytest.mark.parametrize("x", [{"w": np.ones(20, np.float32)}, np.ones(20, np.float32),
                               [np.ones(3)]], ids=["dict", "array", "list of arrays"])
def test_in_memory_inputs_cannot_go_to_a_cluster(x):
    # The check comes before the client is used: any object stands in for it.
    with pytest.raises(TypeError) as info:
        kcomplex.analyze(x, ["gzip"], client=object())
    message = str(info.value)
    assert "safetensors.numpy.save_file" in message
    assert "pass the path" in message
    assert "without client" in message


def test_a_module_cannot_go_to_a_cluster():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"got a Linear\).*save_file.*without client"):
        kcomplex.analyze(torch.nn.Linear(4, 4), ["gzip"], client=object())


def test_torch_shards(tmp_path):
    torch = pytest.importorskip("torch")
    a = {"a.weight": torch.randn(6, 5), "a.bias": torch.randn(6)}
    b = {"b.weight": torch.randn(4, 6).double(), "b.steps": torch.tensor(3)}
    torch.save(a, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save(b, tmp_path / "pytorch_model-00002-of-00002.bin")
    index = tmp_path / "pytorch_model.bin.index.json"
    weight_map = {**{k: "pytorch_model-00002-of-00002.bin" for k in b},
                  **{k: "pytorch_model-00001-of-00002.bin" for k in a}}
    index.write_text(json.dumps({"weight_map": weight_map}))
    assert list(kcomplex.load_weights(index)) == ["a.weight", "a.bias", "b.weight"]
    assert_same(kcomplex.analyze(index, ["bdm", "gzip", "entropy"]),
                kd.analyze(index, ["bdm", "gzip", "entropy"]))
