"""The repository is self-contained: no file points a reader at a document outside it.

The specification lives in ``docs/`` (``docs/method.md``, ``docs/bdm.md``,
``docs/targets.md``); a clone must be readable on its own, so no file may cite the
project's background notes by their names (upper-case ``.md`` files that are not in the
repository) or by a path into a ``shared`` folder beside or above the checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

# Names of documents that are not in the repository. The docs are lower case
# (docs/bdm.md), so a case-sensitive match on the upper-case names cannot hit them.
_OUTSIDE_NAMES = ("MOMOS", "DESIGN", "BDM", "STYLE")
OUTSIDE_DOCUMENT = re.compile(r"(?<![\w-])(?:" + "|".join(_OUTSIDE_NAMES) + r")\.md\b")
# A path into a folder named "shared" (relative, "../shared/...", or absolute).
SHARED_PATH = re.compile(r"(?<![\w-])shared/")
# Folders the fallback walk skips: git's own, environments, caches and build output.
_SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".hypothesis",
              ".ruff_cache", ".benchmarks", "build", "dist"}


def _git_files() -> list[str] | None:
    """Files git would commit: tracked ones plus untracked ones that are not ignored, or
    None where git (or the repository) is unavailable."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True, timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sorted({name for name in out.decode("utf-8", "surrogateescape").split("\0") if name})


def _walked_files() -> list[str]:
    """Every file under the root outside git's folder, environments, caches and builds."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
        found.extend(Path(folder, f).relative_to(ROOT).as_posix() for f in files)
    return sorted(found)


def repository_files() -> list[str]:
    """Paths (relative, POSIX) of the repository's files, this checker excluded: it has to
    spell out what it looks for."""
    files = _git_files()
    if files is None:
        files = _walked_files()
    return [f for f in files if f != THIS]


def outside_references(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of every line of ``text`` that refers outside the repository."""
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
            if OUTSIDE_DOCUMENT.search(line) or SHARED_PATH.search(line)]


def _text(path: Path) -> str | None:
    """The file's text, or None for a binary file or one that is gone."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    if b"\0" in data:
        return None
    return data.decode("utf-8", "replace")


def test_no_file_refers_to_a_document_outside_the_repository():
    files = repository_files()
    assert len(files) > 10, f"found only {files!r} under {ROOT}: the file listing is broken"
    offending = []
    for name in files:
        text = _text(ROOT / name)
        if text is not None:
            offending += [f"{name}:{number}: {line}" for number, line in outside_references(text)]
    assert not offending, (
        "these lines cite documents that are not in the repository; cite docs/method.md, "
        "docs/bdm.md or docs/targets.md instead:\n" + "\n".join(offending)
    )


@pytest.mark.parametrize("line", [
    "exactly as ``MOMOS.md`` states it",
    "Benchmarks are scripts (see DESIGN.md).",
    "# oracle values (shared/BDM.md)",
    "the notes in ../shared/MOMOS.md",
    "kcomplex analyze /shared/ckpt/model.safetensors",
    "see STYLE.md",
])
def test_the_checker_finds_outside_references(line):
    assert outside_references(line) == [(1, line)]


@pytest.mark.parametrize("line", [
    "the specification is docs/method.md",
    "oracle values (docs/bdm.md)",
    "see [bdm.md](bdm.md) and docs/targets.md",
    "a shared file system; shared_memory/ and unshared/ are fine",
    "README.md and CHANGES.md",
])
def test_the_checker_lets_the_repository_documents_through(line):
    assert outside_references(line) == []


def test_the_fallback_walk_covers_the_git_listing():
    walked = set(_walked_files())
    assert {"pyproject.toml", "docs/method.md", THIS} <= walked
    assert not any(part in _SKIP_DIRS for name in walked for part in name.split("/"))
    listed = _git_files()
    if listed is None:
        pytest.skip("git is not available here")
    assert {name for name in listed if (ROOT / name).is_file()} <= walked
