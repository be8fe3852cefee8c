"""Checks of option values shared by kcomplex and momos: one message style everywhere.

Integers are integers: ``bool`` is refused, and so are floats, even integral ones
(``2.0``), since silently truncating ``1.7`` to 1 hides a caller's mistake. Checks run
before anything is computed or cached, so a bad argument never leaves state behind.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any

__all__ = ["check_choice", "check_int", "check_real", "integer_in", "is_int", "lookup"]


def is_int(value: Any) -> bool:
    """True for Python and NumPy integers, False for ``bool`` and everything else.

    Examples
    --------
    >>> is_int(3), is_int(True), is_int(3.0)
    (True, False, False)
    """
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_int(value: Any, name: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``value`` as a Python ``int`` if it is an integer within the bounds.

    Parameters
    ----------
    value : Any
        The argument.
    name : str
        Its name, for the message.
    minimum, maximum : int, optional
        Inclusive bounds.

    Returns
    -------
    int

    Raises
    ------
    TypeError
        If ``value`` is not an integer (``bool`` and ``2.0`` are not).
    ValueError
        If it lies outside the bounds.

    Examples
    --------
    >>> check_int(4, "n_symbols", minimum=2)
    4
    >>> check_int(2.0, "n_symbols")
    Traceback (most recent call last):
    ...
    TypeError: n_symbols must be an integer, got 2.0 (float)
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an integer {_range(minimum, maximum)}, got {value}")
    return value


def check_real(value: Any, name: str, *, minimum: float | None = None,
               maximum: float | None = None) -> float:
    """``value`` as a finite ``float`` within the inclusive bounds (``bool`` refused).

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If it is not finite or lies outside the bounds.

    Examples
    --------
    >>> check_real(0.5, "capacity", minimum=0, maximum=1)
    0.5
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise ValueError(f"{name} must be a number {_range(minimum, maximum)}, got {value}")
    return value


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``.

    Raises
    ------
    ValueError
        Naming the valid choices.

    Examples
    --------
    >>> check_choice("drop", "nonfinite", ("raise", "drop"))
    'drop'
    """
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # unhashable or uncomparable values are simply not choices
        ok = False
    if not ok:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {valid}; got {value!r}")
    return value


def integer_in(x: Any, lo: int, hi: float, what: str) -> int:
    """``x`` as an ``int`` if it is an integer in ``[lo, hi]`` (``hi`` may be ``math.inf``).

    The MDL and bit-stream codes' check: unlike :func:`check_int`, a non-integer is a
    ``ValueError`` too, since for them it is one more value out of the code's domain.

    Raises
    ------
    ValueError
        If ``x`` is not an integer (``bool`` is not) or lies outside the bounds.

    Examples
    --------
    >>> integer_in(3, 1, math.inf, "n")
    3
    >>> integer_in(0, 1, 8, "width")
    Traceback (most recent call last):
    ...
    ValueError: width must be an integer in [1, 8], got 0
    """
    if isinstance(x, bool) or not isinstance(x, Integral) or not lo <= x <= hi:
        bounds = f">= {lo}" if hi == math.inf else f"in [{lo}, {hi}]"
        raise ValueError(f"{what} must be an integer {bounds}, got {x!r}")
    return int(x)


def lookup(registry: Mapping[str, Any], name: Any, what: str) -> Any:
    """``registry[name]``, or a ``ValueError`` listing the valid names.

    Examples
    --------
    >>> lookup({"gamma": 1}, "gamma", "Elias code")
    1
    """
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; valid: {', '.join(map(repr, registry))}")
    return registry[name]


def _range(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"in [{minimum}, {maximum}]"
    if minimum is not None:
        return f">= {minimum}"
    return f"<= {maximum}"
