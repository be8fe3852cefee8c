"""momos.train on several processes: ranks that agree, one writer, the CLI's --nproc.

The tests start real process groups. This file is also the worker: ``torchrun`` runs it as a
script on every rank (``python -m torch.distributed.run ... test_distributed.py OUT DEVICE``),
where it trains with checks that gather every rank's view at every epoch and saves what it
saw as ``OUT/rank<r>.json`` for the test to compare.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

FAST = ("bdm", "zstd")
# Generous: this machine is shared and small; the runs take a fraction of it.
TIMEOUT_S = 300


def _launch(cmd: list[str], cwd: Path, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own session; on a timeout kill that session, workers included."""
    # One thread per process, for torch (torchrun's default) and for numba, whose OpenMP
    # layer would otherwise raise torch's thread count at the first projection and so
    # change the arithmetic between the first run in a process and the next.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)  # the tests' own process is not part of a group
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: torchrun passes it on to its workers, which run in sessions of
        # their own, out of reach of a signal to this one.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = "", ""
        pytest.fail(f"{cmd[:4]} timed out after {timeout} s\n{out}\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _torchrun(tmp_path: Path, device: str) -> list[dict]:
    """This file on 2 ranks under torchrun; every rank's report."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", "2", __file__, str(tmp_path), device]
    done = _launch(cmd, tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def _strip_times(results: dict) -> dict:
    out = json.loads(json.dumps(results))
    for e in out["epochs"]:
        e.pop("seconds")
    return out


def _decodes_to_final(out: Path) -> None:
    from momos import decode

    final = load_file(out / "final.safetensors")
    decoded = decode((out / "final.momos").read_bytes())
    assert set(decoded) == set(final)
    for name in final:
        assert torch.equal(decoded[name], final[name]), name


def _check_two_ranks(tmp_path: Path, device: str) -> None:
    reports = _torchrun(tmp_path, device)
    lead, other = reports
    # Every rank returned rank 0's results, and saw the same records and weights.
    assert lead["straight"] == other["straight"] and lead["resumed"] == other["resumed"]
    assert lead["views"] == other["views"]
    # The checks ran at every epoch of every run: 0..2 straight, 0..1 before the crash,
    # 2 after the resume; every epoch after 0 follows a projection.
    assert [v["epoch"] for v in lead["views"]] == [0, 1, 2, 0, 1, 2]
    assert all(v["weights"] is not None for v in lead["views"] if v["epoch"] > 0)
    # Rank 1 perturbed its weights before every projection, so its own projection
    # disagreed with rank 0's: the agreement above is the broadcast's doing.
    assert lead["agreed_before_broadcast"] and not any(lead["agreed_before_broadcast"])
    # The codec and the checkpoints are written by rank 0, once per epoch or run.
    assert other["writes"] == {}
    assert lead["writes"]["straight/final.momos"] == lead["writes"]["resumed/final.momos"] == 1
    assert lead["writes"]["straight/final.safetensors"] == 1
    assert lead["writes"]["straight/results.json"] == 4  # epochs 0, 1, 2 and the end
    for run in ("straight", "resumed"):
        _decodes_to_final(tmp_path / run)
    # Data-parallel training still learns: chance is 0.1.
    res = lead["straight"]
    assert res["epochs"][-1]["val_acc"] > 0.4, [e["val_acc"] for e in res["epochs"]]
    assert res["config"]["device"] == device
    if device == "cpu":  # bit-identical resume is a CPU guarantee, as in one process
        assert _strip_times(lead["resumed"]) == _strip_times(res)
        for f in ("final.safetensors", "final.momos", "best.safetensors"):
            assert ((tmp_path / "resumed" / f).read_bytes()
                    == (tmp_path / "straight" / f).read_bytes()), f


def test_two_cpu_ranks_agree_write_once_and_resume(tmp_path):
    _check_two_ranks(tmp_path, "cpu")


@pytest.mark.cuda
def test_two_cuda_ranks_with_nccl(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA devices")
    _check_two_ranks(tmp_path, "cuda")


def test_cli_nproc_end_to_end(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "momos", "train", "--nproc", "2", "--epochs", "1",
           "--device", "cpu", "--estimators", *FAST, "--out", str(out), "--no-progress"]
    done = _launch(cmd, tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.count("test acc") == 1, done.stdout  # rank 0 reports, once
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "finished" and [e["epoch"] for e in res["epochs"]] == [0, 1]
    _decodes_to_final(out)


def test_cli_nproc_errors_are_one_line(tmp_path, capsys):
    from momos.cli import main

    assert main(["train", "--nproc", "0", "--out", str(tmp_path / "a")]) == 1
    more = str(max(2, torch.cuda.device_count() + 1))  # more processes than GPUs
    assert main(["train", "--nproc", more, "--device", "cuda", "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("momos: error: --nproc") for line in err), err
    assert "one GPU per process" in err[1]
    assert not any(tmp_path.iterdir())  # refused before anything started


# ------------------------------------------------------------------------ the worker


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _worker(base: Path, device: str) -> None:
    """One rank: a 2-epoch MoMos run, then the same run crashed after epoch 1 and resumed."""
    import torch.distributed as dist

    from momos import MoMos

    mt = importlib.import_module("momos.train")  # the module, not the function momos.train
    rank = int(os.environ["RANK"])
    writes: dict[str, int] = {}
    write_atomic = mt.write_atomic

    def counted(path, data):
        key = f"{Path(path).parent.name}/{Path(path).name}"
        writes[key] = writes.get(key, 0) + 1
        return write_atomic(path, data)

    mt.write_atomic = counted

    seen: dict = {}
    agreed: list[bool] = []
    project = MoMos.project
    noise = torch.Generator().manual_seed(1)

    def spy(self, model):
        if rank == 1:  # drift the ranks apart; the broadcast after the projection must undo it
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1e-3 * torch.randn(p.shape, generator=noise).to(p.device))
        stats = project(self, model)
        seen.update(momos=self, model=model)
        views = [None, None]
        dist.all_gather_object(views, _digest(*model.parameters(), self.motifs, self.mosaic))
        agreed.append(views[0] == views[1])
        return stats

    MoMos.project = spy
    views: list[dict] = []

    def check(record):
        mm, model = seen.get("momos"), seen.get("model")
        weights = None if model is None else _digest(*model.parameters())
        bank = None if mm is None else _digest(mm.motifs, mm.mosaic)
        view = {"epoch": record["epoch"], "record": record,
                "weights": weights, "bank": bank}
        gathered = [None, None]
        dist.all_gather_object(gathered, view)
        assert gathered[0] == gathered[1], gathered
        views.append(view)

    class Crash(Exception):
        pass

    def crash_after_one(record):
        check(record)
        if record["epoch"] == 1:
            raise Crash

    kw = dict(method="momos", epochs=2, estimators=FAST, device=device, progress=False)
    straight = mt.train(out=base / "straight", callback=check, **kw)
    seen.clear()
    try:
        mt.train(out=base / "resumed", callback=crash_after_one, **kw)
    except Crash:
        pass
    resumed = mt.train(out=base / "resumed", resume=True, callback=check, **kw)
    # A RunResult on every rank; its results.json content travels in the report.
    report = {"straight": straight.to_dict(), "resumed": resumed.to_dict(), "views": views,
              "agreed_before_broadcast": agreed, "writes": writes}
    (base / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2])
