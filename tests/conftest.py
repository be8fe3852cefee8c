"""Shared test setup: the ``naive`` oracle importable as ``import naive``, and a
deterministic hypothesis profile so CI runs are reproducible.

Set ``HYPOTHESIS_PROFILE=dev`` for randomized runs with more examples.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings

# ``tests/naive.py`` is registered as the module ``naive`` rather than by putting
# ``tests/`` on ``sys.path``: that would make ``tests/kcomplex/`` (no ``__init__.py``)
# a namespace package shadowing the editable install of ``kcomplex``, whose finder
# runs after the path finder.
if "naive" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "naive", Path(__file__).resolve().parent / "naive.py"
    )
    _naive = importlib.util.module_from_spec(_spec)
    sys.modules["naive"] = _naive
    _spec.loader.exec_module(_naive)

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
