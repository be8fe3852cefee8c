"""Files: atomic writes that honour the user's umask, and reading only regular files.

Every file the project writes (reports, figures, checkpoints, caches, ``.momos`` streams)
goes through :func:`write_atomic`, and every path it reads weights or streams from passes
:func:`regular_file` first, so a FIFO, a device or a directory is refused with a message
instead of blocking forever or reading without end.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from pathlib import Path

__all__ = ["regular_file", "umask", "write_atomic"]

_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process's current file-creation mask (read without changing it for long).

    Returns
    -------
    int
        The mask, e.g. ``0o022``.

    Examples
    --------
    >>> 0 <= umask() <= 0o777
    True
    """
    # Linux exposes the mask read-only; elsewhere set-and-restore is the only way to read it.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: bytes | str, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically, with the permissions the umask gives.

    The bytes go to a temporary file in the same folder, are flushed (and fsynced), get
    mode ``0o666 & ~umask`` like any newly created file (``mkstemp`` would leave 0600),
    and replace ``path`` in one ``os.replace``. A crash at any point leaves either the old
    file or the new one, never a mixture; on failure the temporary file is removed.

    Parameters
    ----------
    path : str or PathLike
        The file to write; its folder must exist.
    data : bytes or str
        The content; a ``str`` is written as UTF-8.
    fsync : bool
        Flush the file to the disk before the rename (default).

    Raises
    ------
    OSError
        If the folder is missing or not writable.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> write_atomic(p, "hello")
    >>> p.read_text()
    'hello'
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~umask())
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a :class:`~pathlib.Path` if it names a regular file (links followed).

    Parameters
    ----------
    path : str or PathLike
        The file to be read.
    what : str
        What the file is, for the message (``"weights file"``, ``"stream"``).

    Returns
    -------
    Path

    Raises
    ------
    FileNotFoundError
        If nothing is there.
    ValueError
        If it is a directory, a FIFO, a socket or a device: only regular files are read,
        since the others can block forever (a FIFO) or never end (``/dev/zero``).

    Examples
    --------
    >>> regular_file("/dev/null")
    Traceback (most recent call last):
    ...
    ValueError: /dev/null: not a regular file (a character device); only regular files are read
    """
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no such {what}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{p}: not a regular file ({_kind(mode)}); only regular files are read")
    return p


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a plain file"
