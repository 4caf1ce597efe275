"""Argument checks shared by the public functions of :mod:`semcom.channels` and
:mod:`semcom.diffusion`, so that one kind of bad input gives one exception type, naming the
argument, wherever it is given:

- what is not a number at all (a string, None, a ragged list) where numbers go: ``TypeError``;
- numbers of the wrong kind or value (a bool, a complex number, a float where an integer goes,
  NaN, out of range) in a Python number, a list, a NumPy array or a tensor alike:
  ``ValueError``.
"""

from __future__ import annotations

import numbers
import reprlib

import numpy as np
import torch
from torch import Tensor


def shown(x: object) -> str:
    """``x``'s type and a short repr for a message: ``"str '0'"``, ``"Tensor of torch.bool
    values, shape (2,)"``."""
    if isinstance(x, Tensor | np.ndarray):
        return f"{type(x).__name__} of {x.dtype} values, shape {tuple(x.shape)}"
    return f"{type(x).__name__} {reprlib.repr(x)}"


def _wrong_kind(x: object) -> str | None:
    """``"bool"`` or ``"complex number"`` when ``x`` (a number, a tensor, an array or a
    nested list / tuple of them) is or holds such, else None."""
    if isinstance(x, Tensor):  # first: the common case, a dtype look-up (~1 us)
        if x.dtype == torch.bool:
            return "bool"
        return "complex number" if x.is_complex() else None
    if isinstance(x, bool | np.bool_):
        return "bool"
    if isinstance(x, complex | np.complexfloating):
        return "complex number"
    if isinstance(x, np.ndarray):
        if x.dtype == np.bool_:
            return "bool"
        return "complex number" if np.iscomplexobj(x) else None
    if isinstance(x, list | tuple):
        for item in x:
            kind = _wrong_kind(item)
            if kind:
                return kind
    return None


def _holds_text(x: object) -> bool:
    """Whether ``x`` is or holds (in nested lists / tuples) a str, bytes or bytearray:
    ``torch.as_tensor`` reads ``[b"1"]`` and ``bytearray(b"1")`` as their byte values (49)."""
    if isinstance(x, str | bytes | bytearray | memoryview):
        return True
    return isinstance(x, list | tuple) and any(_holds_text(item) for item in x)


def real_tensor(
    x: object,
    name: str,
    what: str = "numbers",
    forms: str = "a float, a list or a tensor",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = torch.float64,
) -> Tensor:
    """``x`` (a number, a list of numbers, an array or a tensor) as a ``dtype`` tensor (None:
    the dtype ``torch.as_tensor`` infers) on ``device`` (``x``'s own for a tensor when None),
    as ``torch.as_tensor`` converts it.

    ``ValueError`` for bools or complex numbers anywhere in it, or an integer too large for
    ``dtype`` (``x`` is called ``name``, its values ``what``, e.g. ``"numbers of dB"``);
    ``TypeError`` for what is not numbers, text and bytes included (``forms``: what to give
    instead)."""
    kind = _wrong_kind(x)
    if kind:
        raise ValueError(f"{name} must hold real {what}, not {kind}s: got {shown(x)}")
    if not isinstance(x, Tensor) and _holds_text(x):
        raise TypeError(f"{name} must be {what} ({forms}), got {shown(x)}")
    try:
        t = torch.as_tensor(x, dtype=dtype)
    except OverflowError as e:  # a Python int past the dtype's range, e.g. 10**400
        raise ValueError(f"{name} must hold {what} within {dtype}'s range, got {shown(x)}") from e
    except (TypeError, ValueError, RuntimeError) as e:  # a str, None, a ragged list, a dict
        raise TypeError(f"{name} must be {what} ({forms}), got {shown(x)}") from e
    return t if device is None else t.to(device)


def check_count(n: object, name: str) -> int:
    """``n`` as an int if it is an integer >= 1 (a NumPy integer too): ``ValueError`` naming
    ``name`` for a bool, a float, a complex number or one < 1, ``TypeError`` for what is not a
    number (a string, None). A one-element tensor counts as its value (as
    :func:`check_real` takes a one-element tensor)."""
    if isinstance(n, Tensor) and n.numel() == 1:
        n = n.item()  # an int, or a float / bool / complex refused below
    if not isinstance(n, numbers.Number | np.generic) or isinstance(n, np.flexible):
        raise TypeError(f"{name} must be an integer >= 1, got {shown(n)}")
    if isinstance(n, bool | np.bool_) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    return int(n)


def check_real(x: object, name: str) -> None:
    """``ValueError`` naming ``name`` unless ``x`` is one real number (a Python or NumPy
    number, or a one-element real tensor): for a bool, a complex number or a tensor of several
    values; ``TypeError`` for what is not a number (a string, None). NaN and the range are the
    caller's to check."""
    kind = _wrong_kind(x)
    if kind:
        raise ValueError(f"{name} must be a real number, not a {kind}: got {shown(x)}")
    if isinstance(x, np.ndarray) and x.dtype.kind in "iuf":
        x = torch.from_numpy(x)
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise ValueError(f"{name} must be one real number, got {shown(x)}")
    elif not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {shown(x)}")
