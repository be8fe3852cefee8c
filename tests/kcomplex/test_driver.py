"""The estimator protocol and the one driver: states merge exactly, every executor and
every input kind give the same report, and the thread pool gives the sequential numbers."""

import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file
from shards import write_sharded

import kcomplex
from kcomplex import distributed as kd
from kcomplex.driver import (
    ArraySource,
    array_source,
    check_paths,
    file_tensors,
    measure,
    reads_files,
)
from kcomplex.estimators import ESTIMATORS, resolve_estimators

ROOT = Path(__file__).resolve().parents[2]


def assert_same(report, reference):
    pd.testing.assert_frame_equal(report.table, reference.table, check_exact=True)
    assert report.meta == reference.meta


def _weights(seed):
    # Sizes off the BDM block (12), a tensor shorter than a block, an empty one, repeats,
    # several dtypes.
    rng = np.random.default_rng(seed)
    return {
        f"l{seed}.weight": rng.normal(size=(37, 29)).astype(np.float32),
        f"l{seed}.bias": rng.normal(size=7).astype(np.float32),
        f"l{seed}.empty": np.zeros((0, 3), np.float32),
        f"l{seed}.scale": np.round(rng.normal(size=1001), 1).astype(np.float16),
        f"l{seed}.proj": rng.normal(size=(5, 3, 11)),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("driver")
    shards = [_weights(s) for s in range(3)]
    paths, index = write_sharded(root, shards)
    npy = root / "w.npy"
    np.save(npy, np.round(np.random.default_rng(9).normal(size=(40, 33)), 1))
    whole = {n: a for w in shards for n, a in w.items()}
    return {"file": paths[0], "list": paths[1:], "index": index, "npy": npy,
            "whole": whole, "shards": shards}


# --- the protocol ---------------------------------------------------------------------


def _cuts(draw_cuts, n):
    return [0, *sorted(set(draw_cuts)), n]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 299), max_size=8), st.integers(0, 3))
def test_merged_pieces_equal_the_whole(cuts, seed):
    # Any cut, pieces merged in order (left to right, or pairwise as a tree): the bits of
    # the whole vector, to the last bit.
    w = np.random.default_rng(seed).normal(size=300).astype(np.float32)
    bounds = _cuts(cuts, w.size)
    for est in ESTIMATORS.values():
        if not est.mergeable:
            continue
        pieces = [est.fold([w[a:b]], a) for a, b in zip(bounds, bounds[1:])]
        left = pieces[0]
        for p in pieces[1:]:
            left = est.merge(left, p)
        while len(pieces) > 1:
            pieces = [est.merge(*pieces[i:i + 2]) if i + 1 < len(pieces) else pieces[i]
                      for i in range(0, len(pieces), 2)]
        assert est.bits([left]) == est.bits(pieces) == est.tensor(w)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 499), max_size=6))
def test_chunks_anywhere_give_the_same_bits(cuts):
    rng = np.random.default_rng(len(cuts))
    w = np.round(rng.normal(size=500), 1).astype(np.float32)
    bounds = _cuts(cuts, w.size)
    chunks = [w[a:b] for a, b in zip(bounds, bounds[1:])]
    for est in ESTIMATORS.values():
        assert est.bits([est.fold(chunks)]) == est.tensor(w)
        assert est.total(chunks) == est.total([w])


def test_streams_do_not_merge():
    for est in ESTIMATORS.values():
        if est.mergeable:
            continue
        state = est.fold([np.ones(20, np.float32)])
        with pytest.raises(TypeError, match="cannot merge"):
            est.merge(state, state)


def test_codec_state_is_the_stream_length():
    w = np.random.default_rng(0).normal(size=3000).astype(np.float32)
    for name, codec in kcomplex.CODECS.items():
        est = ESTIMATORS[name]
        assert est.total([w[:7], w[7:]]) == kcomplex.compressed_bits(w, codec=name)
        assert est.tensor(w) == 8 * len(codec.compress(w.tobytes(), codec.default_level))


def test_estimators_travel_by_name():
    for est in ESTIMATORS.values():
        assert pickle.loads(pickle.dumps(est)) is est
    assert pickle.loads(pickle.dumps(resolve_estimators("all"))) == resolve_estimators("all")


def test_no_estimator_name_outside_the_registry():
    names = "|".join(ESTIMATORS)
    for module in ("analysis", "distributed", "cli", "driver"):
        text = (ROOT / "kcomplex" / f"{module}.py").read_text()
        assert not re.search(rf"\b({names})\b", text, re.IGNORECASE), module


# --- one report from every executor -------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "list", "index", "npy"])
@pytest.mark.parametrize("options", [{}, {"per_tensor": False}, {"nonfinite": "drop"}],
                         ids=["default", "total only", "drop"])
def test_every_input_kind_on_every_executor(files, kind, options):
    x = files[kind]
    reference = kcomplex.analyze(x, "all", workers=1, **options)
    assert_same(kcomplex.analyze(x, "all", workers=4, **options), reference)
    assert_same(kd.analyze(x, "all", chunk=50, workers=1, **options), reference)
    assert_same(kd.analyze(x, "all", chunk=11, workers=3, **options), reference)
    paths = {"file": [x], "list": x, "index": [files["file"], *files["list"]],
             "npy": [x]}[kind]
    loaded = {}
    for p in paths:
        loaded.update(kcomplex.load_weights(p))
    assert_same(kcomplex.analyze(loaded, "all", **options), reference)


def test_in_memory_inputs_every_estimator_threads_equal_sequential(files):
    whole = files["whole"]
    for options in ({}, {"per_tensor": False}):
        reference = kcomplex.analyze(whole, "all", workers=1, **options)
        for workers in (2, 5):
            assert_same(kcomplex.analyze(whole, "all", workers=workers, **options), reference)


def test_nonfinite_dropped_in_memory_and_from_files(tmp_path):
    w = _weights(4)
    w["l4.weight"][[0, 5], [3, 7]] = [np.nan, -np.inf]
    w["l4.bias"][:] = np.nan
    save_file(w, tmp_path / "nan.safetensors")
    loaded = kcomplex.load_weights(tmp_path / "nan.safetensors")  # in the file's order
    reference = kcomplex.analyze(loaded, "all", nonfinite="drop", workers=1)
    assert reference.meta["dropped_nonfinite"] == 9
    for report in (kcomplex.analyze(tmp_path / "nan.safetensors", "all", nonfinite="drop"),
                   kd.analyze(tmp_path / "nan.safetensors", "all", nonfinite="drop", chunk=13)):
        assert_same(report, reference)


def test_compare_threads_equal_sequential(files):
    a = files["shards"][0]
    b = {k: (v * 0.5).astype(v.dtype) for k, v in a.items()}
    b["extra"] = np.ones(4, np.float32)
    reference = kcomplex.compare(a, b, "all", workers=1)
    for workers in (2, 4):
        cmp = kcomplex.compare(a, b, "all", workers=workers)
        pd.testing.assert_frame_equal(cmp.table, reference.table, check_exact=True)
        assert cmp.meta == reference.meta


def test_workers_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="workers"):
        kcomplex.analyze(np.ones(30, np.float32), workers=0)
    with pytest.raises(TypeError, match="workers"):
        kcomplex.analyze(np.ones(30, np.float32), workers=1.5)


def test_an_error_in_a_task_is_the_sequential_one(files, tmp_path):
    # Two bad tensors: the thread pool raises for the first, as one after the other does.
    w = {"a": np.ones(50, np.float32), "b": np.full(30, np.nan, np.float32),
         "c": np.full(30, np.inf, np.float32)}
    save_file(w, tmp_path / "bad.safetensors")
    messages = set()
    for workers in (1, 3):
        with pytest.raises(ValueError) as info:
            kcomplex.analyze(tmp_path / "bad.safetensors", workers=workers)
        messages.add(str(info.value))
    assert len(messages) == 1 and "tensor 'b'" in messages.pop()


# --- sources --------------------------------------------------------------------------


def test_the_driver_chooses_by_input(files):
    assert reads_files(files["file"]) and reads_files(str(files["index"]))
    assert reads_files([files["npy"]]) and reads_files(files["list"])
    assert not reads_files("model.pt") and not reads_files({"w": np.ones(3)})
    assert not reads_files([]) and not reads_files(np.ones(3))
    assert check_paths(("a", Path("b"))) == ["a", Path("b")]
    with pytest.raises(TypeError, match="pass the path"):
        check_paths([np.ones(3)])
    source = file_tensors(files["index"])
    loaded = kcomplex.load_weights(files["index"])
    assert source.names == list(loaded)
    sizes = [a.size for a in loaded.values()]
    assert source.offsets() == np.cumsum([0, *sizes[:-1]]).tolist()
    assert file_tensors(files["index"], "drop").offsets() is None  # known after reading


def test_measure_in_total_selects_the_vector():
    w = {"a": np.linspace(-1, 1, 50, dtype=np.float32), "b": np.ones(40, np.float32)}
    chosen = resolve_estimators("all")
    src = array_source(w, "raise")
    part = ArraySource(src.names, src.shapes, src.arrays, src.dropped, [True, False])
    only_a = measure(part, chosen, workers=2)
    alone = measure(array_source({"a": w["a"]}, "raise"), chosen, workers=1)
    assert only_a.total == alone.total
    assert only_a.bits[1] == measure(array_source({"b": w["b"]}, "raise"), chosen).bits[0]


def test_docstring_examples_run():
    import doctest

    from kcomplex import driver, estimators

    for module in (driver, estimators):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted and not result.failed, module.__name__
