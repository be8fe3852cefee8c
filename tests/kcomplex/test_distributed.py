"""kcomplex.distributed on a local Dask cluster of two worker processes: every report
equals single-process kcomplex.analyze of the same weights, table and metadata."""

import shutil

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

from safetensors.numpy import save_file  # noqa: E402
from shards import write_sharded  # noqa: E402

import kcomplex  # noqa: E402
from kcomplex import distributed as kd  # noqa: E402
from kcomplex.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def _weights(seed: int) -> dict[str, np.ndarray]:
    # Sizes that are not multiples of the BDM block (12), a tensor shorter than a block,
    # repeated values (entropy, codecs) and dtypes other than float32.
    rng = np.random.default_rng(seed)
    return {
        f"l{seed}.weight": rng.normal(size=(37, 29)).astype(np.float32),
        f"l{seed}.bias": rng.normal(size=7).astype(np.float32),
        f"l{seed}.scale": np.round(rng.normal(size=1001), 1).astype(np.float16),
        f"l{seed}.proj": rng.normal(size=(5, 3, 11)),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    shards = [_weights(s) for s in range(3)]
    paths, index = write_sharded(root, shards)
    npz = root / "model.npz"
    np.savez(npz, **_weights(7))
    return {"shards": paths, "index": index, "npz": npz}


def _joined(paths) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for p in paths:
        out.update(kcomplex.load_weights(p))
    return out


def assert_same(report, reference):
    pd.testing.assert_frame_equal(report.table, reference.table, check_exact=True)
    assert report.meta == reference.meta


def test_one_file(client, files):
    path = files["shards"][0]
    assert_same(kcomplex.analyze(path, "all", client=client), kcomplex.analyze(path, "all"))


def test_several_files_are_one_vector(client, files):
    paths = files["shards"][::-1]
    report = kd.analyze(paths, "all", client=client)
    assert_same(report, kcomplex.analyze(_joined(paths), "all"))
    assert report.meta["n_tensors"] == 12


def test_sharded_index(client, files):
    report = kd.analyze(files["index"], client=client)
    assert_same(report, kcomplex.analyze(_joined(files["shards"])))


def test_npz(client, files):
    assert_same(kd.analyze(files["npz"], "all", client=client),
                kcomplex.analyze(files["npz"], "all"))


def test_chunked_tensors_and_dropped_nonfinite(client, tmp_path):
    w = _weights(1)
    w["l1.weight"][3, 4] = np.nan
    save_file(w, tmp_path / "nan.safetensors")
    path = tmp_path / "nan.safetensors"
    for per_tensor in (True, False):
        reference = kcomplex.analyze(path, "all", nonfinite="drop", per_tensor=per_tensor)
        report = kd.analyze(path, "all", client=client, nonfinite="drop",
                            per_tensor=per_tensor, chunk=100)
        assert_same(report, reference)
    with pytest.raises(ValueError, match=r"nan.safetensors: tensor 'l1.weight'.*\(3, 4\)"):
        kd.analyze(tmp_path / "nan.safetensors", ["bdm"], client=client)


def test_configured_estimators_as_in_process(client, files):
    # Not mergeable (quantile bins over the whole vector), a long-range zstd stream.
    specs = ["bdm", "bdm:n_symbols=4,method=quantile", "zstd:level=19,long=1", "gzip:level=1"]
    report = kd.analyze(files["index"], specs, client=client)
    assert list(report.meta["estimators"]) == specs
    assert_same(report, kcomplex.analyze(files["index"], specs, workers=1))


@pytest.mark.parametrize("kind", ["file", "list", "index", "npz", "npy"])
@pytest.mark.parametrize("options", [{}, {"per_tensor": False}, {"nonfinite": "drop"}],
                         ids=["default", "total only", "drop"])
def test_every_estimator_input_and_option_as_in_process(client, files, tmp_path, kind,
                                                        options):
    x = {"file": files["shards"][0], "list": files["shards"][1:], "index": files["index"],
         "npz": files["npz"]}.get(kind)
    if kind == "npy":
        x = tmp_path / "w.npy"
        np.save(x, np.round(np.random.default_rng(5).normal(size=(40, 33)), 1))
    report = kcomplex.analyze(x, "all", client=client, **options)
    assert_same(report, kcomplex.analyze(x, "all", workers=1, **options))
    assert_same(report, kd.analyze(x, "all", chunk=97, workers=2, **options))
    paths = x if kind == "list" else files["shards"] if kind == "index" else [x]
    assert_same(report, kcomplex.analyze(_joined(paths), "all", **options))


def test_missing_shard_is_named(files, tmp_path):
    for p in [files["index"], *files["shards"][:2]]:
        shutil.copy(p, tmp_path)
    with pytest.raises(FileNotFoundError, match="model-00003-of-00003.safetensors"):
        kd.analyze(tmp_path / files["index"].name)


@pytest.mark.parametrize("kw, match", [
    (dict(), "either a scheduler address or a number of workers"),
    (dict(scheduler="tcp://127.0.0.1:9", workers=2), "either a scheduler"),
    (dict(workers=0), "at least 1"),
])
def test_connect_needs_one_target(kw, match):
    with pytest.raises(ValueError, match=match):
        with kd.connect(**kw):
            pass


def test_bad_scheduler_address():
    with pytest.raises(ConnectionError, match="tcp://127.0.0.1:9"):
        with kd.connect("tcp://127.0.0.1:9", timeout=0.5):
            pass


def test_cli_workers_and_scheduler(client, files, tmp_path, capsys):
    path = str(files["shards"][1])
    expected = kcomplex.analyze(path).to_csv()
    assert main(["analyze", path, "--dask-workers", "2", "--csv", str(tmp_path / "w.csv"),
                 "--no-progress"]) == 0
    assert (tmp_path / "w.csv").read_text() == expected
    address = client.scheduler.address
    assert main(["analyze", str(files["index"]), "--scheduler", address, "--csv",
                 str(tmp_path / "s.csv"), "--no-progress"]) == 0
    assert (tmp_path / "s.csv").read_text() == kcomplex.analyze(_joined(files["shards"])).to_csv()


def test_cli_bad_scheduler_one_line(files, capsys):
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        rc = main(["analyze", str(files["npz"]), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "tcp://127.0.0.1:9" in err[0]
