"""The ``--device`` option, checked the same way by every command (eval, transmit, bench, train)."""

from __future__ import annotations

import torch


def parse_device(name: str) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:1``, ...) as a :class:`torch.device`.

    Raises :class:`ValueError` (reported as one line by the CLIs) for a misspelt name or a CUDA
    device on a machine without one.
    """
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"invalid --device {name!r}: {e}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but no CUDA device is available")
    return dev


__all__ = ["parse_device"]
