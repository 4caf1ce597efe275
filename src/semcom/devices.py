"""The ``--device`` option, checked the same way by every command (eval, transmit, bench, train)."""

from __future__ import annotations

import torch


def parse_device(name: str) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:1``, ...) as a :class:`torch.device`.

    Raises :class:`ValueError` (reported as one line by the CLIs) for a misspelt name, or a
    device this machine does not have (CUDA, an index past the last GPU, mps, xpu, ...; ``meta``
    computes nothing), before any work is done.
    """
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"invalid --device {name!r}: {e}") from e
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return dev
    backend = torch.backends.mps if dev.type == "mps" else getattr(torch, dev.type, None)
    available = getattr(backend, "is_available", None)
    if dev.type == "meta" or available is None or not available():
        raise ValueError(f"--device {name}: no such device on this machine (use cpu or cuda)")
    return dev


__all__ = ["parse_device"]
