"""CTM tables: the data files that the pybdm distribution ships, cached as arrays.

pybdm stores each table as a gzip-compressed pickle of
``{shape: {canonical key string: CTM bits}}``. Unpickling the 9-symbol table takes
seconds and about a gigabyte of Python objects, so each table is converted once into
sorted ``int64`` keys and ``float64`` values per block shape and cached on disk as an
``.npz`` file; later loads read the cache.

The data files are located through ``importlib.metadata`` without importing pybdm,
whose import needs ``pkg_resources``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["CTMTable", "load_table", "cache_dir", "TABLES"]

#: (ndim, n_symbols) -> data file name inside ``pybdm/ctmdata``.
TABLES: dict[tuple[int, int], str] = {
    (1, 2): "ctm-b2-d12.pkl.gz",
    (1, 4): "ctm-b4-d12.pkl.gz",
    (1, 5): "ctm-b5-d12.pkl.gz",
    (1, 6): "ctm-b6-d12.pkl.gz",
    (1, 9): "ctm-b9-d12.pkl.gz",
    (2, 2): "ctm-b2-d4x4.pkl.gz",
}

# Bump when the cache layout changes, so old caches are rebuilt rather than misread.
_CACHE_FORMAT = 1


@dataclass(frozen=True, eq=False)
class CTMTable:
    """CTM values of canonical blocks for one alphabet and dimension.

    Attributes
    ----------
    ndim : int
        1 for strings, 2 for square matrices.
    n_symbols : int
        Alphabet size.
    keys : dict[int, np.ndarray]
        Block side length -> sorted canonical keys (base-``n_symbols`` integers of the
        canonical block read row-major, first symbol most significant).
    values : dict[int, np.ndarray]
        Block side length -> CTM value in bits of each key.
    """

    ndim: int
    n_symbols: int
    keys: dict[int, np.ndarray]
    values: dict[int, np.ndarray]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Block side lengths the table covers, ascending."""
        return tuple(sorted(self.keys))

    def missing_value(self, size: int) -> float:
        """Score of a block absent from the table: the largest CTM of that shape + 1 bit."""
        return float(self.values[size].max()) + 1.0

    def n_strings(self, size: int) -> int:
        """Number of raw blocks of side ``size`` over the alphabet."""
        return self.n_symbols ** (size**self.ndim)

    def lookup(self, size: int, canonical_keys: np.ndarray) -> np.ndarray:
        """CTM values of canonical keys of side ``size``; missing keys get max + 1."""
        keys = self.keys[size]
        pos = np.searchsorted(keys, canonical_keys)
        pos_c = np.minimum(pos, keys.size - 1)
        found = keys[pos_c] == canonical_keys
        return np.where(found, self.values[size][pos_c], self.missing_value(size))


def cache_dir() -> Path:
    """Directory of the table cache.

    ``$KCOMPLEX_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/kcomplex`` or
    ``~/.cache/kcomplex``.
    """
    env = os.environ.get("KCOMPLEX_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kcomplex"


def _source_path(name: str) -> Path:
    try:
        dist = importlib.metadata.distribution("pybdm")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "the CTM tables come from the 'pybdm' distribution, which is not installed; "
            "run: pip install pybdm==0.1.0"
        ) from None
    for file in dist.files or ():
        if file.name == name and "ctmdata" in file.parts:
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise FileNotFoundError(f"pybdm is installed but its CTM data file {name!r} is missing")


def _encode_canonical(strings: list[str], base: int) -> np.ndarray:
    """Integer keys of canonical key strings (digits < base, first most significant)."""
    length = len(strings[0])
    digits = np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8)
    digits = (digits - ord("0")).astype(np.int64).reshape(len(strings), length)
    weights = base ** np.arange(length - 1, -1, -1, dtype=np.int64)
    return digits @ weights


def _convert(source: Path, ndim: int, n_symbols: int) -> dict[str, np.ndarray]:
    with gzip.open(source, "rb") as fh:
        table = pickle.load(fh)  # noqa: S301 - pybdm's own data file, the only reader there is
    arrays: dict[str, np.ndarray] = {}
    for shape, entries in table.items():
        if len(shape) != ndim or len(set(shape)) != 1:
            raise ValueError(f"unexpected block shape {shape} in {source}")
        keys = _encode_canonical(list(entries), n_symbols)
        values = np.fromiter(entries.values(), dtype=np.float64, count=len(entries))
        order = np.argsort(keys, kind="stable")
        arrays[f"keys_{shape[0]}"] = keys[order]
        arrays[f"values_{shape[0]}"] = values[order]
    return arrays


def _fingerprint(source: Path) -> str:
    stat = source.stat()
    text = f"{_CACHE_FORMAT}:{source.name}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(path: Path, fingerprint: str) -> dict[str, np.ndarray] | None:
    """Arrays of a valid cache file, or None when it is absent, stale or corrupt."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                return None
            arrays = {name: data[name] for name in data.files if name != "fingerprint"}
    except Exception:  # truncated file, bad zip CRC, missing member: rebuild, never trust
        return None
    for name, arr in arrays.items():
        if name.startswith("keys_") and (
            arr.dtype != np.int64 or np.any(np.diff(arr) <= 0)
        ):
            return None
    return arrays


def _from_arrays(ndim: int, n_symbols: int, arrays: dict[str, np.ndarray]) -> CTMTable:
    sizes = sorted(int(name[5:]) for name in arrays if name.startswith("keys_"))
    keys = {s: arrays[f"keys_{s}"] for s in sizes}
    values = {s: arrays[f"values_{s}"] for s in sizes}
    for s in sizes:
        keys[s].setflags(write=False)
        values[s].setflags(write=False)
    return CTMTable(ndim=ndim, n_symbols=n_symbols, keys=keys, values=values)


@lru_cache(maxsize=None)
def load_table(ndim: int = 1, n_symbols: int = 2) -> CTMTable:
    """Load a CTM table, from the on-disk cache when a valid one exists.

    Parameters
    ----------
    ndim : int
        1 (strings up to length 12) or 2 (binary squares up to 4x4).
    n_symbols : int
        2, 4, 5, 6 or 9 for ``ndim=1``; 2 for ``ndim=2``.

    Returns
    -------
    CTMTable
        Loaded once per process and shared.

    Raises
    ------
    ValueError
        If no table exists for ``(ndim, n_symbols)``.
    FileNotFoundError
        If pybdm, which ships the data files, is not installed.

    Examples
    --------
    >>> table = load_table(1, 2)
    >>> table.sizes[-1], round(float(table.lookup(12, np.array([0]))[0]), 6)
    (12, 25.610414)
    """
    if (ndim, n_symbols) not in TABLES:
        valid = ", ".join(f"ndim={d} n_symbols={n}" for d, n in TABLES)
        raise ValueError(
            f"no CTM table for ndim={ndim}, n_symbols={n_symbols}; tables exist for {valid}"
        )
    source = _source_path(TABLES[ndim, n_symbols])
    fingerprint = _fingerprint(source)
    path = cache_dir() / (TABLES[ndim, n_symbols].replace(".pkl.gz", "") + ".npz")
    arrays = _read_cache(path, fingerprint)
    if arrays is None:
        arrays = _convert(source, ndim, n_symbols)
        try:
            _write_atomic(path, {**arrays, "fingerprint": np.array(fingerprint)})
        except OSError as exc:
            warnings.warn(
                f"could not write the CTM cache {path} ({exc}); set KCOMPLEX_CACHE_DIR "
                "to a writable directory to avoid converting the table on every run",
                RuntimeWarning,
                stacklevel=2,
            )
    return _from_arrays(ndim, n_symbols, arrays)
