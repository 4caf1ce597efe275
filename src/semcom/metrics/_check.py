"""Input validation shared by the metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def check_pair(x: Tensor, y: Tensor, name: str, channels: int | None = None) -> None:
    """Raise ``ValueError`` unless ``x`` and ``y`` are float [B,C,H,W] tensors of equal shape."""
    for arg, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: {arg} must be a torch.Tensor, got {type(t).__name__}")
    if x.shape != y.shape:
        raise ValueError(
            f"{name}: x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.ndim != 4:
        raise ValueError(f"{name}: expected [B,C,H,W] images, got shape {tuple(x.shape)}")
    if not (torch.is_floating_point(x) and torch.is_floating_point(y)):
        raise ValueError(f"{name}: expected float images in [0,1], got {x.dtype} and {y.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels, got shape {tuple(x.shape)}")
    if x.device != y.device:
        raise ValueError(f"{name}: x and y are on different devices ({x.device}, {y.device})")
