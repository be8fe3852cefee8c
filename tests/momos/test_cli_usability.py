"""What a new user meets first: progress lines in logs, thread counts, help, decode, README."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import momos.experiment
from momos.cli import main
from momos.experiment import REPRODUCE_RUNS, cpu_threads, reproduce, resolve_threads

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("encode", "decode", "size", "train", "reproduce", "sweep")


# ------------------------------------------------------------- progress without a terminal


def test_train_prints_a_line_per_epoch_without_a_terminal(tmp_path, capsys):
    # capsys: stderr is not a terminal, as in a log file or under nohup.
    assert main(["train", "--epochs", "1", "--estimators", "bdm",
                 "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in err] == ["momos s=2 c=0.05 epoch 0/1",
                                                   "momos s=2 c=0.05 epoch 1/1"]
    assert re.fullmatch(r".*: train_loss \d\.\d{4}, val_acc \d\.\d{3}, \d+\.\d s", err[1])


def test_no_progress_prints_lines_too(tmp_path, capsys):
    assert main(["train", "--method", "baseline", "--epochs", "0", "--estimators", "bdm",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert capsys.readouterr().err.startswith("baseline epoch 0/0: ")


def test_reproduce_and_sweep_print_a_line_per_finished_run(tmp_path, capsys):
    assert main(["reproduce", "--epochs", "0", "--estimators", "bdm", "--no-plots",
                 "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    for i, name in enumerate(REPRODUCE_RUNS, 1):
        assert re.search(rf"^run {i}/4 {name}: done in \d+\.\d s, test_acc \d\.\d{{3}}, "
                         r"0 epochs$", err, re.MULTILINE), err
        assert f"run {i}/4 {name} epoch 0/0: " in err
    assert main(["reproduce", "--epochs", "0", "--estimators", "bdm", "--no-plots",
                 "--out", str(tmp_path / "r"), "--resume", "--no-progress"]) == 0
    assert "run 1/4 baseline: finished earlier, kept" in capsys.readouterr().err
    assert main(["sweep", "--s", "2", "--capacity", "0.1", "--epochs", "0", "--no-plots",
                 "--estimators", "bdm", "--out", str(tmp_path / "w")]) == 0
    err = capsys.readouterr().err
    assert "run 1/2 baseline: done in" in err and "run 2/2 s2-c0.1: done in" in err


def test_python_api_progress_false_is_silent(capsys):
    reproduce(out=None, epochs=0, plots=False, progress=False, estimators=("bdm",))
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress"):
        reproduce(out=None, epochs=0, progress="yes")


# -------------------------------------------------------------------------- thread count


def test_auto_threads_is_one_for_the_mlp_on_the_cpu():
    assert resolve_threads("auto", "mlp", "cpu") == 1
    assert resolve_threads("auto", "mlp", "cuda") is None
    assert resolve_threads("auto", "resnet20", "cpu") is None
    assert resolve_threads(None, "mlp", "cpu") is None
    assert resolve_threads(3, "vit", "cpu") == 3
    for bad, error in ((0, ValueError), (True, TypeError), (2.0, TypeError),
                       ("two", TypeError)):
        with pytest.raises(error, match="threads"):
            resolve_threads(bad, "mlp", "cpu")


def test_cpu_threads_restores_even_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), cpu_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == before


@pytest.fixture
def seen_threads(monkeypatch):
    """The torch thread count each training ran with."""
    seen = []
    real = momos.experiment.train

    def spy(*args, **kw):
        seen.append(torch.get_num_threads())
        return real(*args, **kw)

    monkeypatch.setattr(momos.experiment, "train", spy)
    monkeypatch.setattr(sys.modules["momos.train"], "train", spy)
    return seen


def test_threads_reach_training_and_are_restored(tmp_path, seen_threads):
    before = torch.get_num_threads()
    reproduce(out=None, epochs=0, plots=False, progress=False, estimators=("bdm",), threads=1)
    assert seen_threads == [1] * 4 and torch.get_num_threads() == before
    seen_threads.clear()
    # The Python API keeps torch's setting unless asked: results stay as they were.
    reproduce(out=None, epochs=0, plots=False, progress=False, estimators=("bdm",))
    assert seen_threads == [before] * 4
    seen_threads.clear()
    fast = ["--epochs", "0", "--estimators", "bdm", "--device", "cpu", "--no-progress"]
    assert main(["train", *fast, "--out", str(tmp_path / "a")]) == 0
    assert main(["train", *fast, "--threads", "2", "--out", str(tmp_path / "b")]) == 0
    assert main(["reproduce", *fast, "--no-plots", "--out", str(tmp_path / "c")]) == 0
    assert seen_threads == [1, 2] + [1] * 4 and torch.get_num_threads() == before


def test_threads_option_rejects_bad_values(capsys):
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--threads", bad])
        assert exit_info.value.code == 2
        assert "expected 'auto' or a positive integer" in capsys.readouterr().err


# ------------------------------------------------------------------------ help defaults


def _option_blocks(help_text: str) -> dict[str, str]:
    """Option name -> its help text, from the options section of ``--help``."""
    section = help_text.split("options:", 1)[1]
    blocks: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        match = re.match(r"  (-[-\w]+)", line)
        if match:
            name = match.group(1)
            blocks[name] = line
        elif name is not None:
            blocks[name] += " " + line.strip()
    return blocks


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_help_states_its_default(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    blocks = _option_blocks(capsys.readouterr().out)
    del blocks["-h"]
    for name, text in blocks.items():
        assert "default" in text, f"momos {command} {name}: {text}"
        assert "(default: None)" not in text, f"momos {command} {name}: {text}"


def test_train_help_shows_the_defaults_asked_for(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    blocks = _option_blocks(capsys.readouterr().out)
    assert "(default: 2)" in blocks["--s"]
    assert "(default: 30)" in blocks["--epochs"]
    assert "(default: 0)" in blocks["--seed"]
    assert "(default: auto)" in blocks["--threads"]


# ------------------------------------------------------------------------------- decode


@pytest.fixture
def stream(tmp_path):
    from safetensors.numpy import save_file

    ckpt = tmp_path / "w.safetensors"
    save_file({"fc.weight": np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)},
              str(ckpt))
    out = tmp_path / "w.momos"
    assert main(["encode", str(ckpt), str(out), "--s", "2", "--k", "4"]) == 0
    return out


@pytest.mark.parametrize("name", ["out.bin", "out.pt", "out", "out.safetensors.tmp"])
def test_decode_refuses_a_name_that_is_not_safetensors(stream, tmp_path, capsys, name):
    capsys.readouterr()
    assert main(["decode", str(stream), str(tmp_path / name)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("momos: error:") and ".safetensors" in err[0]
    assert not (tmp_path / name).exists()


def test_decoded_file_is_read_back_by_kcomplex(stream, tmp_path):
    import kcomplex

    out = tmp_path / "back.SafeTensors"  # the suffix is matched as kcomplex reads it
    assert main(["decode", str(stream), str(out)]) == 0
    assert set(kcomplex.load_weights(out)) == {"fc.weight"}


def test_decode_help_says_safetensors(capsys):
    with pytest.raises(SystemExit):
        main(["decode", "--help"])
    assert "must end in .safetensors" in " ".join(capsys.readouterr().out.split())


def test_size_refuses_a_directory(tmp_path, capsys):
    assert main(["size", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("momos: error:")


# ------------------------------------------------------------------------------- README


def _readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)


@pytest.mark.parametrize("index", range(len(_readme_python_blocks())))
def test_every_readme_python_block_runs_alone(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block = _readme_python_blocks()[index]
    exec(compile(block, f"README.md block {index}", "exec"), {"__name__": "readme"})


def test_reproduce_time_is_stated_once_with_its_conditions():
    readme = (ROOT / "README.md").read_text()
    results = (ROOT / "docs" / "results.md").read_text()
    tutorial = (ROOT / "docs" / "tutorial-reproduce.md").read_text()
    # README and results.md point to the one measurement instead of restating a figure.
    assert not re.search(r"\d\s*min\b", readme)
    assert "tutorial-reproduce.md#how-long-it-takes" in readme
    assert "tutorial-reproduce.md#how-long-it-takes" in results
    section = tutorial.split("## How long it takes", 1)[1].split("\n## ", 1)[0]
    for condition in ("load average", "thread", "/usr/bin/time", "2026-"):
        assert condition in section, condition


def test_readme_says_how_to_install_the_cpu_torch():
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in readme
