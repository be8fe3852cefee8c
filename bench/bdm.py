"""BDM benchmark: pybdm 0.1.0 (the reference) and kcomplex side by side, in one run.

Usage (from the repository root)::

    python bench/bdm.py                    # every case (a few minutes on 2 cores)
    python bench/bdm.py --quick            # smoke test, under a minute
    python bench/bdm.py --cases bin1d-1e7,ctm9-load --json out.json
    python bench/bdm.py --list

Prints a Markdown report: machine, per-case times, both BDM values and their absolute
difference, the 9-symbol CTM table load (time and peak memory, each in a fresh process),
and the targets of docs/targets.md next to what was measured.

Only the public API of kcomplex is used (``kcomplex.BDM``, ``kcomplex.ctm.load_table``,
``kcomplex.ctm.cache_dir``), so the script keeps working while the internals change.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

# _util sits beside this script, whether it runs as a script or as bench.bdm.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (  # noqa: E402
    RSS_PRELUDE,
    command_line,
    fmt_mb,
    fmt_s,
    machine_info,
    machine_line,
    markdown_table,
    now_utc,
    run_python,
    source_revision,
    time_adaptive,
    time_call,
)

SEED = 20240611

#: The MLP of the paper (docs/targets.md performance table) has this many parameters.
MLP_PARAMS = 986_634


# -- cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    ndim: int
    n_symbols: int
    input: str  # human description of the input
    make: Callable[[np.random.Generator], np.ndarray]  # -> uint8 symbols
    quick: bool = False


def _binary(shape):
    return lambda rng: (rng.random(shape) < 0.5).view(np.uint8)


def _gauss_sign(n):
    # Paper convention: binarize weights with w > 0 -> 1 (zeros and negatives -> 0).
    return lambda rng: (rng.standard_normal(n, dtype=np.float32) > 0).view(np.uint8)


def _uniform(n, k):
    return lambda rng: rng.integers(0, k, size=n, dtype=np.uint8)


CASES: dict[str, Case] = {
    c.name: c
    for c in [
        Case("bin1d-1e5", 1, 2, "rng.random(1e5) < 0.5", _binary(10**5), quick=True),
        Case("bin1d-1e6", 1, 2, "rng.random(1e6) < 0.5", _binary(10**6), quick=True),
        Case("bin1d-1e7", 1, 2, "rng.random(1e7) < 0.5", _binary(10**7)),
        Case("gauss1d-mlp", 1, 2, f"N(0,1) float32 weights > 0, n={MLP_PARAMS:,}",
             _gauss_sign(MLP_PARAMS), quick=True),
        Case("bin2d-1000", 2, 2, "rng.random((1000, 1000)) < 0.5", _binary((1000, 1000)),
             quick=True),
        Case("bin2d-3000", 2, 2, "rng.random((3000, 3000)) < 0.5", _binary((3000, 3000))),
        Case("sym4-1e6", 1, 4, "rng.integers(0, 4, 1e6)", _uniform(10**6, 4), quick=True),
        Case("sym4-1e7", 1, 4, "rng.integers(0, 4, 1e7)", _uniform(10**7, 4)),
        Case("sym5-1e7", 1, 5, "rng.integers(0, 5, 1e7)", _uniform(10**7, 5)),
        Case("sym6-1e7", 1, 6, "rng.integers(0, 6, 1e7)", _uniform(10**7, 6)),
        Case("sym9-1e6", 1, 9, "rng.integers(0, 9, 1e6)", _uniform(10**6, 9), quick=True),
        Case("sym9-1e7", 1, 9, "rng.integers(0, 9, 1e7)", _uniform(10**7, 9)),
    ]
}
LOAD_CASE = "ctm9-load"
ALL_CASES = [*CASES, LOAD_CASE]
QUICK_CASES = [name for name, c in CASES.items() if c.quick]

#: Cases whose pybdm run is skipped by default to keep the full run within ~5 minutes.
DEFAULT_NO_PYBDM: tuple[str, ...] = ()

#: docs/targets.md performance targets: case -> (work, reference today, target seconds,
#: value must be identical to pybdm's).
TARGETS = {
    "bin1d-1e7": ("BDM 1-D binary, 10^7 symbols", "pybdm 3.0 s", 0.03, True),
    "bin2d-3000": ("BDM 2-D binary, 3000x3000", "pybdm 2.9 s", 0.03, True),
    "sym9-1e7": ("BDM 1-D 9 symbols, 10^7", "pybdm 4.5 s", 0.1, False),
}
LOAD_TARGET = ("9-symbol CTM table load", "pybdm 8.8 s, 1.1 GB", 1.0, 200e6)


# -- BDM cases ------------------------------------------------------------------------


class _Pybdm:
    """pybdm BDM objects, built once per table (its table load is timed separately)."""

    def __init__(self) -> None:
        import pybdm

        self.pybdm = pybdm
        self.objects: dict[tuple[int, int], Any] = {}
        self.load_s: dict[tuple[int, int], float] = {}

    def get(self, ndim: int, n_symbols: int):
        key = (ndim, n_symbols)
        if key not in self.objects:
            t0 = time.perf_counter()
            # No per-block warning for blocks absent from the table: random 4- and
            # 9-symbol strings hit hundreds of thousands of them, and printing each
            # would be timed too.
            self.objects[key] = self.pybdm.BDM(ndim=ndim, nsymbols=n_symbols,
                                               warn_if_missing_ctm=False)
            self.load_s[key] = time.perf_counter() - t0
        return self.objects[key]


def run_case(case: Case, ref: _Pybdm | None, repeat: int) -> dict[str, Any]:
    import kcomplex

    rng = np.random.default_rng(SEED)
    x = np.ascontiguousarray(case.make(rng), dtype=np.uint8)
    out: dict[str, Any] = {
        "case": case.name, "input": case.input, "ndim": case.ndim,
        "n_symbols": case.n_symbols, "shape": list(x.shape), "size": int(x.size),
        "seed": SEED, "ones_fraction": float(x.mean()) if case.n_symbols == 2 else None,
    }

    t0 = time.perf_counter()
    shape = 12 if case.ndim == 1 else 4
    ours = kcomplex.BDM(ndim=case.ndim, n_symbols=case.n_symbols, shape=shape,
                        partition="ignore")
    out["kcomplex_init_s"] = time.perf_counter() - t0
    t = time_call(lambda: ours.bdm(x), repeat=repeat, warmup=1)
    out["kcomplex"] = t.as_dict()
    out["kcomplex_value"] = float(t.result)

    if ref is None:
        out["pybdm"] = out["pybdm_value"] = out["abs_diff"] = out["speedup"] = None
        return out
    xi = x.astype(np.int64)  # pybdm requires an integer array; int64 is numpy's default
    obj = ref.get(case.ndim, case.n_symbols)
    tr = time_adaptive(lambda: obj.bdm(xi), max_repeat=repeat, budget_s=2.0)
    out["pybdm"] = tr.as_dict()
    out["pybdm_table_load_s"] = ref.load_s.get((case.ndim, case.n_symbols))
    out["pybdm_value"] = float(tr.result)
    out["abs_diff"] = abs(out["pybdm_value"] - out["kcomplex_value"])
    out["speedup"] = tr.median / t.median
    return out


# -- CTM table load -------------------------------------------------------------------

_PYBDM_LOAD = RSS_PRELUDE + '''
import pybdm.utils as u
base_peak, base_cur = _peak(), _cur()
u.get_ctm_dataset.cache_clear()
t0 = time.perf_counter()
ctm, missing = u.get_ctm_dataset("CTM-B9-D12")
dt = time.perf_counter() - t0
print(json.dumps({"time_s": dt, "peak_delta": _peak() - base_peak,
                  "retained": _cur() - base_cur, "baseline_peak": base_peak,
                  "entries": sum(len(v) for v in ctm.values())}))
'''

_OURS_LOAD = RSS_PRELUDE + '''
import kcomplex, kcomplex.ctm
base_peak, base_cur = _peak(), _cur()
t0 = time.perf_counter()
table = kcomplex.ctm.load_table(1, 9)
dt = time.perf_counter() - t0
files = sorted(kcomplex.ctm.cache_dir().glob("*"))
print(json.dumps({"time_s": dt, "peak_delta": _peak() - base_peak,
                  "retained": _cur() - base_cur, "baseline_peak": base_peak,
                  "cache_dir": str(kcomplex.ctm.cache_dir()),
                  "cache_files": {f.name: f.stat().st_size for f in files}}))
'''


def run_load(with_pybdm: bool, warm_runs: int = 3) -> dict[str, Any]:
    import statistics

    out: dict[str, Any] = {"case": LOAD_CASE}
    out["pybdm"] = run_python(_PYBDM_LOAD) if with_pybdm else None
    with tempfile.TemporaryDirectory(prefix="kcomplex-bench-cache-") as tmp:
        env = {"KCOMPLEX_CACHE_DIR": tmp}
        out["kcomplex_cold"] = run_python(_OURS_LOAD, env=env)
        warm = [run_python(_OURS_LOAD, env=env) for _ in range(warm_runs)]
    out["kcomplex_warm_runs"] = warm
    out["kcomplex_warm"] = {
        key: statistics.median(r[key] for r in warm)
        for key in ("time_s", "peak_delta", "retained", "baseline_peak")
    }
    out["kcomplex_warm"]["cache_files"] = warm[-1]["cache_files"]
    return out


# -- report ---------------------------------------------------------------------------


def _value(v: float | None) -> str:
    return "not run" if v is None else repr(v)


def bdm_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["case"], r.get("input", ""), "error", r["error"], "", "", "", "", ""])
            continue
        p = r["pybdm"]
        rows.append([
            r["case"], r["input"],
            fmt_s(p["median_s"] if p else None) + (f" ({p['runs']}x)" if p else ""),
            fmt_s(r["kcomplex"]["median_s"]), fmt_s(r["kcomplex"]["min_s"]),
            "not run" if r["speedup"] is None else f"{r['speedup']:,.0f}x",
            _value(r["pybdm_value"]), _value(r["kcomplex_value"]), _value(r["abs_diff"]),
        ])
    return markdown_table(
        ["case", "input", "pybdm [s]", "kcomplex [s]", "kcomplex min [s]", "speed-up",
         "pybdm BDM [bits]", "kcomplex BDM [bits]", "abs diff"],
        rows,
    )


def load_table_md(load: dict) -> str:
    if "error" in load:
        return f"ctm9-load failed: {load['error']}"
    p, cold, warm = load["pybdm"], load["kcomplex_cold"], load["kcomplex_warm"]
    size = sum(v for k, v in warm["cache_files"].items() if "b9" in k)
    rows = []
    if p:
        rows.append(["pybdm `get_ctm_dataset('CTM-B9-D12')`, lru cache cleared",
                     fmt_s(p["time_s"]), fmt_mb(p["peak_delta"]), fmt_mb(p["retained"]),
                     f"{p['entries']:,} entries unpickled into dicts"])
    else:
        rows.append(["pybdm `get_ctm_dataset('CTM-B9-D12')`", "not run", "", "", ""])
    rows.append([f"kcomplex `load_table(1, 9)`, warm cache (median of "
                 f"{len(load['kcomplex_warm_runs'])} processes)",
                 fmt_s(warm["time_s"]), fmt_mb(warm["peak_delta"]), fmt_mb(warm["retained"]),
                 f"cache file {size / 1e6:.0f} MB"])
    rows.append(["kcomplex `load_table(1, 9)`, empty cache: one-time conversion",
                 fmt_s(cold["time_s"]), fmt_mb(cold["peak_delta"]), fmt_mb(cold["retained"]),
                 "reads pybdm's pickle once, writes the cache"])
    return markdown_table(
        ["what (each in a fresh process)", "time [s]", "peak RSS over baseline",
         "RSS kept", "note"], rows)


def targets_md(results: list[dict], load: dict | None) -> str:
    by_case = {r["case"]: r for r in results if "error" not in r}
    rows = []
    for case, (work, ref, limit, identical) in TARGETS.items():
        r = by_case.get(case)
        if r is None:
            rows.append([work, ref, f"<= {limit} s" + (", identical value" if identical else ""),
                         "not measured", "", "n/a"])
            continue
        t = r["kcomplex"]["median_s"]
        diff = r["abs_diff"]
        same = "value not compared" if diff is None else (
            "identical value" if diff == 0.0 else f"abs diff {diff!r}")
        ok = t <= limit and (not identical or diff == 0.0)
        pyb = "not run" if r["pybdm"] is None else f"{fmt_s(r['pybdm']['median_s'])} s"
        rows.append([work, ref, f"<= {limit} s" + (", identical value" if identical else ""),
                     f"{fmt_s(t)} s, {same}", pyb, "yes" if ok else "**no**"])
    work, ref, limit_s, limit_b = LOAD_TARGET
    if load is None or "error" in load:
        rows.append([work, ref, f"<= {limit_s} s, <= {limit_b / 1e6:.0f} MB",
                     "not measured", "", "n/a"])
    else:
        w, p = load["kcomplex_warm"], load["pybdm"]
        ok = w["time_s"] <= limit_s and w["peak_delta"] <= limit_b
        pyb = "not run" if p is None else f"{fmt_s(p['time_s'])} s, {fmt_mb(p['peak_delta'])}"
        rows.append([work, ref, f"<= {limit_s} s, <= {limit_b / 1e6:.0f} MB",
                     f"{fmt_s(w['time_s'])} s, {fmt_mb(w['peak_delta'])} (warm cache)",
                     pyb, "yes" if ok else "**no**"])
    return markdown_table(
        ["work", "reference (targets.md)", "target", "kcomplex measured",
         "pybdm this run", "met"], rows)


def notes(repeat: int, no_pybdm: list[str]) -> str:
    lines = [
        f"- kcomplex: median of {repeat} timed `BDM(...).bdm(x)` calls after one untimed "
        "warm-up call (numba kernels load or compile there); input `x` is `uint8`, so no "
        "dtype conversion is timed (an `int64` input would add one copy).",
        f"- pybdm: `BDM(ndim, nsymbols).bdm(x)` with `x` as `int64` (pybdm requires an "
        f"integer array), default `check_data=True`, `warn_if_missing_ctm=False` (else it "
        "prints one warning per block absent from its table, hundreds of thousands for "
        f"random 4- and 9-symbol strings); median of up to {repeat} calls "
        "within ~2 s (a single call for the 10^7 cases). Its table load (in `BDM()`) is "
        "not in the BDM time; it is measured on its own in the `ctm9-load` case.",
        "- Both: block 12 (1-D) or 4x4 (2-D), partition ignore; the BDM object is built "
        "before timing; GC off while timing; one process, cases in sequence.",
        f"- Inputs from `numpy.random.default_rng({SEED})`, one fresh generator per case.",
        "- `abs diff` is `abs(pybdm - kcomplex)` printed with `repr`; the goal is exactly 0.0.",
        "- Table load: each measurement in a fresh interpreter; peak RSS (VmHWM) minus "
        "the peak after the imports (interpreter + numpy + the library). The kcomplex cache "
        "is a temporary `KCOMPLEX_CACHE_DIR`: the first process converts (cold), the next "
        "ones read it (warm; the file is then also in the OS page cache).",
    ]
    if no_pybdm:
        lines.append(f"- pybdm not run for: {', '.join(no_pybdm)} (to keep the run short).")
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------


def load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def parse_cases(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; valid: {', '.join(ALL_CASES)}")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke test: {', '.join(QUICK_CASES)} (no table-load case)")
    ap.add_argument("--cases", type=parse_cases,
                    help=f"comma-separated subset of: {', '.join(ALL_CASES)}")
    ap.add_argument("--no-pybdm", type=parse_cases, default=list(DEFAULT_NO_PYBDM),
                    help="cases to run without pybdm (reported as 'not run'); "
                         f"default: {','.join(DEFAULT_NO_PYBDM) or 'none'}")
    ap.add_argument("--all-pybdm", action="store_true",
                    help="run pybdm on every case, overriding the default --no-pybdm")
    ap.add_argument("--repeat", type=int, default=5, help="timed kcomplex calls (default 5)")
    ap.add_argument("--json", metavar="OUT", type=Path, help="also write results as JSON")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)

    if args.list:
        for name, c in CASES.items():
            print(f"{name:12s} {c.input}{'  [quick]' if c.quick else ''}")
        print(f"{LOAD_CASE:12s} 9-symbol CTM table: load time and peak memory")
        return 0
    selected = args.cases or (QUICK_CASES if args.quick else ALL_CASES)
    no_pybdm = [] if args.all_pybdm else [c for c in args.no_pybdm if c in selected]

    wall0 = time.perf_counter()
    info = machine_info(extra=["pybdm", "kcomplex"])
    header = [
        "# BDM benchmark: pybdm vs kcomplex", "",
        f"- date: {now_utc()}",
        f"- command: `{command_line()}`",
        f"- machine: {machine_line(info)}",
        f"- kcomplex: {source_revision('kcomplex')}",
        f"- load average at start: {load_average()} (other work on the machine inflates times)",
    ]
    print("\n".join(header), flush=True)

    ref = _Pybdm() if any(c not in no_pybdm for c in selected) else None
    results: list[dict] = []
    for name in selected:
        if name == LOAD_CASE:
            continue
        t0 = time.perf_counter()
        try:
            r = run_case(CASES[name], None if name in no_pybdm else ref, args.repeat)
        except Exception as exc:  # report and go on: one broken case must not hide the rest
            traceback.print_exc()
            r = {"case": name, "input": CASES[name].input,
                 "error": f"{type(exc).__name__}: {exc}"}
        r["case_wall_s"] = time.perf_counter() - t0
        results.append(r)
        print(f"  ... {name} done in {r['case_wall_s']:.1f} s", file=sys.stderr, flush=True)

    load = None
    if LOAD_CASE in selected:
        t0 = time.perf_counter()
        try:
            load = run_load(with_pybdm=LOAD_CASE not in no_pybdm)
        except Exception as exc:
            traceback.print_exc()
            load = {"case": LOAD_CASE, "error": f"{type(exc).__name__}: {exc}"}
        load["case_wall_s"] = time.perf_counter() - t0
        print(f"  ... {LOAD_CASE} done in {load['case_wall_s']:.1f} s",
              file=sys.stderr, flush=True)
    if ref is not None:
        loads = ", ".join(f"ndim={d} nsymbols={k}: {fmt_s(s)} s"
                          for (d, k), s in ref.load_s.items())
    wall = time.perf_counter() - wall0

    parts = []
    if results:
        parts += ["", "## BDM time and value", "", bdm_table(results), ""]
        if ref is not None and ref.load_s:
            parts += [f"pybdm table load inside `BDM()` (in this process, not in the times "
                      f"above): {loads}.", ""]
    if load is not None:
        parts += ["## CTM table load, 9 symbols (CTM-B9-D12)", "", load_table_md(load), ""]
    if set(selected) & (set(TARGETS) | {LOAD_CASE}):
        parts += ["## Targets (targets.md)", "", targets_md(results, load), ""]
    parts += ["## Notes", "", notes(args.repeat, no_pybdm), "",
              f"Total wall time: {wall:.0f} s; load average at the end: {load_average()}."]
    print("\n".join(parts), flush=True)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "date": now_utc(), "command": command_line(), "machine": info,
            "kcomplex_source": source_revision("kcomplex"), "seed": SEED,
            "repeat": args.repeat, "no_pybdm": no_pybdm,
            "pybdm_table_load_s": {f"{d},{k}": s for (d, k), s in ref.load_s.items()}
            if ref is not None else {},
            "cases": results, "ctm9_load": load, "wall_s": wall,
        }, indent=2))
    failed = [r["case"] for r in results if "error" in r]
    if load is not None and "error" in load:
        failed.append(LOAD_CASE)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
