"""Input validation shared by the metrics."""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: how far (as a fraction of the data range) values may stray outside it: a decoder's
#: overshoot is scored as its 8-bit (clamped) version; 0..255 or [-1, 1] images are refused
RANGE_TOLERANCE = 0.1


def check_pair(
    x: Tensor, y: Tensor, name: str, channels: int | None = None, data_range: float = 1.0
) -> None:
    """Raise ``ValueError`` unless ``x`` and ``y`` are float [B,C,H,W] tensors of equal shape
    with finite values in ``[0, data_range]`` give or take :data:`RANGE_TOLERANCE` (8-bit
    images not divided by 255, [-1, 1] images and NaN would give silently wrong scores)."""
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
    for arg, t in (("x", x), ("y", y)):
        t = t[:1] if shared_reference(t) else t  # one image expanded: checked once
        check_value_range(t, f"{name}: {arg}", data_range, RANGE_TOLERANCE * data_range)


def shared_reference(x: Tensor) -> bool:
    """Whether ``x`` [B, ...] is one image expanded over its batch (batch stride 0, as an SNR
    sweep sends one reference at every SNR): its per-image work (features, local statistics)
    is then done once and broadcast."""
    return x.dim() > 0 and x.shape[0] > 1 and x.stride(0) == 0


def check_value_range(t: Tensor, what: str, high: float = 1.0, tolerance: float = 0.0) -> None:
    """Raise ``ValueError`` naming ``what`` if image tensor ``t`` holds NaN / inf or values
    outside ``[-tolerance, high + tolerance]`` (values far above ``high``: the hint to divide
    8-bit images by 255). Shared by the metrics and :func:`semcom.link.check_images`."""
    if t.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(t.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{what} holds NaN or inf values")
    if lo < -tolerance or hi > high + tolerance:
        hint = " (8-bit images: divide by 255)" if hi > 2 * high else ""
        raise ValueError(
            f"{what} has values in [{lo:.4g}, {hi:.4g}], expected images in [0, {high:g}]{hint}"
        )
