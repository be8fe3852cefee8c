"""momos.train under faults: crashes between writes, concurrent runs, damaged run directories."""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from momos.results import RunResult
from momos.train import RESULTS_FORMAT, load_results, train

mt = importlib.import_module("momos.train")  # the module, not the function momos.train

KW = {"method": "momos", "epochs": 2, "estimators": ("bdm",), "progress": False}
FILES = ("init.safetensors", "best.safetensors", "best.momos", "final.safetensors",
         "final.momos")
DAMAGED = r"cannot resume .*: {} is damaged \(.*\); delete the directory"


class _Crash(Exception):
    pass


def _strip_times(results: RunResult) -> dict:
    out = json.loads(json.dumps(results.to_dict()))
    for e in out["epochs"]:
        e.pop("seconds")
    return out


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    return train(out=out, **KW), out


def _assert_same_run(out: Path, resumed: RunResult, straight) -> None:
    expected, expected_out = straight
    assert _strip_times(resumed) == _strip_times(expected)
    assert _strip_times(load_results(out)) == _strip_times(expected)
    for name in FILES:
        assert (out / name).read_bytes() == (expected_out / name).read_bytes(), name
    assert ({p.name for p in out.iterdir()}
            == {p.name for p in expected_out.iterdir()})


# ------------------------------------------------------------------------ crash windows


def test_resume_is_exact_after_a_crash_between_any_two_writes(tmp_path, monkeypatch, straight):
    """Kill the run in place of its n-th write, for every n, then resume it."""
    real = mt.write_atomic
    n = 0
    while True:
        calls = []

        def crashing(path, data, n=n, calls=calls):
            if len(calls) == n:
                raise _Crash(f"before write {n}: {Path(path).name}")
            calls.append(Path(path).name)
            real(path, data)

        out = tmp_path / f"crash{n}"
        monkeypatch.setattr(mt, "write_atomic", crashing)
        try:
            train(out=out, **KW)
            finished = True
        except _Crash:
            finished = False
        monkeypatch.setattr(mt, "write_atomic", real)
        resumed = train(out=out, resume=True, **KW)
        _assert_same_run(out, resumed, straight)
        if finished:  # n passed the last write: the resume of a finished run was checked
            break
        n += 1
    # Every window was hit: init, then best/last/results per epoch, then the final files.
    assert calls[0] == "init.safetensors" and calls[-1] == "results.json"
    assert calls.count("last.pt") == KW["epochs"] + 1 and n == len(calls)


def test_crash_right_after_the_first_state_resumes(tmp_path, straight):
    out = tmp_path / "run"
    with pytest.raises(_Crash):
        train(out=out, callback=_crash_at(1), **KW)
    # As if killed after epoch 0's last.pt, before its results.json.
    (out / "results.json").unlink()
    _assert_same_run(out, train(out=out, resume=True, **KW), straight)


def test_a_fresh_run_refuses_a_directory_with_only_a_state(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(_Crash):
        train(out=out, callback=_crash_at(0), **KW)
    (out / "results.json").unlink()
    with pytest.raises(ValueError, match="already holds a run"):
        train(out=out, **KW)


def _crash_at(epoch: int):
    def callback(record):
        if record["epoch"] == epoch:
            raise _Crash

    return callback


# ---------------------------------------------------------------------------- the lock

_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from momos.train import train

    out, ready, go = (Path(a) for a in sys.argv[1:4])

    def wait(record):
        if record["epoch"] == 0:
            ready.write_text("x")
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    train(out=out, method="momos", epochs=1, estimators=("bdm",), progress=False,
          seed=0, callback=wait)
""")


def _start_holder(tmp_path: Path, out: Path) -> tuple[subprocess.Popen, Path]:
    """A run in another process, paused after epoch 0 until ``go`` exists."""
    ready, go = tmp_path / "ready", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out), str(ready), str(go)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the holder did not start: {proc.communicate()}")
        time.sleep(0.05)
    return proc, go


def test_a_second_process_on_the_same_directory_is_refused(tmp_path, capsys):
    from momos.cli import main

    out = tmp_path / "run"
    proc, go = _start_holder(tmp_path, out)
    try:
        with pytest.raises(ValueError, match=rf"in use by another run \(pid {proc.pid}\)"):
            train(out=out, method="momos", epochs=1, estimators=("bdm",), progress=False,
                  seed=1)
        with pytest.raises(ValueError, match="in use by another run"):
            train(out=out, resume=True, method="momos", epochs=1, estimators=("bdm",),
                  progress=False, seed=0)
        assert main(["train", "--seed", "1", "--epochs", "1", "--estimators", "bdm",
                     "--out", str(out), "--no-progress"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "in use by another run" in err[0], err
    finally:
        go.write_text("x")
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    res = load_results(out)  # the holder's run alone, finished
    assert res.status == "finished" and res.config["seed"] == 0


def test_the_lock_of_a_killed_run_does_not_block(tmp_path):
    out = tmp_path / "run"
    proc, _ = _start_holder(tmp_path, out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert (out / ".lock").read_text().strip() == str(proc.pid)  # left behind
    res = train(out=out, resume=True, method="momos", epochs=1, estimators=("bdm",),
                progress=False, seed=0)
    assert res.status == "finished" and [e.epoch for e in res.epochs] == [0, 1]
    assert (out / ".lock").read_text().strip() == str(os.getpid())


def test_a_second_run_in_the_same_process_is_refused(tmp_path):
    out = tmp_path / "run"
    errors = []

    def nested(record):
        if record["epoch"] == 0:
            with pytest.raises(ValueError, match=rf"in use by another run \(pid {os.getpid()}\)"
                               ) as info:
                train(out=out, resume=True, **KW)
            errors.append(info.value)

    train(out=out, callback=nested, **KW)
    assert len(errors) == 1
    # The lock goes with the run: the directory is free again.
    assert train(out=out, resume=True, **KW).status == "finished"


def test_a_lock_that_is_not_a_file_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    os.mkfifo(out / ".lock")
    with pytest.raises(ValueError, match="not a regular file"):
        train(out=out, **KW)


# ------------------------------------------------------------- damaged run directories


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """A run killed after epoch 1 of 2: last.pt and results.json at epoch 1."""
    out = tmp_path_factory.mktemp("crashed") / "run"
    with pytest.raises(_Crash):
        train(out=out, callback=_crash_at(1), **KW)
    return out


def _edit_results(change):
    def damage(out: Path) -> None:
        res = json.loads((out / "results.json").read_text())
        change(res)
        (out / "results.json").write_text(json.dumps(res))

    return damage


def _edit_state(change):
    def damage(out: Path) -> None:
        snap = torch.load(out / "last.pt", weights_only=True)
        change(snap)
        buf = io.BytesIO()
        torch.save(snap, buf)
        (out / "last.pt").write_bytes(buf.getvalue())

    return damage


def _edit_state_results(change):
    def edit(snap):
        res = json.loads(snap["results"])
        change(res)
        snap["results"] = json.dumps(res)

    return _edit_state(edit)


def _write(name: str, data: bytes):
    return lambda out: (out / name).write_bytes(data)


def _first_key(d: dict) -> str:
    return next(iter(d))


RESULTS_DAMAGE = {
    "not JSON": _write("results.json", b'{"format": "momos-train/1", '),
    "not UTF-8": _write("results.json", b"\xff\xfe\xfa"),
    "an array": _write("results.json", b"[]"),
    "no format": _edit_results(lambda r: r.pop("format")),
    "no config": _edit_results(lambda r: r.pop("config")),
    "config a list": _edit_results(lambda r: r.update(config=[])),
    "no epochs": _edit_results(lambda r: r.pop("epochs")),
    "epochs an object": _edit_results(lambda r: r.update(epochs={})),
    "epochs of numbers": _edit_results(lambda r: r.update(epochs=[1, 2])),
    "no epochs yet": _edit_results(lambda r: r.update(epochs=[])),
    "too many epochs": _edit_results(lambda r: r["epochs"].append(r["epochs"][-1])),
    "another config": _edit_results(lambda r: r["config"].update(seed=5)),
    "bad status": _edit_results(lambda r: r.update(status=3)),
    "a directory": lambda out: ((out / "results.json").unlink(),
                                (out / "results.json").mkdir()),
    "a FIFO": lambda out: ((out / "results.json").unlink(), os.mkfifo(out / "results.json")),
}


def _evil(out: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {out / 'pwned'}",))

    buf = io.BytesIO()
    torch.save({"format": "momos-train-state/2", "x": Evil()}, buf)
    (out / "last.pt").write_bytes(buf.getvalue())


def _truncate(out: Path) -> None:
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 2])


def _zero(out: Path) -> None:
    size = (out / "last.pt").stat().st_size
    (out / "last.pt").write_bytes(bytes(size))


def _reshape_model(snap):
    name = _first_key(snap["model"])
    snap["model"][name] = torch.zeros(3, 3)


def _retype_model(snap):
    name = _first_key(snap["model"])
    snap["model"][name] = snap["model"][name].double()


def _reshape_opt(snap):
    entry = snap["opt"]["state"][0]
    entry[_first_key({k: v for k, v in entry.items() if v.dim() > 0})] = torch.zeros(7)


STATE_DAMAGE = {
    "truncated": _truncate,
    "zero-filled": _zero,
    "empty": _write("last.pt", b""),
    "motif generator zeroed": _edit_state(
        lambda s: s.update(momos_gen=torch.zeros_like(s["momos_gen"]))),
    "JSON": _write("last.pt", b'{"epoch": 1}'),
    "malicious": _evil,
    "not a dict": lambda out: torch.save([1, 2], out / "last.pt"),
    "no format (older momos)": _edit_state(lambda s: s.pop("format")),
    "no epoch": _edit_state(lambda s: s.pop("epoch")),
    "epoch a float": _edit_state(lambda s: s.update(epoch=1.0)),
    "epoch a bool": _edit_state(lambda s: s.update(epoch=True)),
    "epoch beyond the run": _edit_state(lambda s: s.update(epoch=9)),
    "epoch without its record": _edit_state(lambda s: s.update(epoch=0)),
    "best epoch beyond": _edit_state(lambda s: s.update(best_epoch=5)),
    "no results": _edit_state(lambda s: s.pop("results")),
    "results not JSON": _edit_state(lambda s: s.update(results="{")),
    "a record without val_acc": _edit_state_results(lambda r: r["epochs"][1].pop("val_acc")),
    "a record with a string": _edit_state_results(
        lambda r: r["epochs"][0].update(test_acc="high")),
    "model tensor reshaped": _edit_state(_reshape_model),
    "model tensor retyped": _edit_state(_retype_model),
    "model tensor missing": _edit_state(lambda s: s["model"].pop(_first_key(s["model"]))),
    "model a tensor": _edit_state(lambda s: s.update(model=torch.zeros(2))),
    "optimizer state reshaped": _edit_state(_reshape_opt),
    "optimizer groups missing": _edit_state(lambda s: s["opt"].pop("param_groups")),
    "schedule retyped": _edit_state(lambda s: s["sched"].update(last_epoch="1")),
    "data generator cut": _edit_state(lambda s: s.update(data_gen=s["data_gen"][:10])),
    "torch generator retyped": _edit_state(lambda s: s.update(torch_rng=torch.zeros(3))),
    "bank reshaped": _edit_state(lambda s: s.update(bank=s["bank"][:, :1])),
    "bank missing": _edit_state(lambda s: s.update(bank=torch.empty(0))),
    "mosaic out of range": _edit_state(lambda s: s.update(mosaic=s["mosaic"] + 10**6)),
    "missing": lambda out: (out / "last.pt").unlink(),
    "a directory": lambda out: ((out / "last.pt").unlink(), (out / "last.pt").mkdir()),
}


@pytest.mark.parametrize("name, damage", [("results.json", d) for d in RESULTS_DAMAGE.values()]
                         + [("last.pt", d) for d in STATE_DAMAGE.values()],
                         ids=[f"results.json {k}" for k in RESULTS_DAMAGE]
                         + [f"last.pt {k}" for k in STATE_DAMAGE])
def test_a_damaged_run_directory_is_one_clear_error(tmp_path, crashed, name, damage):
    out = tmp_path / "run"
    shutil.copytree(crashed, out)
    damage(out)
    with pytest.raises(ValueError, match=DAMAGED.format(name.replace(".", r"\."))) as info:
        train(out=out, resume=True, **KW)
    assert str(out) in str(info.value) and "\n" not in str(info.value)
    assert not (out / "pwned").exists()
    assert not (out / "final.safetensors").exists()  # nothing trained


def test_a_different_config_is_not_called_damage(crashed):
    with pytest.raises(ValueError, match="its config differs in lr"):
        train(out=crashed, resume=True, lr=0.5, **KW)


# ---------------------------------------------------------------------------- load_results


@pytest.mark.parametrize("text, reason", [
    ('{"format": ', "not JSON"),
    ("[1, 2]", "format is not"),
    (json.dumps({"format": RESULTS_FORMAT, "config": [], "model": {}, "epochs": [],
                 "summary": {}, "status": "running"}), "'config' is missing or not an object"),
])
def test_load_results_names_the_file(tmp_path, text, reason):
    path = tmp_path / "results.json"
    path.write_text(text)
    for where in (tmp_path, path):
        with pytest.raises(ValueError, match="not a momos results file") as info:
            load_results(where)
        assert str(path) in str(info.value) and reason in str(info.value)


def test_load_results_reads_only_regular_files(tmp_path):
    os.mkfifo(tmp_path / "results.json")
    with pytest.raises(ValueError, match="FIFO|regular"):
        load_results(tmp_path)
