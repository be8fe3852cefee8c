"""kcomplex.files and kcomplex.validation: the helpers every writer and option check uses."""

from __future__ import annotations

import os
import stat
import threading

import numpy as np
import pytest

from kcomplex.files import regular_file, umask, write_atomic
from kcomplex.validation import check_choice, check_int, check_real, is_int


@pytest.fixture
def mask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_umask_reads_without_changing(mask_027):
    assert umask() == 0o027
    assert umask() == 0o027


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_write_atomic_gives_umask_permissions(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_atomic(tmp_path / "a.bin", b"x")
        write_atomic(tmp_path / "b.txt", "y")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.bin") == 0o666 & ~mask
    assert _mode(tmp_path / "b.txt") == 0o666 & ~mask
    assert (tmp_path / "b.txt").read_text() == "y"


def test_write_atomic_replaces_and_leaves_no_temporary(tmp_path, mask_027):
    path = tmp_path / "r.json"
    write_atomic(path, "old")
    write_atomic(path, "new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_write_atomic_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_atomic(path, "old")

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_project_outputs_honour_umask(tmp_path, mask_027):
    """Reports, figures and CTM caches all go through write_atomic (once 0600)."""
    import kcomplex

    report = kcomplex.analyze({"w": np.linspace(-1, 1, 200)}, ["gzip"], progress=False)
    report.to_csv(tmp_path / "r.csv")
    report.to_json(tmp_path / "r.json")
    for name in ("r.csv", "r.json"):
        assert _mode(tmp_path / name) == 0o640, name


def test_momos_outputs_honour_umask(tmp_path, mask_027):
    pytest.importorskip("torch")
    import momos

    res = momos.train(method="momos", epochs=1, estimators=("bdm",), progress=False,
                      out=tmp_path / "run")
    assert res.status == "finished"
    files = [p for p in (tmp_path / "run").iterdir() if p.is_file() and p.name != ".lock"]
    assert {p.name for p in files} >= {"results.json", "last.pt", "final.safetensors",
                                       "final.momos", "init.safetensors"}
    for p in files:
        assert _mode(p) == 0o640, p.name


def test_regular_file(tmp_path):
    f = tmp_path / "w.npy"
    f.write_bytes(b"x")
    assert regular_file(f) == f
    link = tmp_path / "link.npy"
    link.symlink_to(f)
    assert regular_file(link) == link
    with pytest.raises(ValueError, match="a directory"):
        regular_file(tmp_path)
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"pipe\.npy: not a regular file \(a FIFO\)"):
        regular_file(fifo)
    zero = tmp_path / "zero.npz"
    zero.symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="character device"):
        regular_file(zero)
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        regular_file(tmp_path / "missing.npy", "weights file")


def test_umask_thread_safe_fallback(monkeypatch, mask_027):
    """Without /proc the mask is read by set-and-restore under a lock: never left changed."""
    import builtins

    real_open = builtins.open

    def no_proc(path, *a, **k):
        if str(path).startswith("/proc"):
            raise OSError("no /proc")
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", no_proc)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(umask())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [0o027] * 8
    monkeypatch.undo()
    assert umask() == 0o027


@pytest.mark.parametrize("value", [True, False, 2.0, 1.7, "3", None, np.float64(2)])
def test_check_int_refuses_non_integers(value):
    with pytest.raises(TypeError, match="must be an integer"):
        check_int(value, "n")


def test_check_int_accepts_integers_and_bounds():
    assert check_int(np.int64(5), "n", minimum=1) == 5
    assert type(check_int(np.int64(5), "n")) is int
    with pytest.raises(ValueError, match=r"n must be an integer >= 2, got 1"):
        check_int(1, "n", minimum=2)
    with pytest.raises(ValueError, match=r"in \[1, 3\]"):
        check_int(4, "n", minimum=1, maximum=3)
    assert is_int(3) and not is_int(True)


def test_check_real_and_choice():
    assert check_real(1, "c") == 1.0
    for bad in (True, "1", None):
        with pytest.raises(TypeError):
            check_real(bad, "c")
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError):
            check_real(bad, "c", minimum=0)
    assert check_choice("a", "x", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"x must be one of 'a', 'b'; got \['a'\]"):
        check_choice(["a"], "x", ("a", "b"))
