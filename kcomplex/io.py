"""Read weights from arrays, tensors, modules, state dicts and files.

Every supported input becomes an ordered ``{name: numpy.ndarray}``: the
tensors the estimators measure, in the order the weight vector concatenates
them.  :func:`iter_weights` yields them one at a time (a ``.safetensors`` or
``.npz`` file is read tensor by tensor), :func:`load_weights` collects them,
and :func:`weight_shapes` gives names and shapes, from the header alone where
the format has one.

Torch is imported only for ``.pt``/``.pth``/``.bin`` files and for
``.safetensors`` tensors in a float8 (or smaller) dtype; a tensor or module
input implies the caller imported it already.

Which tensors, under which names
--------------------------------
- A lone array or tensor is named ``"weights"``.
- A mapping (a state dict) keeps its keys and order.  A state dict holds
  floating buffers too (BatchNorm's running statistics); pass the module
  itself for exactly the trainable parameters.  Values that are not
  arrays or tensors (counters, strings, ``None``, optimizer state and other
  nested dicts) are skipped.  A mapping holding no array or tensor but a
  mapping under ``"state_dict"``, ``"model_state_dict"`` or ``"model"`` (tried
  in that order, repeatedly) is a checkpoint wrapper and is unwrapped.
- An ``nn.Module`` gives ``named_parameters()``, which is ``parameters()``
  order (shared parameters once); buffers never count.
- When every tensor name starts with ``"module."`` (DataParallel and
  DistributedDataParallel add it), that prefix is removed from all of them.
- ``floating_only=True`` (the default) keeps real floating tensors only: the
  paper's weight vector is floating parameters, and a state dict's integer
  buffers (BatchNorm's ``num_batches_tracked``) are not weights.  With
  ``floating_only=False`` integer, bool and complex tensors are kept too.
  Arrays of non-numeric dtype (object, string) are always skipped.

Files, by suffix
----------------
- ``.npy``: one array, named ``"weights"``.
- ``.npz``: every ``.npy`` member, in the archive's order.
- ``.pt``, ``.pth``, ``.bin``: ``torch.load(weights_only=True)``, which never
  runs pickled code, then as a tensor or a mapping above.
- ``.safetensors``: tensors in the order of their data in the file.  The
  format does not record the model's order; files written by the safetensors
  library sort tensors by dtype size, then by name.  ``safe_open().keys()``
  is sorted by name, so it differs from the order used here.
- ``.json``: a sharded checkpoint's index (``model.safetensors.index.json``,
  ``pytorch_model.bin.index.json``): a JSON object whose ``weight_map`` maps
  tensor names to shard files.  The tensors are those of every shard, each
  shard read as a file of its own suffix (its ``"module."`` prefix removed on
  its own), the shards in the order of their file names
  (``model-00001-of-00003...``), not of the ``weight_map``, and within a shard
  in the order above.  :func:`kcomplex.distributed.analyze` uses the same
  order, via :func:`read_index`, so both give the same weight vector.  Shards
  must lie in the index's folder or below it (see :func:`read_index`).

Only regular files are read (symbolic links are followed to one): a FIFO, a
device (``/dev/zero``, ``/dev/null``) or a socket is refused with its path,
since reading it could block forever or never end.  The sizes a header
declares (a ``.npy`` file's or ``.npz`` member's shape and dtype, a
``.safetensors`` file's offsets) are checked against the bytes the file holds
before any array is allocated, so a corrupt or forged header is an error that
names the file, never an attempt to allocate terabytes.  TorchScript
(``.jit``, or a TorchScript archive under a torch suffix) and ONNX files are
not read; the error says how to pass their weights instead.

Returned arrays
---------------
NumPy arrays, C-contiguous, in native byte order, with the source dtype,
except that floating dtypes NumPy lacks (bfloat16, float8) become float32,
exactly.  An array that shares memory with an array or tensor the caller
passed in is a read-only view: nothing the caller owns can be changed through
it.  Every other array (converted, made contiguous, moved off a GPU, or read
from a file) is a new array that only the caller holds, and is writable.
"""

from __future__ import annotations

import errno
import json
import math
import os
import pickle
import re
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from .files import regular_file
from .symbols import to_numpy
from .validation import check_int

__all__ = [
    "INDEX_SUFFIX",
    "SUFFIXES",
    "WeightsFormatError",
    "frozen_parameters",
    "iter_chunks",
    "iter_weights",
    "load_weights",
    "read_index",
    "weight_shapes",
]

_SINGLE_NAME = "weights"
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_DDP_PREFIX = "module."
_MAX_LISTED = 5

#: The suffix of a sharded checkpoint's index (case-insensitive), read by :func:`read_index`.
INDEX_SUFFIX = ".json"

# The largest index read: real ones list a few thousand names in well under 1 MiB.
_MAX_INDEX_BYTES = 64 << 20

# Safetensors dtypes that numpy reads directly (the format is little-endian).
_ST_NUMPY = {
    "BOOL": "?", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "U32": "<u4",
    "I32": "<i4", "U64": "<u8", "I64": "<i8", "F16": "<f2", "F32": "<f4", "F64": "<f8",
    "C64": "<c8",
}

# The error raised for a rejected pickle ends with a line naming what was refused.
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")

# Deflate expands at most 1032-fold (RFC 1951: a 258-byte copy takes 2 bits at best), so a
# deflated .npz member holding more than this many bytes per compressed byte is forged.
_DEFLATE_RATIO = 1032

# Formats that hold weights but are not read here, and how to get the weights out.
_NOT_READ = {
    ".jit": "a TorchScript archive is a program, and loading one runs its code, so it is "
            "not read here; if you trust it, pass the module itself: "
            "kcomplex.analyze(torch.jit.load(path)), or save its weights once with "
            "torch.save(torch.jit.load(path).state_dict(), 'weights.pt')",
    ".onnx": "read an ONNX model's weights with the onnx package and pass them as a dict: "
             "import onnx, onnx.numpy_helper; model = onnx.load(path); "
             "weights = {t.name: onnx.numpy_helper.to_array(t) "
             "for t in model.graph.initializer}; kcomplex.analyze(weights)",
}


class WeightsFormatError(ValueError):
    """A weights file is corrupt, truncated, or holds something other than weights.

    Examples
    --------
    >>> issubclass(WeightsFormatError, ValueError)
    True
    """


@dataclass(frozen=True)
class _Entry:
    """One tensor of a source: known without reading its values."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str  # "float", "numeric" or "other"
    read: Callable[[Any], np.ndarray]  # called with the source's open handle
    # (handle, chunk) -> flat pieces, read without holding the whole tensor; None where
    # the format only reads whole tensors (zip members, torch files, float8).
    read_chunks: Callable[[Any, int], Iterator[np.ndarray]] | None = None


@dataclass(frozen=True)
class _Plan:
    """The tensors of a source, what was skipped, and how to open it for reading."""

    source: str
    entries: list[_Entry]
    skipped: list[str]
    open: Callable[[], AbstractContextManager[Any]] = nullcontext
    # False where names are final: an index's shards lose the prefix each on its own.
    strip_prefix: bool = True


def iter_weights(
    x: Any, *, trainable_only: bool = True, floating_only: bool = True
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, array)`` for every weight tensor of `x`, one at a time.

    The input is checked and its tensor list read (a file's header) before
    this returns, so bad input fails here rather than on the first ``next``.
    A ``.safetensors`` or ``.npz`` file is then read one tensor per step;
    other inputs are already in memory or loaded whole.  See the module
    documentation for names, order and the returned arrays.

    Parameters
    ----------
    x : numpy.ndarray, torch.Tensor, torch.nn.Module, mapping, str or os.PathLike
        An array or tensor, a module, a state dict (or a checkpoint wrapping
        one), or the path of a ``.npy``, ``.npz``, ``.pt``, ``.pth``,
        ``.bin`` or ``.safetensors`` file, or of a sharded checkpoint's index
        (``model.safetensors.index.json``: every shard's tensors, see
        :func:`read_index`).
    trainable_only : bool
        For a module, only parameters with ``requires_grad``.  Other inputs
        carry no such flag, and ignore it.
    floating_only : bool
        Skip integer, bool and complex tensors.

    Returns
    -------
    iterator of (str, numpy.ndarray)

    Raises
    ------
    TypeError
        If `x` is none of the accepted kinds, or a mapping has a non-string key.
    FileNotFoundError
        If the path, or a shard an index names, does not exist.
    ValueError
        If the suffix is unsupported, no tensor is left to yield, or two
        shards of an index hold a tensor of the same name.
    WeightsFormatError
        If the path is not a regular file (a FIFO, a device), the file is
        corrupt or truncated (a header declares more data than it holds), a
        torch file holds pickled objects other than tensors and plain
        containers (they are never unpickled) or is a TorchScript archive, or
        an index is malformed (see :func:`read_index`).
    ModuleNotFoundError
        If the input needs torch and it is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> state = {"fc.weight": np.ones((2, 3), np.float32), "fc.bias": np.zeros(2), "step": 7}
    >>> [(name, w.shape) for name, w in iter_weights(state)]
    [('fc.weight', (2, 3)), ('fc.bias', (2,))]
    """
    plan = _plan(x, trainable_only)
    return _generate(plan, _select(plan, floating_only))


def load_weights(
    x: Any, *, trainable_only: bool = True, floating_only: bool = True
) -> dict[str, np.ndarray]:
    """Every weight tensor of `x` as an ordered ``{name: numpy.ndarray}``.

    The same as ``dict(iter_weights(x, ...))``.  See the module documentation
    for names, order and the returned arrays.

    Parameters
    ----------
    x : numpy.ndarray, torch.Tensor, torch.nn.Module, mapping, str or os.PathLike
        As for :func:`iter_weights`.
    trainable_only, floating_only : bool
        As for :func:`iter_weights`.

    Returns
    -------
    dict of str to numpy.ndarray
        In the order of the weight vector.

    Raises
    ------
    TypeError, FileNotFoundError, ValueError, WeightsFormatError, ModuleNotFoundError
        As for :func:`iter_weights`.

    Examples
    --------
    >>> import numpy as np
    >>> w = load_weights(np.arange(6, dtype=np.float32).reshape(2, 3))
    >>> list(w), w["weights"].dtype
    (['weights'], dtype('float32'))
    >>> ckpt = {"epoch": 3, "model": {"module.fc.weight": np.ones(4), "module.step": 2}}
    >>> list(load_weights(ckpt))
    ['fc.weight']
    """
    return dict(iter_weights(x, trainable_only=trainable_only, floating_only=floating_only))


def weight_shapes(
    x: Any, *, trainable_only: bool = True, floating_only: bool = True
) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors :func:`load_weights` would return.

    ``.safetensors``, ``.npy`` and ``.npz`` files (and such shards of an index)
    are read for their headers only; a torch file is loaded whole.

    Parameters
    ----------
    x : numpy.ndarray, torch.Tensor, torch.nn.Module, mapping, str or os.PathLike
        As for :func:`iter_weights`.
    trainable_only, floating_only : bool
        As for :func:`iter_weights`.

    Returns
    -------
    dict of str to tuple of int
        Same keys, same order as ``load_weights(x, ...)``.

    Raises
    ------
    TypeError, FileNotFoundError, ValueError, WeightsFormatError, ModuleNotFoundError
        As for :func:`iter_weights`.

    Examples
    --------
    >>> import numpy as np
    >>> weight_shapes({"a": np.zeros((2, 5)), "b": np.zeros(3)})
    {'a': (2, 5), 'b': (3,)}
    """
    plan = _plan(x, trainable_only)
    return {e.name: e.shape for e in _select(plan, floating_only)}


def _generate(plan: _Plan, entries: list[_Entry]) -> Iterator[tuple[str, np.ndarray]]:
    with plan.open() as handle:
        for entry in entries:
            yield entry.name, entry.read(handle)


def _select(plan: _Plan, floating_only: bool) -> list[_Entry]:
    """Apply the prefix and dtype rules; raise if nothing is left."""
    entries = _strip_prefix(plan.entries) if plan.strip_prefix else plan.entries
    kept, skipped = [], list(plan.skipped)
    for e in entries:
        if e.kind == "other":
            skipped.append(f"{e.name!r} (dtype {e.dtype}, not numeric)")
        elif floating_only and e.kind != "float":
            skipped.append(f"{e.name!r} (dtype {e.dtype}, not floating: see floating_only)")
        else:
            kept.append(e)
    if not kept:
        if not skipped:
            raise ValueError(f"no weights in {plan.source}: it holds no tensors")
        more = f" and {len(skipped) - _MAX_LISTED} more" if len(skipped) > _MAX_LISTED else ""
        raise ValueError(
            f"no weights in {plan.source}: skipped {', '.join(skipped[:_MAX_LISTED])}{more}"
        )
    return kept


def _strip_prefix(entries: list[_Entry]) -> list[_Entry]:
    """`entries` without the ``"module."`` prefix, when every name has it."""
    if entries and all(
        e.name.startswith(_DDP_PREFIX) and len(e.name) > len(_DDP_PREFIX) for e in entries
    ):
        return [replace(e, name=e.name[len(_DDP_PREFIX) :]) for e in entries]
    return entries


# --- in-memory inputs ----------------------------------------------------------------


def _torch_if_imported() -> Any:
    # A tensor or module can only exist if the caller imported torch, so look it
    # up instead of importing it: the import is slow and torch is optional.
    return sys.modules.get("torch")


def _is_tensor(v: Any) -> bool:
    torch = _torch_if_imported()
    return torch is not None and isinstance(v, torch.Tensor)


def _plan(x: Any, trainable_only: bool) -> _Plan:
    torch = _torch_if_imported()
    if isinstance(x, (str, os.PathLike)):
        return _plan_path(Path(os.fsdecode(os.fspath(x))))
    if isinstance(x, np.ndarray):
        return _Plan("the array", [_array_entry(_SINGLE_NAME, x)], [])
    if torch is not None and isinstance(x, torch.Tensor):
        return _Plan("the tensor", [_tensor_entry(_SINGLE_NAME, x, owned=False)], [])
    if torch is not None and isinstance(x, torch.nn.Module):
        return _plan_module(x, trainable_only)
    if isinstance(x, Mapping):
        return _plan_mapping(x, "the mapping", owned=False)
    raise TypeError(
        f"cannot read weights from a {type(x).__module__}.{type(x).__qualname__}; expected "
        "a numpy.ndarray, a torch.Tensor, a torch.nn.Module, a mapping of names to "
        "arrays or tensors (a state dict), or a path (str or os.PathLike) to a "
        f"{', '.join(SUFFIXES)} file or a sharded checkpoint's index (*{INDEX_SUFFIX})"
    )


def _numpy_kind(dtype: np.dtype) -> str:
    return "float" if dtype.kind == "f" else "numeric" if dtype.kind in "biuc" else "other"


def _array_entry(name: str, arr: np.ndarray) -> _Entry:
    def read(_: Any) -> np.ndarray:
        return _finish(arr, shared=True)

    return _Entry(name, arr.shape, str(arr.dtype), _numpy_kind(arr.dtype), read)


def _tensor_entry(name: str, t: Any, *, owned: bool) -> _Entry:
    kind = "float" if t.is_floating_point() or t.is_quantized else "numeric"
    dtype = str(t.dtype).removeprefix("torch.")
    return _Entry(name, tuple(t.shape), dtype, kind, lambda _: _tensor_to_numpy(t, name, owned))


def _tensor_to_numpy(t: Any, name: str, owned: bool) -> np.ndarray:
    torch = sys.modules["torch"]
    if t.is_meta:
        raise ValueError(f"tensor {name!r} is on the meta device and holds no values")
    source = t
    if t.is_quantized:
        t = t.dequantize()
    elif t.layout != torch.strided:
        t = t.to_dense()
    try:
        arr = to_numpy(t)
    except TypeError as exc:
        raise TypeError(f"tensor {name!r} of dtype {t.dtype} has no NumPy equivalent") from exc
    # Compare addresses rather than re-deriving when to_numpy copies (dtype, device, conj).
    shared = not owned and t is source and arr.ctypes.data == t.data_ptr()
    return _finish(arr, shared=shared)


def _finish(arr: np.ndarray, *, shared: bool) -> np.ndarray:
    """``arr`` C-contiguous in native byte order; read-only if it is still `shared`."""
    arr = np.asarray(arr)  # subclasses (memmap, matrix) become plain arrays
    if not (arr.flags.c_contiguous and arr.dtype.isnative):
        return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
    if shared:
        arr = arr.view()
        arr.flags.writeable = False
    return arr


def frozen_parameters(x: Any, trainable_only: bool = True) -> tuple[int, int]:
    """Parameters and tensors of module ``x`` that reading it with ``trainable_only`` skips.

    Only floating parameters count: the others are never weights to measure.

    Parameters
    ----------
    x : Any
        Anything :func:`load_weights` accepts; only an ``nn.Module`` has frozen parameters.
    trainable_only : bool
        As for :func:`load_weights`; with False nothing is skipped.

    Returns
    -------
    (int, int)
        The number of frozen parameters and of frozen tensors; ``(0, 0)`` for anything
        that is not a module.

    Examples
    --------
    >>> import numpy as np
    >>> frozen_parameters({"w": np.zeros(3)})
    (0, 0)
    """
    # Look torch up rather than import it: a module exists only if torch was imported.
    torch = sys.modules.get("torch")
    if not trainable_only or torch is None or not isinstance(x, torch.nn.Module):
        return 0, 0
    frozen = [p for p in x.parameters()
              if not p.requires_grad and (p.is_floating_point() or p.is_quantized)]
    return sum(p.numel() for p in frozen), len(frozen)


def _plan_module(module: Any, trainable_only: bool) -> _Plan:
    entries, skipped = [], []
    for name, p in module.named_parameters():
        if p.requires_grad or not trainable_only:
            entries.append(_tensor_entry(name, p, owned=False))
        else:
            skipped.append(f"{name!r} (requires_grad=False: see trainable_only)")
    return _Plan(f"the {type(module).__name__} module", entries, skipped)


def _unwrap(mapping: Mapping) -> Mapping:
    while not any(isinstance(v, np.ndarray) or _is_tensor(v) for v in mapping.values()):
        key = next((k for k in _WRAPPER_KEYS if isinstance(mapping.get(k), Mapping)), None)
        if key is None:
            break
        mapping = mapping[key]
    return mapping


def _plan_mapping(mapping: Mapping, source: str, *, owned: bool) -> _Plan:
    entries, skipped = [], []
    for key, v in _unwrap(mapping).items():
        if not isinstance(key, str):
            raise TypeError(
                f"tensor names must be strings; {source} has the key {key!r} "
                f"({type(key).__name__})"
            )
        if isinstance(v, np.ndarray):
            entries.append(_array_entry(key, v))
        elif _is_tensor(v):
            entries.append(_tensor_entry(key, v, owned=owned))
        else:
            skipped.append(f"{key!r} ({type(v).__name__})")
    return _Plan(source, entries, skipped)


# --- files ---------------------------------------------------------------------------


@contextmanager
def _reading(path: Path | str, what: str, errors: tuple[type[BaseException], ...] = ()):
    """Turn a reader's exceptions about bad content into a WeightsFormatError."""
    try:
        yield
    except WeightsFormatError:
        raise
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error, *errors) as exc:
        raise WeightsFormatError(f"{path}: not a readable {what} file: {exc}") from exc


def _regular(path: Path) -> Path:
    """`path` if it names a regular file (links followed), else the reason, with the path:
    a FIFO would block forever and a device such as ``/dev/zero`` never ends."""
    try:
        return regular_file(path, "weights file")
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such weights file", str(path)) from None
    except ValueError as exc:
        raise WeightsFormatError(str(exc)) from None


def _open_regular(path: Path) -> Any:
    """`path` opened for binary reading, if it is a regular file (see :func:`_regular`)."""
    return open(_regular(path), "rb")


def _plan_path(path: Path) -> _Plan:
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "a directory, not a weights file", str(path))
    _regular(path)
    if path.suffix.lower() == INDEX_SUFFIX:
        return _plan_index(path)
    return _plan_file(path)


def _plan_file(path: Path) -> _Plan:
    """The plan of a weights file (not an index: a shard never names further shards)."""
    suffix = path.suffix.lower()
    planner = _PLANNERS.get(suffix)
    if planner is None:
        found = f"suffix {suffix!r}" if suffix else "no suffix"
        hint = f"; {_NOT_READ[suffix]}" if suffix in _NOT_READ else ""
        raise ValueError(
            f"{path}: unsupported file type ({found}); supported: {', '.join(SUFFIXES)}, "
            f"or a sharded checkpoint's index (*{INDEX_SUFFIX}){hint}"
        )
    return planner(path)


def _npy_header(fp: Any, size: int, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from the header of a ``.npy`` stream of `size` bytes
    in all (`fp` at its start), checked to declare no more data than the bytes after it,
    so that no array is allocated for data that is not there."""
    with _reading(where, ".npy"):
        version = np.lib.format.read_magic(fp)
        # Version 3 differs from 2 only in allowing UTF-8 field names of structured
        # dtypes, which are never numeric weights; their dtype is skipped anyway.
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    for dim in shape:
        try:
            check_int(dim, "every dimension", minimum=0)
        except (TypeError, ValueError) as exc:
            raise WeightsFormatError(
                f"{where}: corrupt .npy header, shape {shape}: {exc}") from None
    if not dtype.hasobject:  # object arrays are pickles, refused when read
        declared = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
        present = size - fp.tell()
        if declared > present:
            raise WeightsFormatError(
                f"{where}: the .npy header declares shape {shape} of {dtype} "
                f"({declared} bytes) but only {present} bytes follow it; the file is "
                "truncated or its header is corrupt"
            )
    return shape, fortran, dtype


def _open_npy(path: Path) -> tuple[Any, tuple[int, ...], bool, np.dtype]:
    """`path` opened, positioned after its checked header, with the header's fields."""
    fh = _open_regular(path)
    try:
        shape, fortran, dtype = _npy_header(fh, os.fstat(fh.fileno()).st_size, str(path))
    except BaseException:
        fh.close()
        raise
    return fh, shape, fortran, dtype


def _plan_npy(path: Path) -> _Plan:
    fh, shape, fortran, dtype = _open_npy(path)
    fh.close()

    def read(_: Any) -> np.ndarray:
        # The header is read and checked again: the file may have changed since.
        fh = _open_npy(path)[0]
        with fh, _reading(path, ".npy"):
            fh.seek(0)
            return _finish(np.lib.format.read_array(fh, allow_pickle=False), shared=False)

    def read_chunks(_: Any, chunk: int) -> Iterator[np.ndarray]:
        fh, now_shape, _fortran, now_dtype = _open_npy(path)
        with fh:
            yield from _raw_chunks(fh, path, _SINGLE_NAME, now_dtype, now_shape, fh.tell(),
                                   chunk)

    # A Fortran-ordered array is flattened in C order only once it is whole in memory.
    chunked = None if fortran or dtype.hasobject else read_chunks
    entry = _Entry(_SINGLE_NAME, shape, str(dtype), _numpy_kind(dtype), read, chunked)
    return _Plan(str(path), [entry], [])


@contextmanager
def _open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
    with _open_regular(path) as fh, zipfile.ZipFile(fh) as zf:
        yield zf


def _member_bytes(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The most bytes a member can hold: its stated size, bounded by what its compressed
    bytes (no more than the archive holds) can expand to, so a forged size cannot make
    an array be allocated for data that is not there (a zip bomb)."""
    compressed = min(info.compress_size, os.fstat(zf.fp.fileno()).st_size)
    if info.compress_type == zipfile.ZIP_STORED:
        return min(info.file_size, compressed)
    if info.compress_type == zipfile.ZIP_DEFLATED:
        return min(info.file_size, compressed * _DEFLATE_RATIO)
    # Reading never yields more than the stated size: zipfile stops there.
    return info.file_size


def _member_header(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, fp: Any, path: Path
) -> tuple[tuple[int, ...], bool, np.dtype]:
    return _npy_header(fp, _member_bytes(zf, info), f"{path}: member {info.filename!r}")


def _plan_npz(path: Path) -> _Plan:
    entries, skipped = [], []
    with _reading(path, ".npz"), _open_zip(path) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.endswith(".npy"):
                skipped.append(f"{info.filename!r} (not a .npy member)")
                continue
            name = info.filename.removesuffix(".npy")
            if any(e.name == name for e in entries):
                raise WeightsFormatError(f"{path}: member {info.filename!r} appears twice")
            with zf.open(info) as fp:
                shape, _, dtype = _member_header(zf, info, fp, path)
            read = _npz_reader(path, info)
            entries.append(_Entry(name, shape, str(dtype), _numpy_kind(dtype), read))
    return _Plan(str(path), entries, skipped, open=lambda: _open_zip(path))


def _npz_reader(path: Path, info: zipfile.ZipInfo) -> Callable[[Any], np.ndarray]:
    def read(zf: zipfile.ZipFile) -> np.ndarray:
        with _reading(path, ".npz"), zf.open(info) as fp:
            _member_header(zf, info, fp, path)
            fp.seek(0)
            return _finish(np.lib.format.read_array(fp, allow_pickle=False), shared=False)

    return read


def _import_torch(why: str) -> Any:
    try:
        import torch
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"{why} needs torch, which is not installed (pip install 'kcomplex[torch]')",
            name="torch",
        ) from exc
    return torch


def _torch_load(torch: Any, path: Path) -> Any:
    """``torch.load(weights_only=True)``, memory-mapped where the file allows it (the zip
    format of every torch >= 1.6): a tensor's bytes are read when it is touched, so reading
    one tensor of a large checkpoint (a distributed or streamed task) reads only that one.
    The mapping is private: writes to the arrays never reach the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):  # legacy (non-zip) files cannot be mapped
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def _is_torchscript(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (saved by ``torch.jit.save``): a zip file
    with a ``constants.pkl`` record, the test ``torch.load`` itself makes."""
    with _open_regular(path) as fh:
        try:
            with zipfile.ZipFile(fh) as zf:
                return any(n.rpartition("/")[2] == "constants.pkl" for n in zf.namelist())
        except (zipfile.BadZipFile, ValueError, EOFError):
            return False  # the legacy format, or corrupt: torch.load says which


def _plan_torch(path: Path) -> _Plan:
    torch = _import_torch(f"reading {path}")
    if _is_torchscript(path):
        raise WeightsFormatError(f"{path}: a TorchScript archive, not a state dict; "
                                 f"{_NOT_READ['.jit']}")
    try:
        with _reading(path, "torch", (RuntimeError,)):
            obj = _torch_load(torch, path)
    except pickle.UnpicklingError as exc:
        found = _UNPICKLER_DETAIL.search(str(exc))
        detail = found.group(1).split(". ")[0] if found else str(exc).split("\n")[0]
        raise WeightsFormatError(
            f"{path}: torch.load(weights_only=True) refused the file ({detail}). It is "
            "corrupt, or holds pickled Python objects other than tensors and plain "
            "containers, which are never unpickled because that can run arbitrary code. "
            "Save a state dict instead: torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(obj, torch.Tensor):
        return _Plan(str(path), [_tensor_entry(_SINGLE_NAME, obj, owned=True)], [])
    if isinstance(obj, Mapping):
        return _plan_mapping(obj, str(path), owned=True)
    raise WeightsFormatError(
        f"{path}: holds a {type(obj).__name__}; expected a tensor or a mapping of names "
        "to tensors (a state dict)"
    )


def _plan_safetensors(path: Path) -> _Plan:
    from safetensors import SafetensorError, safe_open

    # safe_open checks the header (offsets, sizes, dtypes) and maps the file
    # without reading the data; the offsets we need come from the JSON itself.
    with _reading(path, ".safetensors", (SafetensorError,)):
        with safe_open(_regular(path), framework="numpy"):
            pass
        with _open_regular(path) as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
    header.pop("__metadata__", None)
    data_start = 8 + n
    entries = []
    for name, info in sorted(header.items(), key=lambda kv: (*kv[1]["data_offsets"], kv[0])):
        code = info["dtype"]
        kind = "float" if code.startswith("F") or code == "BF16" else "numeric"
        shape = tuple(info["shape"])
        start, end = (data_start + o for o in info["data_offsets"])
        read = _safetensors_reader(name, code, shape, start, end)
        chunked = (
            _safetensors_chunk_reader(name, code, shape, start, end)
            if code in _ST_NUMPY or code == "BF16" else None
        )
        entries.append(_Entry(name, shape, code, kind, read, chunked))
    return _Plan(str(path), entries, [], open=lambda: _SafetensorsReader(path))


class _SafetensorsReader:
    """The open handles of one pass over a ``.safetensors`` file, opened as needed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stack = ExitStack()
        self._handles: dict[str, Any] = {}

    def __enter__(self) -> _SafetensorsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def handle(self, kind: str) -> Any:
        if kind not in self._handles:
            if kind == "raw":
                handle = _open_regular(self.path)
            else:
                from safetensors import safe_open

                handle = safe_open(_regular(self.path), framework=kind)
            self._handles[kind] = self._stack.enter_context(handle)
        return self._handles[kind]


def _safetensors_reader(
    name: str, code: str, shape: tuple[int, ...], start: int, end: int
) -> Callable[[_SafetensorsReader], np.ndarray]:
    def read(reader: _SafetensorsReader) -> np.ndarray:
        from safetensors import SafetensorError

        with _reading(reader.path, ".safetensors", (SafetensorError,)):
            if code in _ST_NUMPY:
                return _read_raw(reader.handle("raw"), reader.path, name, code, shape, start, end)
            if code == "BF16":
                return _read_bfloat16(reader.handle("raw"), reader.path, name, shape, start, end)
            _import_torch(f"reading tensor {name!r} of dtype {code} from {reader.path}")
            return _tensor_to_numpy(reader.handle("pt").get_tensor(name), name, owned=True)

    return read


def _safetensors_chunk_reader(
    name: str, code: str, shape: tuple[int, ...], start: int, end: int
) -> Callable[[_SafetensorsReader, int], Iterator[np.ndarray]]:
    # bfloat16 is read as uint16 and widened chunk by chunk.
    dtype = np.dtype("<u2" if code == "BF16" else _ST_NUMPY[code])

    def read_chunks(reader: _SafetensorsReader, chunk: int) -> Iterator[np.ndarray]:
        if dtype.itemsize * math.prod(shape) != end - start:
            raise WeightsFormatError(
                f"{reader.path}: tensor {name!r} holds {end - start} bytes for shape "
                f"{shape} of {code}"
            )
        fh = reader.handle("raw")
        for piece in _raw_chunks(fh, reader.path, name, dtype, shape, start, chunk):
            yield _widen_bfloat16(piece) if code == "BF16" else piece

    return read_chunks


def _raw_chunks(
    fh: Any, path: Path, name: str, dtype: np.dtype, shape: tuple[int, ...], start: int,
    chunk: int,
) -> Iterator[np.ndarray]:
    """The C-order elements of a tensor stored raw at byte `start`, `chunk` at a time,
    each read into a fresh array (a memory map would keep every page it touched resident)."""
    n = math.prod(shape)
    for first in range(0, n, chunk):
        piece = np.empty(min(chunk, n - first), dtype=dtype)
        fh.seek(start + first * dtype.itemsize)
        if fh.readinto(memoryview(piece.view(np.uint8))) != piece.nbytes:
            raise WeightsFormatError(f"{path}: tensor {name!r} is truncated")
        yield _finish(piece, shared=False)


def iter_chunks(
    path: str | os.PathLike, name: str, *, chunk: int = 1 << 24
) -> Iterator[np.ndarray]:
    """Yield one tensor of a weights file flattened in C order, `chunk` elements at a time.

    ``.safetensors`` tensors of a NumPy dtype or bfloat16 and C-ordered ``.npy`` arrays
    are read piece by piece, so memory holds one chunk whatever the tensor's size.
    Other tensors (``.npz`` members, torch files, float8, Fortran order) are read whole
    and then cut.  Names, dtypes and values are those of :func:`load_weights` with
    ``floating_only=False``.

    Parameters
    ----------
    path : str or os.PathLike
        A file :func:`load_weights` reads.
    name : str
        The tensor, named as :func:`load_weights` names it.
    chunk : int
        Elements per piece (the last piece may be shorter).

    Returns
    -------
    iterator of numpy.ndarray
        1-D pieces whose concatenation is ``load_weights(path)[name].reshape(-1)``.

    Raises
    ------
    KeyError
        If the file has no tensor `name`.
    ValueError
        If `chunk` is not positive.
    FileNotFoundError, WeightsFormatError, ModuleNotFoundError
        As for :func:`iter_weights`.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npy")
    >>> np.save(path, np.arange(10, dtype=np.float32))
    >>> [p.tolist() for p in iter_chunks(path, "weights", chunk=4)]
    [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0]]
    """
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of elements, got {chunk}")
    path = Path(os.fsdecode(os.fspath(path)))
    plan = _plan_path(path)
    entry = next((e for e in _select(plan, False) if e.name == name), None)
    if entry is None:
        raise KeyError(f"{path}: no tensor {name!r}")
    return _chunks(plan, entry, chunk)


def _chunks(plan: _Plan, entry: _Entry, chunk: int) -> Iterator[np.ndarray]:
    with plan.open() as handle:
        if entry.read_chunks is not None:
            yield from entry.read_chunks(handle, chunk)
            return
        flat = entry.read(handle).reshape(-1)
        for first in range(0, flat.size, chunk):
            yield flat[first : first + chunk]


def _read_raw(
    fh: Any, path: Path, name: str, code: str, shape: tuple[int, ...], start: int, end: int
) -> np.ndarray:
    # Read into a fresh array rather than through safe_open's memory map: the mapped
    # pages would count once more in the resident memory of a checkpoint-sized read.
    dtype = np.dtype(_ST_NUMPY[code])
    if math.prod(shape) * dtype.itemsize != end - start:  # checked before allocating
        raise WeightsFormatError(
            f"{path}: tensor {name!r} holds {end - start} bytes for shape {shape} of {code}"
        )
    arr = np.empty(shape, dtype=dtype)
    fh.seek(start)
    if fh.readinto(memoryview(arr.reshape(-1).view(np.uint8))) != arr.nbytes:
        raise WeightsFormatError(f"{path}: tensor {name!r} is truncated")
    return _finish(arr, shared=False)


def _read_bfloat16(
    fh: Any, path: Path, name: str, shape: tuple[int, ...], start: int, end: int
) -> np.ndarray:
    # bfloat16 is the top half of a float32, so widening is a shift: exact, and
    # no torch needed, which safe_open's "pt" framework would be.
    fh.seek(start)
    raw = fh.read(end - start)
    if len(raw) != end - start:
        raise WeightsFormatError(f"{path}: tensor {name!r} is truncated")
    return _widen_bfloat16(np.frombuffer(raw, dtype="<u2")).reshape(shape)


def _widen_bfloat16(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (``uint16``): the top half of a float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


# --- sharded checkpoints ---------------------------------------------------------------


def read_index(index: str | os.PathLike) -> list[Path]:
    """The shard files of a sharded checkpoint's index, in the order they are read.

    An index (``model.safetensors.index.json``, ``pytorch_model.bin.index.json``) is a
    JSON object whose ``weight_map`` maps tensor names to shard files.  The shards come
    in the order of their file names (``model-00001-of-00003...``), the order in which
    :func:`load_weights` and :func:`kcomplex.distributed.analyze` concatenate them.
    An index is data, often downloaded, so it may not send the reader elsewhere: every
    shard must be named relative to the index's folder, without ``..`` (links there are
    followed).

    Parameters
    ----------
    index : str or os.PathLike
        The index file.

    Returns
    -------
    list of pathlib.Path
        Each shard once, as ``index``'s folder joined with the name the index gives.

    Raises
    ------
    FileNotFoundError
        If the index or a shard it names does not exist (its path is named).
    WeightsFormatError
        If the index is not a regular file, too large (over 64 MiB), not JSON, has no
        non-empty ``weight_map`` object, maps a tensor to something other than a file
        name, names a shard outside its folder or another index, or a shard lacks a
        tensor the index maps to it; also for a shard :func:`load_weights` cannot read.
    ValueError
        If a shard has an unsupported suffix.

    Examples
    --------
    >>> import json, os, tempfile
    >>> import numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> np.savez(os.path.join(folder, "part-2.npz"), x=np.ones(3))
    >>> np.savez(os.path.join(folder, "part-1.npz"), y=np.zeros(2))
    >>> index = os.path.join(folder, "model.index.json")
    >>> with open(index, "w") as fh:
    ...     json.dump({"weight_map": {"x": "part-2.npz", "y": "part-1.npz"}}, fh)
    >>> [p.name for p in read_index(index)]
    ['part-1.npz', 'part-2.npz']
    >>> list(load_weights(index))
    ['y', 'x']
    """
    return [shard for shard, _ in _index_plans(Path(os.fsdecode(os.fspath(index))))]


def _weight_map(index: Path) -> dict[str, str]:
    """The ``weight_map`` of an index: tensor names to shard names."""
    try:
        regular_file(index, "index")
    except ValueError as exc:
        raise WeightsFormatError(str(exc)) from None
    with open(index, "rb") as fh:
        # An index lists names only: anything this large is not one, and is not read.
        raw = fh.read(_MAX_INDEX_BYTES + 1)
    if len(raw) > _MAX_INDEX_BYTES:
        raise WeightsFormatError(
            f"{index}: larger than {_MAX_INDEX_BYTES >> 20} MiB, too large for a "
            "safetensors index (a JSON object with a 'weight_map' of tensor names to shard "
            "files)"
        )
    try:
        content = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # RecursionError: nesting deeper than the parser's stack, never a real index.
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise WeightsFormatError(f"{index}: not a readable JSON file: {detail}") from None
    weight_map = content.get("weight_map") if isinstance(content, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise WeightsFormatError(
            f"{index}: not a safetensors index: expected a JSON object with a non-empty "
            "'weight_map' object of tensor names to shard files"
        )
    for name, file in weight_map.items():
        if not isinstance(file, str):
            raise WeightsFormatError(
                f"{index}: the shard of tensor {name!r} must be a file name (a string), got "
                f"{json.dumps(file)[:80]}"
            )
    return weight_map


def _shard_path(index: Path, file: str) -> Path:
    """Shard `file` of `index`, which must name a weights file in the index's folder (or
    below it): an index is data, often downloaded, and may not send the reader elsewhere."""
    name = PurePath(file)
    if not name.parts or name.is_absolute() or name.anchor or ".." in name.parts:
        raise WeightsFormatError(
            f"{index}: shard {file!r} is not inside the index's folder {index.parent}; an "
            "index may only name files in its own folder (to analyze files elsewhere, pass "
            "their paths as a list instead of the index)"
        )
    if name.suffix.lower() == INDEX_SUFFIX:
        raise WeightsFormatError(f"{index}: shard {file!r} is an index, not a weights file")
    return index.parent / name


def _index_plans(index: Path) -> list[tuple[Path, _Plan]]:
    """Each shard of `index` with its plan, in the order of the shards' names, each
    checked to hold the tensors the index maps to it."""
    weight_map = _weight_map(index)
    plans = []
    for file in sorted(set(weight_map.values())):
        shard = _shard_path(index, file)
        if not shard.exists():
            raise FileNotFoundError(
                errno.ENOENT, f"shard {file!r} of {index} is missing", str(shard)
            )
        plan = _plan_file(shard)
        held = {e.name for e in plan.entries}
        missing = [n for n, f in weight_map.items() if f == file and n not in held]
        if missing:
            raise WeightsFormatError(
                f"{shard}: has no tensor {missing[0]!r}, which {index.name} maps to it"
                + (f" ({len(missing) - 1} more missing)" if len(missing) > 1 else "")
            )
        plans.append((shard, plan))
    return plans


def _plan_index(index: Path) -> _Plan:
    """Every shard's tensors, one shard after the other: each shard named as when it is
    read alone (its ``"module."`` prefix removed on its own), as
    :func:`kcomplex.distributed.analyze` names the tensors of an index."""
    plans = _index_plans(index)
    entries, skipped = [], []
    where: dict[str, Path] = {}
    for i, (shard, plan) in enumerate(plans):
        for e in _strip_prefix(plan.entries):
            if e.name in where:
                raise ValueError(f"tensor {e.name!r} is in both {where[e.name]} and {shard}")
            where[e.name] = shard
            entries.append(_shard_entry(e, i))
        skipped += [f"{s} in {shard.name}" for s in plan.skipped]
    plan_list = [plan for _, plan in plans]
    return _Plan(str(index), entries, skipped, open=lambda: _ShardHandles(plan_list),
                 strip_prefix=False)


def _shard_entry(entry: _Entry, shard: int) -> _Entry:
    """`entry` of the `shard`-th shard, read with the index's :class:`_ShardHandles`."""
    chunked = entry.read_chunks
    return replace(
        entry,
        read=lambda handles: entry.read(handles.handle(shard)),
        read_chunks=None if chunked is None
        else lambda handles, chunk: chunked(handles.handle(shard), chunk),
    )


class _ShardHandles:
    """The open handle of one shard at a time, in one pass over an index's tensors: they
    are read shard after shard, so each shard is opened once and closed when done."""

    def __init__(self, plans: list[_Plan]) -> None:
        self._plans = plans
        self._stack = ExitStack()
        self._current: int | None = None
        self._handle: Any = None

    def __enter__(self) -> _ShardHandles:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def handle(self, shard: int) -> Any:
        if shard != self._current:
            self._stack.close()
            self._current = None  # not open, should the next open fail
            self._handle = self._stack.enter_context(self._plans[shard].open())
            self._current = shard
        return self._handle


_PLANNERS: dict[str, Callable[[Path], _Plan]] = {
    ".npy": _plan_npy,
    ".npz": _plan_npz,
    ".pt": _plan_torch,
    ".pth": _plan_torch,
    ".bin": _plan_torch,
    ".safetensors": _plan_safetensors,
}

#: File suffixes that :func:`load_weights` reads (case-insensitive).
SUFFIXES: tuple[str, ...] = tuple(_PLANNERS)
