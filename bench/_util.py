"""Shared helpers for the benchmarks in ``bench/``: timing, memory, machine, tables.

Benchmarks are scripts, never timed tests (see docs/targets.md). Each prints the reference and
ours side by side, measured in the same run, with a header naming the machine.
"""

from __future__ import annotations

import datetime as _dt
import gc
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Timing",
    "time_call",
    "time_adaptive",
    "peak_rss_bytes",
    "current_rss_bytes",
    "run_python",
    "machine_info",
    "machine_line",
    "source_revision",
    "markdown_table",
    "fmt_s",
    "fmt_mb",
    "command_line",
    "now_utc",
]


# -- timing ---------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall times of repeated calls of one function, in seconds."""

    times: list[float] = field(default_factory=list)
    warmup: float | None = None  # the untimed first call (JIT compilation, caches)
    result: Any = None  # return value of the last call

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "min_s": self.min,
            "runs": len(self.times),
            "times_s": self.times,
            "warmup_s": self.warmup,
        }


def _once(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
    finally:
        if gc_was_enabled:
            gc.enable()
    return dt, out


def time_call(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> Timing:
    """``warmup`` untimed calls, then ``repeat`` timed calls (GC off while timing)."""
    timing = Timing()
    for _ in range(warmup):
        timing.warmup, timing.result = _once(fn)
    for _ in range(repeat):
        dt, timing.result = _once(fn)
        timing.times.append(dt)
    return timing


def time_adaptive(fn: Callable[[], Any], max_repeat: int = 5, budget_s: float = 2.0) -> Timing:
    """One timed call, then more (up to ``max_repeat``) while the total stays in budget.

    For slow references: a 3 s call runs once, a 0.1 s call five times.
    """
    timing = Timing()
    total = 0.0
    while len(timing.times) < max_repeat:
        dt, timing.result = _once(fn)
        timing.times.append(dt)
        total += dt
        if total + dt > budget_s:
            break
    return timing


# -- memory ---------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """High-water mark of this process's resident set.

    Linux: ``VmHWM`` from /proc, which starts afresh at exec. ``ru_maxrss`` does not: a
    child started by a big parent inherits the parent's peak, which hides its own.
    """
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss_bytes() -> int:
    """Resident set of this process now."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the peak
        return peak_rss_bytes()


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 600) -> dict:
    """Run ``code`` in a fresh interpreter; it must print one JSON object as its last line.

    ``env`` entries are added to this process's environment. Raises RuntimeError with
    the child's stderr when it fails.
    """
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmark subprocess failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"benchmark subprocess printed nothing:\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


#: Prelude for ``run_python`` snippets: measure the baseline after the imports.
RSS_PRELUDE = '''
import json, os, resource, sys, time, warnings
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
def _peak():  # VmHWM, not ru_maxrss: that one carries the parent's peak over exec
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM:"))
def _cur():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
'''


# -- machine --------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info(extra: Sequence[str] = ()) -> dict[str, Any]:
    """CPU count and model, memory, Python and library versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    info = {
        "nproc": usable,
        "cpu": _cpu_model(),
        "mem_gib": round(mem_gb, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
    }
    for dist in extra:
        info[dist] = _version(dist)
    return info


def machine_line(info: dict[str, Any]) -> str:
    head = f"{info['nproc']} CPU ({info['cpu']}), {info['mem_gib']} GiB RAM, {info['os']}"
    rest = ", ".join(
        f"{k} {v}" for k, v in info.items() if k not in {"nproc", "cpu", "mem_gib", "os"}
    )
    return f"{head}; {rest}"


def source_revision(package: str) -> str:
    """Git commit of the repository holding ``package``, whether that package has
    uncommitted changes, and a hash of its ``.py`` sources (read-only git commands)."""
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return "unknown"
    pkg_dir = os.path.realpath(list(spec.submodule_search_locations)[0])
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(pkg_dir)):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, pkg_dir).encode())
                with open(path, "rb") as fh:
                    digest.update(fh.read())
    text = f"sources sha256 {digest.hexdigest()[:12]}"

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", pkg_dir, *args], capture_output=True, text=True)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode == 0:
            dirty = git("diff", "--quiet", "HEAD", "--", ".").returncode != 0
            untracked = git("ls-files", "--others", "--exclude-standard", "--", ".").stdout
            changed = dirty or bool(untracked.strip())
            text = (f"commit {head.stdout.strip()}"
                    f"{' + uncommitted changes' if changed else ''}, {text}")
    except OSError:
        pass
    return text


# -- output ---------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def fmt_s(seconds: float | None) -> str:
    """Seconds with 3 significant digits; 'not run' for None."""
    if seconds is None:
        return "not run"
    if seconds >= 100:
        return f"{seconds:.0f}"
    if seconds >= 1:
        return f"{seconds:.2f}"
    return f"{seconds:.3g}"


def fmt_mb(nbytes: float | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 1e6:.0f} MB"


def command_line() -> str:
    """The command that started this process, as typed from the repository root."""
    return " ".join(shlex.quote(a) for a in ["python", *sys.argv])


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
