"""Tests for kcomplex.io: every input kind, names and order, laziness, errors."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import safetensors
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors.numpy import save_file as save_numpy_safetensors
from safetensors.torch import save_file as save_torch_safetensors
from torch import nn

from kcomplex import io as kio
from kcomplex.io import (
    SUFFIXES,
    WeightsFormatError,
    iter_weights,
    load_weights,
    weight_shapes,
)

# Set when an object pickled by the tests is constructed or called on load;
# loading must never do either.
UNPICKLED: list[str] = []


def record_call(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Payload:
    """A pickle whose loading runs code: __reduce__ makes load call record_call."""

    def __reduce__(self):
        return (record_call, ("reduce ran",))


class Custom:
    """A plain custom class: loading it would construct it and run __setstate__."""

    def __init__(self) -> None:
        self.weights = torch.ones(3)

    def __setstate__(self, state):
        UNPICKLED.append("setstate ran")
        self.__dict__.update(state)


@pytest.fixture(autouse=True)
def _no_unpickling_recorded():
    UNPICKLED.clear()
    yield
    assert UNPICKLED == [], "a pickled object was constructed or called on load"


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _state(seed: int = 0) -> dict[str, np.ndarray]:
    rng = _rng(seed)
    return {
        "conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(size=4).astype(np.float32),
        "fc.weight": rng.normal(size=(2, 4)),  # float64
        "fc.bias": rng.normal(size=2).astype(np.float16),
    }


def _assert_same(got: dict[str, np.ndarray], want: dict, order: bool = True) -> None:
    if order:
        assert list(got) == list(want)
    else:
        assert sorted(got) == sorted(want)
    for name, w in want.items():
        w = w.numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
        assert isinstance(got[name], np.ndarray)
        assert got[name].dtype == w.dtype, name
        assert got[name].flags.c_contiguous, name
        np.testing.assert_array_equal(got[name], w, strict=True)


class Net(nn.Module):
    """Registration order differs from name order, plus a tied weight and buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.zeta = nn.Linear(3, 4)
        self.alpha = nn.Linear(4, 4)
        self.norm = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 4, bias=False)
        self.head.weight = self.alpha.weight  # tied: one parameter, listed once


def test_docstring_examples_run():
    result = doctest.testmod(kio, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_public_names():
    assert sorted(kio.__all__) == sorted(
        ["INDEX_SUFFIX", "SUFFIXES", "WeightsFormatError", "frozen_parameters", "iter_chunks",
         "iter_weights",
         "load_weights", "read_index", "weight_shapes"]
    )
    assert set(SUFFIXES) == {".npy", ".npz", ".pt", ".pth", ".bin", ".safetensors"}
    assert issubclass(WeightsFormatError, ValueError)


# --- in-memory inputs ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_numpy_array_is_named_weights_and_a_read_only_view(dtype):
    a = _rng().normal(size=(3, 5)).astype(dtype)
    out = load_weights(a)
    assert list(out) == ["weights"]
    w = out["weights"]
    assert w.dtype == dtype and np.shares_memory(w, a)
    with pytest.raises(ValueError, match="read-only"):
        w[0, 0] = 1.0
    a[0, 0] = 7.0  # the caller's own array stays writable
    assert w[0, 0] == 7.0


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a.T,  # non-contiguous
        lambda a: np.asfortranarray(a),
        lambda a: a.astype(a.dtype.newbyteorder()),  # non-native byte order
    ],
    ids=["strided", "fortran", "byteswapped"],
)
def test_arrays_needing_conversion_are_contiguous_native_copies(make):
    a = make(_rng().normal(size=(4, 6)).astype(np.float32))
    w = load_weights(a)["weights"]
    assert w.flags.c_contiguous and w.dtype.isnative and w.dtype == np.float32
    assert not np.shares_memory(w, a) and w.flags.writeable
    np.testing.assert_array_equal(w, a)


def test_torch_tensor_is_a_read_only_view():
    t = torch.randn(4, 3, requires_grad=True)
    w = load_weights(t)["weights"]
    np.testing.assert_array_equal(w, t.detach().numpy())
    with pytest.raises(ValueError, match="read-only"):
        w[0, 0] = 99.0
    before = t.detach().clone()
    w2 = load_weights(t.detach().t())["weights"]  # strided: copied, so writable
    w2[...] = 0.0
    assert torch.equal(t.detach(), before)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float8_e4m3fn])
def test_narrow_torch_floats_become_float32_exactly(dtype):
    t = torch.randn(16).to(dtype)
    w = load_weights({"x": t})["x"]
    assert w.dtype == np.float32 and w.flags.writeable
    np.testing.assert_array_equal(w, t.float().numpy())
    w[:] = 0
    assert t.float().abs().sum() > 0


def test_mapping_keeps_order_and_skips_what_is_not_a_tensor():
    rng = _rng()
    state = OrderedDict(
        [
            ("z.weight", torch.from_numpy(rng.normal(size=(2, 2)).astype(np.float32))),
            ("epoch", 3),
            ("a.weight", rng.normal(size=3)),
            ("name", "resnet"),
            ("nothing", None),
            ("optimizer", {"lr": 0.1, "momentum": torch.zeros(2)}),
            ("m.bias", torch.zeros(4, dtype=torch.float64)),
        ]
    )
    want = {k: state[k] for k in ("z.weight", "a.weight", "m.bias")}
    _assert_same(load_weights(state), want)


def test_non_floating_tensors_are_skipped_unless_asked_for():
    state = {
        "w": np.ones(3, np.float32),
        "steps": torch.tensor(5),
        "mask": np.array([True, False]),
        "c": np.ones(2, np.complex64),
        "names": np.array(["a", "b"]),
    }
    assert list(load_weights(state)) == ["w"]
    kept = load_weights(state, floating_only=False)
    assert list(kept) == ["w", "steps", "mask", "c"]  # strings are never weights
    assert kept["steps"].dtype == np.int64 and kept["mask"].dtype == bool


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_checkpoint_wrappers_are_unwrapped(key):
    inner = _state()
    ckpt = {"epoch": 9, key: inner, "optimizer": {"state": {}, "param_groups": []}}
    _assert_same(load_weights(ckpt), inner)


def test_nested_wrappers_and_wrapper_priority():
    inner, other = _state(0), _state(1)
    _assert_same(load_weights({"model": {"state_dict": inner}}), inner)
    _assert_same(load_weights({"model": other, "state_dict": inner}), inner)


def test_a_mapping_with_tensors_is_not_unwrapped():
    got = load_weights({"w": np.ones(2), "model": {"x": np.zeros(3)}})
    assert list(got) == ["w"]


def test_module_prefix_is_stripped_only_when_every_name_has_it():
    inner = _state()
    _assert_same(load_weights({f"module.{k}": v for k, v in inner.items()}), inner)
    partial = {"module.a": np.ones(2), "b": np.ones(2)}
    assert list(load_weights(partial)) == ["module.a", "b"]
    ckpt = {"state_dict": {f"module.{k}": v for k, v in inner.items()}, "step": 1}
    assert weight_shapes(ckpt) == {k: v.shape for k, v in inner.items()}


def test_module_gives_trainable_parameters_in_parameters_order():
    torch.manual_seed(0)
    net = Net()
    net.zeta.requires_grad_(False)
    got = load_weights(net)
    assert list(got) == ["alpha.weight", "alpha.bias", "norm.weight", "norm.bias"]
    vector = torch.cat([p.detach().flatten() for p in net.parameters() if p.requires_grad])
    np.testing.assert_array_equal(np.concatenate([w.ravel() for w in got.values()]), vector)
    everything = load_weights(net, trainable_only=False)
    assert list(everything) == [n for n, _ in net.named_parameters()]
    assert not any("running" in n or "num_batches" in n for n in everything)


def test_module_arrays_cannot_modify_the_parameters():
    net = nn.Linear(3, 2)
    before = net.weight.detach().clone()
    w = load_weights(net)["weight"]
    with pytest.raises(ValueError, match="read-only"):
        w += 1.0
    assert torch.equal(net.weight.detach(), before)


def test_data_parallel_module_names_lose_the_prefix():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    wrapped = nn.DataParallel(net)
    assert list(load_weights(wrapped)) == [n for n, _ in net.named_parameters()]


def test_no_weights_errors_say_why():
    with pytest.raises(ValueError, match="no weights in the mapping: it holds no tensors"):
        load_weights({})
    with pytest.raises(ValueError, match=r"no weights.*'epoch' \(int\)"):
        load_weights({"epoch": 1, "lr": 0.1})
    with pytest.raises(ValueError, match=r"no weights in the array.*not floating"):
        load_weights(np.arange(4))
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match=r"Linear module.*requires_grad=False.*trainable_only"):
        load_weights(frozen)
    with pytest.raises(ValueError, match="no weights in the ReLU module"):
        load_weights(nn.ReLU())


@pytest.mark.parametrize("bad", [[1.0, 2.0], None, 3.5, b"weights.npy", np.float32(1.0)])
def test_unsupported_inputs_list_what_is_accepted(bad):
    with pytest.raises(TypeError, match=r"numpy\.ndarray.*torch\.nn\.Module.*\.safetensors"):
        load_weights(bad)


def test_non_string_keys_are_rejected():
    with pytest.raises(TypeError, match="key 0"):
        load_weights({0: np.ones(2)})


def test_meta_tensors_have_no_values():
    with pytest.raises(ValueError, match="'w' is on the meta device"):
        load_weights({"w": torch.empty(3, device="meta")})


# --- files ---------------------------------------------------------------------------


def test_npy_round_trip(tmp_path):
    a = _rng().normal(size=(3, 4, 5)).astype(np.float32)
    np.save(tmp_path / "w.npy", a)
    _assert_same(load_weights(tmp_path / "w.npy"), {"weights": a})
    _assert_same(load_weights(str(tmp_path / "w.npy")), {"weights": a})
    with open(tmp_path / "f.NPY", "wb") as fh:  # np.save would append ".npy"
        np.save(fh, np.asfortranarray(a))
    _assert_same(load_weights(tmp_path / "f.NPY"), {"weights": a})


@pytest.mark.parametrize("saver", [np.savez, np.savez_compressed])
def test_npz_round_trip_in_file_order(tmp_path, saver):
    state = _state()
    saver(tmp_path / "w.npz", **state)
    _assert_same(load_weights(tmp_path / "w.npz"), state)
    saver(tmp_path / "pos.npz", state["fc.bias"], state["conv.bias"])
    assert list(load_weights(tmp_path / "pos.npz")) == ["arr_0", "arr_1"]


def test_npz_file_arrays_are_fresh_and_leave_the_file_alone(tmp_path):
    state = _state()
    np.savez(tmp_path / "w.npz", **state)
    first = load_weights(tmp_path / "w.npz")
    for w in first.values():
        w[...] = 0
    _assert_same(load_weights(tmp_path / "w.npz"), state)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_torch_state_dict_round_trip(tmp_path, suffix):
    torch.manual_seed(0)
    net = Net()
    path = tmp_path / f"model{suffix}"
    torch.save(net.state_dict(), path)
    got = load_weights(path, floating_only=False)
    _assert_same(got, net.state_dict())
    assert "norm.num_batches_tracked" not in load_weights(path)


def test_torch_checkpoint_with_wrapper_and_ddp_prefix(tmp_path):
    net = nn.Linear(3, 2)
    ckpt = {
        "epoch": 4,
        "model_state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
        "optimizer_state_dict": torch.optim.SGD(net.parameters(), lr=0.1).state_dict(),
    }
    torch.save(ckpt, tmp_path / "ckpt.pt")
    _assert_same(load_weights(tmp_path / "ckpt.pt"), net.state_dict())


def test_torch_bare_tensor_and_legacy_format(tmp_path):
    t = torch.randn(5, 2, dtype=torch.float64)
    torch.save(t, tmp_path / "t.pt")
    _assert_same(load_weights(tmp_path / "t.pt"), {"weights": t})
    torch.save({"w": t}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    _assert_same(load_weights(tmp_path / "old.pt"), {"w": t})


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_torch_zip_files_are_memory_mapped_legacy_files_read(tmp_path):
    from kcomplex.io import _torch_load

    t = torch.randn(4096)
    torch.save({"w": t}, tmp_path / "zip.pt")
    torch.save({"w": t}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    mapped = _torch_load(torch, tmp_path / "zip.pt")
    assert str(tmp_path / "zip.pt") in Path("/proc/self/maps").read_text()
    legacy = _torch_load(torch, tmp_path / "old.pt")
    assert torch.equal(mapped["w"], t) and torch.equal(legacy["w"], t)
    mapped["w"].zero_()  # a private mapping: the file keeps its values
    assert torch.equal(torch.load(tmp_path / "zip.pt", weights_only=True)["w"], t)


def test_torch_file_holding_a_list_is_rejected(tmp_path):
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    with pytest.raises(WeightsFormatError, match=r"list\.pt: holds a list"):
        load_weights(tmp_path / "list.pt")


@pytest.mark.parametrize(
    "obj", [Payload(), {"w": torch.ones(2), "extra": Custom()}], ids=["reduce", "class"]
)
def test_pickled_objects_are_refused_not_unpickled(tmp_path, obj):
    path = tmp_path / "evil.pt"
    torch.save(obj, path)
    assert UNPICKLED == []
    with pytest.raises(WeightsFormatError, match=r"evil\.pt.*weights_only=True.*never unpickled"):
        load_weights(path)
    with pytest.raises(WeightsFormatError, match="weights_only"):
        weight_shapes(path)
    # The autouse fixture checks that nothing was constructed or called.


def _header(path) -> dict:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    return header


def test_safetensors_round_trip_in_data_order(tmp_path):
    state = {**_state(), "ids": np.arange(6, dtype=np.int32)}
    path = tmp_path / "w.safetensors"
    save_numpy_safetensors(state, path, metadata={"format": "np"})
    header = _header(path)
    data_order = sorted(header, key=lambda k: header[k]["data_offsets"])
    got = load_weights(path, floating_only=False)
    assert list(got) == data_order
    _assert_same(got, state, order=False)
    assert list(load_weights(path)) == [k for k in data_order if k != "ids"]
    assert list(weight_shapes(path)) == list(load_weights(path))


def test_safetensors_bfloat16_and_float8_become_float32(tmp_path):
    src = {
        "bf": torch.randn(3, 4).to(torch.bfloat16),
        "f8": torch.randn(5).to(torch.float8_e5m2),
        "f32": torch.randn(2),
        "scalar": torch.tensor(1.5, dtype=torch.bfloat16),
    }
    path = tmp_path / "narrow.safetensors"
    save_torch_safetensors(src, path)
    got = load_weights(path)
    _assert_same(got, {k: v.float() for k, v in src.items()}, order=False)
    assert weight_shapes(path) == {k: tuple(got[k].shape) for k in got}


class _Spy:
    """Wraps safetensors.safe_open and logs every tensor read."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.real = safetensors.safe_open

    def __call__(self, *args, **kwargs):
        spy = self

        class Handle:
            def __init__(self) -> None:
                self.inner = spy.real(*args, **kwargs)

            def __enter__(self):
                self.inner.__enter__()
                return self

            def __exit__(self, *exc):
                return self.inner.__exit__(*exc)

            def get_tensor(self, name):
                spy.log.append(name)
                return self.inner.get_tensor(name)

            def get_slice(self, name):
                spy.log.append(f"slice:{name}")
                return self.inner.get_slice(name)

        return Handle()


def test_safetensors_iteration_reads_one_tensor_per_step(tmp_path, monkeypatch):
    state = {f"layer{i}.weight": _rng(i).normal(size=(8, 8)).astype(np.float32) for i in range(3)}
    path = tmp_path / "w.safetensors"
    save_numpy_safetensors(state, path)
    log: list[str] = []
    real = kio._read_raw

    def spy(fh, path, name, *args):
        log.append(name)
        return real(fh, path, name, *args)

    monkeypatch.setattr(kio, "_read_raw", spy)
    it = iter_weights(path)
    assert log == []
    name, w = next(it)
    assert log == [name] and name == "layer0.weight"
    np.testing.assert_array_equal(w, state[name])
    assert next(it)[0] == "layer1.weight" and log == ["layer0.weight", "layer1.weight"]
    it.close()


def test_weight_shapes_reads_headers_only(tmp_path, monkeypatch):
    state = _state()
    save_numpy_safetensors(state, tmp_path / "w.safetensors")
    np.save(tmp_path / "w.npy", state["conv.weight"])
    np.savez_compressed(tmp_path / "w.npz", **state)
    log: list[str] = []
    monkeypatch.setattr(safetensors, "safe_open", _Spy(log))

    def no_data(*args, **kwargs):
        raise AssertionError("weight_shapes read array data")

    monkeypatch.setattr(np, "load", no_data)
    monkeypatch.setattr(np.lib.format, "read_array", no_data)
    shapes = {k: v.shape for k, v in state.items()}
    header = _header(tmp_path / "w.safetensors")
    in_data_order = {k: shapes[k] for k in sorted(header, key=lambda k: header[k]["data_offsets"])}
    assert list(weight_shapes(tmp_path / "w.safetensors").items()) == list(in_data_order.items())
    assert weight_shapes(tmp_path / "w.npy") == {"weights": (4, 3, 3, 3)}
    assert weight_shapes(tmp_path / "w.npz") == shapes
    assert log == []


def test_iter_weights_checks_input_before_the_first_step(tmp_path):
    with pytest.raises(FileNotFoundError):
        iter_weights(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="no weights"):
        iter_weights({})


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere" / "model.pt"
    with pytest.raises(FileNotFoundError, match="model.pt"):
        load_weights(path)


def test_unsupported_suffix_lists_the_supported_ones(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match=r"model\.onnx.*'\.onnx'.*\.npy.*\.safetensors"):
        load_weights(path)
    (tmp_path / "noext").write_bytes(b"")
    with pytest.raises(ValueError, match="no suffix"):
        load_weights(tmp_path / "noext")


def test_a_directory_is_not_a_weights_file(tmp_path):
    (tmp_path / "ckpt.pt").mkdir()
    with pytest.raises(IsADirectoryError, match=r"ckpt\.pt"):
        load_weights(tmp_path / "ckpt.pt")


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt", ".pth", ".bin", ".safetensors"])
@pytest.mark.parametrize("content", ["random", "empty"])
def test_corrupt_files_raise_a_format_error_naming_the_file(tmp_path, suffix, content):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(_rng().bytes(4096) if content == "random" else b"")
    with pytest.raises(WeightsFormatError, match=r"broken\."):
        load_weights(path)


@pytest.mark.parametrize(
    "write",
    [
        lambda p: np.save(p, np.ones(1000)),
        lambda p: np.savez(p, a=np.ones(1000)),
        lambda p: torch.save({"a": torch.ones(1000)}, p),
        lambda p: save_numpy_safetensors({"a": np.ones(1000)}, p),
    ],
    ids=[".npy", ".npz", ".pt", ".safetensors"],
)
def test_truncated_files_raise_a_format_error(tmp_path, write, request):
    path = tmp_path / f"cut{request.node.callspec.id}"
    write(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsFormatError, match=r"cut\."):
        load_weights(path)


def test_damage_found_mid_iteration_is_a_format_error(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, a=np.zeros(64), b=np.zeros(100_000))
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("b.npy")
    # Flip the last data byte of member b: its header, read in the first few
    # KiB, still parses; its CRC, checked at the end, no longer matches.
    name_len, extra_len = np.frombuffer(raw, "<u2", 2, info.header_offset + 26)
    raw[info.header_offset + 30 + int(name_len) + int(extra_len) + info.file_size - 1] ^= 0xFF
    path.write_bytes(bytes(raw))
    it = iter_weights(path)
    assert next(it)[0] == "a"
    with pytest.raises(WeightsFormatError, match=r"w\.npz"):
        next(it)


def test_object_arrays_are_never_unpickled(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="no weights.*not numeric"):
        load_weights(tmp_path / "obj.npy")


def test_missing_torch_is_reported(tmp_path, monkeypatch):
    torch.save({"w": torch.ones(2)}, tmp_path / "w.pt")
    f8 = {"f8": torch.ones(2).to(torch.float8_e4m3fn)}
    save_torch_safetensors(f8, tmp_path / "f8.safetensors")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ModuleNotFoundError, match=r"w\.pt needs torch"):
        load_weights(tmp_path / "w.pt")
    with pytest.raises(ModuleNotFoundError, match="F8_E4M3.*needs torch"):
        load_weights(tmp_path / "f8.safetensors")


def test_torch_is_not_imported_for_numpy_inputs(tmp_path):
    np.save(tmp_path / "w.npy", np.ones(3, np.float32))
    np.savez(tmp_path / "w.npz", a=np.ones(3))
    save_torch_safetensors(
        {"bf": torch.randn(4).to(torch.bfloat16), "f": torch.randn(2)}, tmp_path / "w.safetensors"
    )
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from kcomplex.io import load_weights, weight_shapes
        d = {str(tmp_path)!r}
        load_weights(np.ones(3))
        load_weights({{"a": np.ones(2), "b": 3}})
        for name in ("w.npy", "w.npz", "w.safetensors"):
            load_weights(d + "/" + name)
            weight_shapes(d + "/" + name)
        assert load_weights(d + "/w.safetensors")["bf"].dtype == np.float32
        print("torch" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert out.stdout.strip() == "False", out.stderr


# --- properties ----------------------------------------------------------------------

_dtypes = st.sampled_from(["<f2", "<f4", "<f8", "<i4", "<i8", "|u1", "|b1"])
_arrays = _dtypes.flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
)
_states = st.dictionaries(
    st.from_regex(r"[a-z]{1,6}(\.[a-z]{1,6}){0,2}", fullmatch=True), _arrays, min_size=1,
    max_size=5,
)


@given(state=_states)
def test_every_format_round_trips_exactly(tmp_path_factory, state):
    d = tmp_path_factory.mktemp("rt")
    np.savez(d / "w.npz", **state)
    save_numpy_safetensors(state, d / "w.safetensors")
    torch.save({k: torch.from_numpy(v.copy()) for k, v in state.items()}, d / "w.pt")
    for source, ordered in [(state, True), (d / "w.npz", True), (d / "w.pt", True),
                            (d / "w.safetensors", False)]:
        got = load_weights(source, floating_only=False)
        _assert_same(got, state, order=ordered)
        assert weight_shapes(source, floating_only=False) == {k: w.shape for k, w in got.items()}
        floats = {k for k, v in state.items() if v.dtype.kind == "f"}
        if floats:
            assert set(load_weights(source)) == floats
