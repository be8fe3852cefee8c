"""Shared test setup: the ``naive`` oracle importable as ``import naive``, and a
deterministic hypothesis profile so CI runs are reproducible.

Set ``HYPOTHESIS_PROFILE=dev`` for randomized runs with more examples.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings


# The oracles ``tests/naive.py`` (BDM) and ``tests/momos/reference.py`` (MoMos), the
# fuzz tests' stream corruptions ``tests/momos/stream_edits.py`` and the sharded-checkpoint
# writer ``tests/kcomplex/shards.py`` are registered as the modules ``naive``,
# ``momos_reference``, ``stream_edits`` and ``shards`` rather than by putting
# their folders on ``sys.path``: that would make ``tests/kcomplex/`` or ``tests/momos/``
# (no ``__init__.py``) namespace packages shadowing the editable install of ``kcomplex``
# and ``momos``, whose finder runs after the path finder.
def _register(name: str, path: Path) -> None:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_register("naive", Path(__file__).resolve().parent / "naive.py")
_register("momos_reference", Path(__file__).resolve().parent / "momos" / "reference.py")
_register("stream_edits", Path(__file__).resolve().parent / "momos" / "stream_edits.py")
_register("shards", Path(__file__).resolve().parent / "kcomplex" / "shards.py")

# "ci": the same examples on every run (no example database to replay from), and no
# explain phase, whose line tracing makes a failure cost minutes instead of seconds.
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    max_examples=25,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def ctm_cache(monkeypatch, tmp_path):
    """(an empty CTM cache directory, the list of table conversions made while it is used).

    The in-process table cache is cleared before and after, so every table is read from
    this directory or converted into it.
    """
    import kcomplex.ctm

    monkeypatch.setenv("KCOMPLEX_CACHE_DIR", str(tmp_path))
    calls = []
    convert = kcomplex.ctm._convert

    def counting(*args):
        calls.append(args)
        return convert(*args)

    monkeypatch.setattr(kcomplex.ctm, "_convert", counting)
    kcomplex.ctm.load_table.cache_clear()
    yield tmp_path, calls
    kcomplex.ctm.load_table.cache_clear()
