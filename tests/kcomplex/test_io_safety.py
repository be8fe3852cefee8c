"""Reading files safely: only regular files, shards inside their index's folder, sizes a
header declares checked against the bytes present before anything is allocated, and
clear errors naming the file for malformed indexes and formats that are not read."""

import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from safetensors.numpy import save_file

import kcomplex
from kcomplex import distributed as kd
from kcomplex.io import WeightsFormatError, iter_chunks, iter_weights, weight_shapes

TIB4 = 1 << 40  # float32 elements in 4 TiB


def _npy_bytes(shape, *, fortran=False, descr="<f4", data=b"\0" * 16) -> bytes:
    """A version 1.0 ``.npy`` file whose header declares `shape`, followed by `data`."""
    header = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


def _index(folder, weight_map, name="model.safetensors.index.json"):
    index = folder / name
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


# --- only regular files: FIFOs and devices, run apart so that a regression fails ----------
# (a blocked open cannot be interrupted from inside: safetensors retries it in Rust)

_SPECIAL = textwrap.dedent("""
    import contextlib, io, json, os, sys
    from pathlib import Path
    import kcomplex
    from kcomplex import distributed as kd
    from kcomplex.cli import main

    root = Path(sys.argv[1])
    fifo = {s: root / f"fifo{s}" for s in (".npy", ".npz", ".pt", ".safetensors")}
    for p in fifo.values():
        os.mkfifo(p)
    (root / "zero.npz").symlink_to("/dev/zero")
    (root / "null.safetensors").symlink_to("/dev/null")
    (root / "shards").mkdir()
    os.mkfifo(root / "shards" / "model-00001-of-00001.safetensors")
    (root / "shards" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model-00001-of-00001.safetensors"}}))
    os.mkfifo(root / "fifo.safetensors.index.json")

    def outcome(call):
        try:
            call()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return "read"

    def cli(path):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(["analyze", str(path), "--no-progress"])
        return f"rc={rc} {err.getvalue().strip()}"

    cases = {}
    for s, p in fifo.items():
        cases[f"load {s}"] = (p, outcome(lambda: kcomplex.load_weights(p)))
        cases[f"shapes {s}"] = (p, outcome(lambda: kcomplex.weight_shapes(p)))
        cases[f"stream {s}"] = (p, outcome(lambda: kd.analyze(p, ["gzip"])))
    cases["cli"] = (fifo[".npy"], cli(fifo[".npy"]))
    for name in ("zero.npz", "null.safetensors"):
        cases[f"link {name}"] = (root / name, outcome(lambda: kcomplex.load_weights(root / name)))
        cases[f"stream {name}"] = (root / name, outcome(lambda: kd.analyze(root / name)))
    cases["/dev/null"] = ("/dev/null", outcome(lambda: kcomplex.load_weights("/dev/null")))
    shard = root / "shards" / "model-00001-of-00001.safetensors"
    index = root / "shards" / "model.safetensors.index.json"
    cases["fifo shard"] = (shard, outcome(lambda: kd.analyze(index)))
    cases["cli fifo shard"] = (shard, cli(index))
    fifo_index = root / "fifo.safetensors.index.json"
    cases["fifo index"] = (fifo_index, outcome(lambda: kd.analyze(fifo_index)))
    print(json.dumps({k: [str(p), r] for k, (p, r) in cases.items()}))
""")


@pytest.fixture(scope="module")
def special(tmp_path_factory):
    root = tmp_path_factory.mktemp("special")
    try:
        done = subprocess.run([sys.executable, "-c", _SPECIAL, str(root)], check=False,
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("reading a FIFO or a device blocked instead of being refused")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("case, kind", [
    *[(f"{how} {s}", "a FIFO") for how in ("load", "shapes", "stream")
      for s in (".npy", ".npz", ".pt", ".safetensors")],
    ("cli", "a FIFO"),
    ("link zero.npz", "a character device"),
    ("stream zero.npz", "a character device"),
    ("link null.safetensors", "a character device"),
    ("stream null.safetensors", "a character device"),
    ("/dev/null", "a character device"),
    ("fifo shard", "a FIFO"),
    ("cli fifo shard", "a FIFO"),
    ("fifo index", "a FIFO"),
])
def test_only_regular_files_are_read(special, case, kind):
    path, result = special[case]
    assert f"{path}: not a regular file ({kind}); only regular files are read" in result
    assert result.startswith(("WeightsFormatError", "rc=1 kcomplex: error:"))


def test_a_link_to_a_regular_file_is_read(tmp_path):
    w = np.arange(6, dtype=np.float32)
    np.save(tmp_path / "real.npy", w)
    (tmp_path / "link.npy").symlink_to(tmp_path / "real.npy")
    assert np.array_equal(kcomplex.load_weights(tmp_path / "link.npy")["weights"], w)


# --- declared sizes against bytes present ------------------------------------------------


@pytest.mark.parametrize("fortran", [False, True])
def test_npy_header_claiming_4_tib_is_refused_before_allocating(tmp_path, fortran):
    path = tmp_path / "big.npy"
    path.write_bytes(_npy_bytes((TIB4,) if not fortran else (1 << 20, 1 << 20),
                                fortran=fortran))
    assert path.stat().st_size == 144
    match = r"big\.npy: the \.npy header declares shape .* \(4398046511104 bytes\) but only " \
            r"16 bytes follow it"
    for call in (kcomplex.load_weights, weight_shapes, lambda p: kd.analyze(p, ["gzip"]),
                 lambda p: kd.analyze(p, ["bdm"], chunk=4),
                 lambda p: list(iter_chunks(p, "weights", chunk=4))):
        with pytest.raises(WeightsFormatError, match=match):
            call(path)


def test_truncated_npy_names_the_bytes(tmp_path):
    for order in ("C", "F"):
        path = tmp_path / f"w{order}.npy"
        np.save(path, np.ones((3, 4), np.float64, order=order))
        path.write_bytes(path.read_bytes()[:-1])
        with pytest.raises(WeightsFormatError, match=r"shape \(3, 4\) of float64 \(96 bytes\) "
                                                     r"but only 95 bytes"):
            kcomplex.load_weights(path)


def test_npy_changed_after_planning_is_checked_again(tmp_path):
    path = tmp_path / "w.npy"
    np.save(path, np.ones(4, np.float32))
    steps = iter_weights(path)  # the header is read here
    path.write_bytes(_npy_bytes((TIB4,)))
    with pytest.raises(WeightsFormatError, match="4398046511104 bytes"):
        next(steps)


def test_npy_negative_dimension_is_refused(tmp_path):
    path = tmp_path / "neg.npy"
    path.write_bytes(_npy_bytes((-4,)))
    with pytest.raises(WeightsFormatError, match=r"neg\.npy: corrupt \.npy header, shape \(-4,\)"):
        kcomplex.load_weights(path)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npz_member_header_claiming_4_tib_is_refused(tmp_path, compression):
    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("w.npy", _npy_bytes((TIB4,)))
    for call in (kcomplex.load_weights, lambda p: kd.analyze(p, ["gzip"], chunk=4)):
        with pytest.raises(WeightsFormatError, match=r"big\.npz: member 'w\.npy': the \.npy "
                                                     r"header declares .*4398046511104 bytes"):
            call(path)


def test_npz_member_with_a_forged_size_is_refused(tmp_path):
    # A deflated member whose stated size covers what its header declares (3.2 GB) but
    # whose compressed bytes cannot expand to it (a zip bomb's lie).
    path = tmp_path / "bomb.npz"
    content = _npy_bytes((800_000_000,))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("w.npy", content)
    data = bytearray(path.read_bytes())
    forged = struct.pack("<I", len(content) - 16 + 3_200_000_000)
    data[22:26] = forged  # local header
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = forged
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFormatError, match=r"bomb\.npz: member 'w\.npy': .*declares "
                                                 r"shape \(800000000,\) .*but only \d+ bytes"):
        kcomplex.load_weights(path)


def test_npz_and_npy_still_read(tmp_path):
    # Compressed members near deflate's best ratio are within the bound.
    w = {"z": np.zeros(1 << 22, np.float32), "r": np.random.default_rng(0).normal(size=7)}
    np.savez_compressed(tmp_path / "w.npz", **w)
    got = kcomplex.load_weights(tmp_path / "w.npz", floating_only=False)
    assert all(np.array_equal(got[k], v) for k, v in w.items())


@pytest.mark.parametrize("header", [
    {"w": {"dtype": "F32", "shape": [TIB4], "data_offsets": [0, 4 * TIB4]}},
    {"w": {"dtype": "F32", "shape": [TIB4], "data_offsets": [0, 16]}},
])
def test_safetensors_header_claiming_huge_tensors_is_refused(tmp_path, header):
    path = tmp_path / "big.safetensors"
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 16)
    for call in (kcomplex.load_weights, lambda p: kd.analyze(p, ["gzip"], chunk=4)):
        with pytest.raises(WeightsFormatError, match=r"big\.safetensors: not a readable"):
            call(path)


# --- shard indexes ------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path):
    """A folder with an index, and a readable shard outside that folder."""
    (tmp_path / "ckpt").mkdir()
    save_file({"w": np.ones(30, np.float32)}, tmp_path / "secret.safetensors")
    return tmp_path / "ckpt"


@pytest.mark.parametrize("shard", ["../secret.safetensors", "sub/../../secret.safetensors",
                                   "ABSOLUTE"])
def test_shards_are_confined_to_the_index_folder(outside, shard):
    if shard == "ABSOLUTE":
        shard = str(outside.parent / "secret.safetensors")
    index = _index(outside, {"w": shard})
    match = rf"{re.escape(str(index))}: shard '{re.escape(shard)}' is not inside the index's"
    with pytest.raises(WeightsFormatError, match=match):
        kd.analyze(index, ["gzip"])


def test_shards_in_subfolders_and_links_are_read(outside):
    # A link in the folder is the folder owner's (the Hugging Face cache links every
    # shard to a blob elsewhere): followed. Only the names in the index are confined.
    (outside / "sub").mkdir()
    save_file({"a": np.ones(20, np.float32)}, outside / "sub" / "a.safetensors")
    (outside / "b.safetensors").symlink_to(outside.parent / "secret.safetensors")
    index = _index(outside, {"a": "sub/a.safetensors", "w": "b.safetensors"})
    assert kd.analyze(index, ["gzip"]).meta["n_tensors"] == 2


@pytest.mark.parametrize("shard, shown", [(3, "3"), (None, "null"), (["x"], '["x"]')])
def test_shard_names_must_be_strings(tmp_path, shard, shown):
    index = _index(tmp_path, {"w": shard})
    match = rf"{re.escape(str(index))}: the shard of tensor 'w' must be a file name \(a string\)"
    with pytest.raises(WeightsFormatError, match=rf"{match}, got {re.escape(shown)}"):
        kd.analyze(index)


@pytest.mark.parametrize("content, match", [
    ("[" * 200_000, "not a readable JSON file: nested too deeply"),
    ('{"weight_map": ' * 200_000, "not a readable JSON file: nested too deeply"),
    (b"\xff\xfe{}", "not a readable JSON file: 'utf-8' codec"),
    ("{", "not a readable JSON file: Expecting"),
    ("[]", "not a safetensors index"),
    ('{"weight_map": []}', "not a safetensors index"),
    ('{"weight_map": {}}', "not a safetensors index: .*a non-empty 'weight_map'"),
])
def test_malformed_index_is_named(tmp_path, content, match):
    index = tmp_path / "model.safetensors.index.json"
    index.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(WeightsFormatError, match=rf"{re.escape(str(index))}: {match}"):
        kd.analyze(index)


def test_oversized_index_is_not_read(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    with open(index, "wb") as fh:
        fh.truncate((64 << 20) + 1)  # sparse: no disk used
    with pytest.raises(WeightsFormatError, match=rf"{re.escape(str(index))}: larger than 64"):
        kd.analyze(index)


# --- formats that are not read: how to get the weights out --------------------------------


def test_onnx_says_how_to_get_the_weights(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match=r"model\.onnx: unsupported .*onnx\.numpy_helper\."
                                         r"to_array\(t\) for t in model\.graph\.initializer"):
        kcomplex.load_weights(path)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_says_how_to_get_the_weights(tmp_path):
    torch = pytest.importorskip("torch")
    module = torch.jit.script(torch.nn.Linear(3, 2))
    for name in ("model.jit", "model.pt"):  # a TorchScript archive under a state dict's suffix
        module.save(tmp_path / name)
        with pytest.raises(ValueError, match=rf"{name}: .*kcomplex\.analyze\(torch\.jit\.load"):
            kcomplex.load_weights(tmp_path / name)
    # ... and the advice works.
    loaded = kcomplex.load_weights(torch.jit.load(tmp_path / "model.jit"))
    assert list(loaded) == ["weight", "bias"]
    assert np.array_equal(loaded["weight"], module.weight.detach().numpy())


def test_streamed_overflow_is_an_error_not_dropped(tmp_path):
    """The streamed path refuses finite values beyond float32 as analyze() does."""
    from kcomplex import distributed as kd

    path = tmp_path / "big.npy"
    np.save(path, np.array([1.0] * 20 + [1e300]))
    for nonfinite in ("raise", "drop"):
        # One message for every executor: the same words as for a dict in memory.
        with pytest.raises(ValueError, match=r"overflows float32 \(first at index 20: 1e\+300"):
            kd.analyze(path, ["gzip"], nonfinite=nonfinite, progress=False)
        with pytest.raises(ValueError, match=r"overflows float32 \(first at index 20: 1e\+300"):
            kcomplex.analyze(path, ["gzip"], nonfinite=nonfinite, workers=2)
    # Read in chunks, the message says where the chunk lies in the tensor.
    with pytest.raises(ValueError, match=r"flat elements 16 to 20 of 21\): 1 value overflows "
                                         r"float32 \(first at index 4: 1e\+300"):
        kd.analyze(path, ["gzip"], chunk=8, progress=False)
