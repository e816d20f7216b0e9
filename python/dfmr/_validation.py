"""Argument checks shared by the package: integer arguments and JSON's non-finite constants."""

from __future__ import annotations

import numbers

__all__ = ["check_int", "reject_json_constant"]


def check_int(value: object, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python int, if it is an integer (not a bool) in ``[low, high]``.

    Parameters
    ----------
    value : object
        The argument to check; any ``numbers.Integral`` (Python or NumPy integer) except bool.
    name : str
        The argument's name, for the message.
    low, high : int, optional
        Inclusive bounds; ``None`` leaves that side open.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        Naming the argument, the allowed range and the value given.
    """
    # bool is an Integral, but True as a count is almost always a mistake (a flag in the wrong place).
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if (low is None or value >= low) and (high is None or value <= high):
            return int(value)
    if low is not None and high is not None:
        allowed = f"an integer between {low} and {high}"
    elif low == 0:
        allowed = "a non-negative integer"
    elif low == 1:
        allowed = "a positive integer"
    elif low is not None:
        allowed = f"an integer >= {low}"
    elif high is not None:
        allowed = f"an integer <= {high}"
    else:
        allowed = "an integer"
    raise ValueError(f"{name} must be {allowed}, got {value!r}.")


def reject_json_constant(name: str) -> float:
    """``parse_constant`` hook of ``json.loads``: NaN and infinities are not valid parameters."""
    from .params import InvalidMixtureError  # here, not at the top: params imports this module

    raise InvalidMixtureError(f"non-finite constant {name} in JSON.")
