"""The ``momos`` console script's entry point.

The base install ships the script, but ``import momos`` needs torch (the ``[momos]``
extra). The package raises a one-line ``ModuleNotFoundError`` then; this module lives
outside it, so that it can still run and print that line instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``momos``'s command line, or say which extra to install when torch is missing.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status: 1 when torch is missing, else that of :func:`momos.cli.main`.
    """
    try:
        from momos.cli import main as momos_main
    except ModuleNotFoundError as err:
        if err.name != "torch":
            raise
        print(f"momos: error: {err}", file=sys.stderr)
        return 1
    return momos_main(argv)
