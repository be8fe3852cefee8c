"""Shared setup of the momos tests: the reference oracle ``tests/momos/reference.py``
importable as ``import momos_reference`` (registered by path, like ``naive``, so that
``tests/momos/`` never shadows the installed ``momos`` package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if "momos_reference" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "momos_reference", Path(__file__).resolve().parent / "reference.py"
    )
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["momos_reference"] = _module
    _spec.loader.exec_module(_module)
