"""CTM tables: the data files that the pybdm distribution ships, cached as arrays.

pybdm stores each table as a gzip-compressed pickle of
``{shape: {canonical key string: CTM bits}}``. Unpickling the 9-symbol table takes
seconds and about a gigabyte of Python objects, so each table is converted once into a
dense ``float64`` array per block shape, indexed by the rank of the canonical key, and
cached on disk as an ``.npz`` file; later loads read the cache. The cache holds the
fingerprint of its source file and a SHA-256 checksum of its content; a cache whose
fingerprint, members, array shapes or checksum are not the expected ones is rebuilt.

The data files are located through ``importlib.metadata`` without importing pybdm,
whose import needs ``pkg_resources``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import math
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import _kernels as _k
from .files import regular_file, write_atomic
from .validation import check_int

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

#: ndim -> the block sides every table of that dimension covers (pybdm's data files: strings
#: of 1 to 12 symbols, squares of side 1 to 4).
_SIDES: dict[int, tuple[int, ...]] = {1: tuple(range(1, 13)), 2: (1, 2, 3, 4)}

# Bump when the cache layout changes, so old caches are rebuilt rather than misread.
_CACHE_FORMAT = 3

# The cache's fingerprint and checksum: SHA-256 hex digests, stored as 0-d string arrays.
_DIGEST = np.dtype("<U64")


def bits_per_symbol(n_symbols: int) -> int:
    """Bits of one symbol in a block key."""
    return max(1, (n_symbols - 1).bit_length())


@dataclass(frozen=True, eq=False)
class CTMTable:
    """CTM values of canonical blocks for one alphabet and dimension.

    A canonical block (symbols relabelled in order of first appearance, read row-major)
    is a restricted growth string; ``values[side][rank]`` is the CTM of the canonical
    block of that lexicographic rank, NaN where the table has none.

    Attributes
    ----------
    ndim : int
        1 for strings, 2 for square matrices.
    n_symbols : int
        Alphabet size.
    values : dict[int, np.ndarray]
        Block side -> CTM bits by canonical rank (NaN: absent from the table).
    labels : dict[int, np.ndarray]
        Block side -> number of distinct symbols of each canonical block.
    """

    ndim: int
    n_symbols: int
    values: dict[int, np.ndarray]
    labels: dict[int, np.ndarray]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Block sides the table covers, ascending."""
        return tuple(sorted(self.values))

    @property
    def bits(self) -> int:
        """Bits of one symbol in a block key."""
        return bits_per_symbol(self.n_symbols)

    def missing_value(self, size: int) -> float:
        """Score of a block absent from the table: the largest CTM of that shape + 1 bit."""
        return _missing(self, size)

    def lookup(self, size: int, keys: np.ndarray) -> np.ndarray:
        """CTM values of raw block keys of side ``size``; absent blocks score max + 1."""
        length = size**self.ndim
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        split = _split(length, self.bits, self.n_symbols)
        f = _k.rgs_completions(length, min(self.n_symbols, length))
        if split is None:
            return _k.ctm_of_keys(
                keys, length, self.bits, f, self.values[size], self.missing_value(size)
            )
        return _k.ctm_by_tables(
            keys,
            self.bits * (length - split),
            *_rank_tables(length, self.bits, self.n_symbols, split),
            self.values[size],
            self.missing_value(size),
        )


@lru_cache(maxsize=None)
def _missing(table: CTMTable, size: int) -> float:
    return float(np.nanmax(table.values[size])) + 1.0


# Largest rank tables (entries, 8 bytes each) worth building: they must stay in the CPU
# caches to beat ranking symbol by symbol.
_RANK_TABLE_ENTRIES = 1 << 17


@lru_cache(maxsize=None)
def _split(length: int, bits: int, n_symbols: int) -> int | None:
    """Where to split a block of ``length`` symbols for :func:`_k.split_rank_tables`: the
    split with the smallest tables, or None where every split needs too large tables (the
    large alphabets at length 12: their blocks are ranked symbol by symbol)."""
    best, split = _RANK_TABLE_ENTRIES + 1, None
    for a in range(1, length + 1):
        states = sum(math.perm(n_symbols, m) for m in range(1, min(a, n_symbols) + 1))
        entries = 2 ** (bits * a) + states * 2 ** (bits * (length - a))
        if entries < best:
            best, split = entries, a
    return split


@lru_cache(maxsize=None)
def _rank_tables(length: int, bits: int, n_symbols: int, split: int) -> tuple[np.ndarray, ...]:
    """The tables of :func:`_k.split_rank_tables`, built once per process (a few ms)."""
    f = _k.rgs_completions(length, min(n_symbols, length))
    tables = _k.split_rank_tables(length, bits, n_symbols, f, split)
    for t in tables:
        t.setflags(write=False)
    return tables


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


def _convert(source: Path, ndim: int, n_symbols: int) -> dict[str, np.ndarray]:
    with gzip.open(source, "rb") as fh:
        table = pickle.load(fh)  # noqa: S301 - pybdm's own data file, the only reader there is
    arrays: dict[str, np.ndarray] = {}
    for shape, entries in table.items():
        if len(shape) != ndim or len(set(shape)) != 1:
            raise ValueError(f"unexpected block shape {shape} in {source}")
        length = shape[0] ** ndim
        n_labels = min(n_symbols, length)
        digits = np.frombuffer("".join(entries).encode("ascii"), dtype=np.uint8) - ord("0")
        digits = digits.reshape(len(entries), length)
        f = _k.rgs_completions(length, n_labels)
        ranks = _k.rank_canonical(digits, f)
        values = np.full(int(f[1, 1]), np.nan)
        values[ranks] = np.fromiter(entries.values(), dtype=np.float64, count=len(entries))
        labels = np.zeros(values.size, dtype=np.uint8)
        labels[ranks] = digits.max(axis=1) + 1
        arrays[f"values_{shape[0]}"] = values
        arrays[f"labels_{shape[0]}"] = labels
    expected = _layout(ndim, n_symbols)
    if {name: (a.dtype, a.shape) for name, a in arrays.items()} != expected:
        raise ValueError(
            f"{source} does not hold the block shapes of the CTM table for ndim={ndim}, "
            f"n_symbols={n_symbols}; reinstall pybdm==0.1.0"
        )
    return arrays


def _layout(ndim: int, n_symbols: int) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Name -> (dtype, shape) of every table array: one value and one label per canonical
    block of each side, a number that follows from the side and the alphabet alone."""
    out = {}
    for side in _SIDES[ndim]:
        length = side**ndim
        n_canonical = int(_k.rgs_completions(length, min(n_symbols, length))[1, 1])
        out[f"values_{side}"] = (np.dtype(np.float64), (n_canonical,))
        out[f"labels_{side}"] = (np.dtype(np.uint8), (n_canonical,))
    return out


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``arrays``, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}:".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _fingerprint(source: Path) -> str:
    stat = source.stat()
    text = f"{_CACHE_FORMAT}:{source.name}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()


def _save_cache(path: Path, arrays: dict[str, np.ndarray], fingerprint: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {**arrays, "fingerprint": np.array(fingerprint, dtype=_DIGEST)}
    buf = io.BytesIO()
    np.savez(buf, **content, checksum=np.array(_checksum(content), dtype=_DIGEST))
    write_atomic(path, buf.getvalue())


def _read_member(zf: zipfile.ZipFile, name: str, dtype: np.dtype,
                 shape: tuple[int, ...]) -> np.ndarray | None:
    """The array ``name`` of an ``.npz`` if its header announces ``dtype`` and ``shape``
    and its data is all there; else None. The bytes read are those the expected shape
    needs (plus one, to notice trailing data), never what the file announces."""
    with zf.open(f"{name}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            header = np.lib.format.read_array_header_2_0(fh)
        else:
            return None
        if header != (shape, False, dtype):
            return None
        n_bytes = math.prod(shape) * dtype.itemsize
        data = fh.read(n_bytes + 1)
    if len(data) != n_bytes:
        return None
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _read_cache(
    path: Path, fingerprint: str, layout: dict[str, tuple[np.dtype, tuple[int, ...]]]
) -> dict[str, np.ndarray] | None:
    """Arrays of a valid cache file, or None when it is absent, not a regular file, stale
    (another fingerprint) or corrupt (other members, dtypes or shapes than ``layout``, or
    content that does not match its checksum)."""
    try:
        regular_file(path, "CTM cache")
    except (OSError, ValueError):  # absent, unreachable, or a FIFO/device/directory
        return None
    digests = {"fingerprint": (_DIGEST, ()), "checksum": (_DIGEST, ())}
    try:
        with zipfile.ZipFile(path) as zf:
            if sorted(zf.namelist()) != sorted(f"{n}.npy" for n in {**layout, **digests}):
                return None
            stored = _read_member(zf, "fingerprint", *digests["fingerprint"])
            if stored is None or str(stored) != fingerprint:
                return None
            arrays = {}
            for name, (dtype, shape) in {**layout, **digests}.items():
                arrays[name] = _read_member(zf, name, dtype, shape)
                if arrays[name] is None:
                    return None
    except Exception:  # truncated file, bad zip CRC, garbled header: rebuild, never trust
        return None
    checksum = str(arrays.pop("checksum"))
    if _checksum(arrays) != checksum:
        return None
    del arrays["fingerprint"]
    return arrays


def _from_arrays(ndim: int, n_symbols: int, arrays: dict[str, np.ndarray]) -> CTMTable:
    sizes = sorted(int(name[7:]) for name in arrays if name.startswith("values_"))
    values = {s: arrays[f"values_{s}"] for s in sizes}
    labels = {s: arrays[f"labels_{s}"] for s in sizes}
    for s in sizes:
        values[s].setflags(write=False)
        labels[s].setflags(write=False)
    return CTMTable(ndim=ndim, n_symbols=n_symbols, values=values, labels=labels)


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
        Loaded once per process and shared (``load_table.cache_clear()`` forgets it).

    Raises
    ------
    TypeError
        If ``ndim`` or ``n_symbols`` is not an integer (``2.0`` and ``True`` are not).
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
    # Checked before the in-process cache: 2.0 == 2 would otherwise hit, or be stored
    # under, the key of the table for 2 symbols.
    ndim, n_symbols = check_int(ndim, "ndim"), check_int(n_symbols, "n_symbols")
    if (ndim, n_symbols) not in TABLES:
        valid = ", ".join(f"ndim={d} n_symbols={n}" for d, n in TABLES)
        raise ValueError(
            f"no CTM table for ndim={ndim}, n_symbols={n_symbols}; tables exist for {valid}"
        )
    return _load_table(ndim, n_symbols)


@lru_cache(maxsize=None)
def _load_table(ndim: int, n_symbols: int) -> CTMTable:
    source = _source_path(TABLES[ndim, n_symbols])
    fingerprint = _fingerprint(source)
    path = cache_dir() / (TABLES[ndim, n_symbols].replace(".pkl.gz", "") + ".npz")
    arrays = _read_cache(path, fingerprint, _layout(ndim, n_symbols))
    if arrays is None:
        arrays = _convert(source, ndim, n_symbols)
        try:
            _save_cache(path, arrays, fingerprint)
        except OSError as exc:
            warnings.warn(
                f"could not write the CTM cache {path} ({exc}); set KCOMPLEX_CACHE_DIR "
                "to a writable directory to avoid converting the table on every run",
                RuntimeWarning,
                stacklevel=3,
            )
    return _from_arrays(ndim, n_symbols, arrays)


load_table.cache_clear = _load_table.cache_clear  # type: ignore[attr-defined]
