"""PSNR on 8-bit quantised images.

Convention (pinned by ``tests/test_metrics.py``):

* inputs are float images ``[B,C,H,W]`` nominally in ``[0, data_range]``;
* each image is first quantised to 8 bits, ``q = round(clamp(x / data_range, 0, 1) * 255)``,
  exactly as if it had been saved as a PNG;
* the MSE is taken **per image** over all ``C*H*W`` values of the 8-bit images and
  ``PSNR = 10 log10(255^2 / MSE)``; a data set's PSNR is the mean of the per-image values
  (not the PSNR of the mean MSE);
* PSNR is capped at ``max_db`` (default :data:`PSNR_MAX_DB` = 100 dB): identical 8-bit images
  (MSE = 0) give exactly ``max_db`` instead of ``+inf``, so averages stay finite. A non-zero
  8-bit MSE can only exceed 100 dB for images with more than 1e10 / 255^2 ~ 153,800 values
  (~226x226 RGB), e.g. one level off in one value of a ``3x512x768`` image is 108.9 dB; those
  are clipped too.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._check import check_pair, shared_reference

PSNR_MAX_DB = 100.0


def quantize_8bit(x: Tensor, data_range: float = 1.0) -> Tensor:
    """Quantise float images in ``[0, data_range]`` to 8-bit levels.

    Returns ``round(clamp(x / data_range, 0, 1) * 255)`` as an ``int64`` tensor of the
    same shape, values in ``0..255`` (round half to even, like ``torch.round``).
    """
    if not torch.is_floating_point(x):
        raise ValueError(f"quantize_8bit: expected a float tensor, got {x.dtype}")
    return _levels(x, data_range).to(torch.int64)


def _levels(x: Tensor, data_range: float) -> Tensor:
    """:func:`quantize_8bit`'s levels as float32 (whole numbers 0..255)."""
    return torch.round((x.float() / data_range).clamp(0.0, 1.0) * 255.0)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0, max_db: float = PSNR_MAX_DB) -> Tensor:
    """Per-image PSNR in dB of 8-bit quantised images (see module docstring).

    Args:
        x, y: float images ``[B,C,H,W]`` (normally ``[B,3,H,W]``) in ``[0, data_range]``.
        data_range: value of full white in the inputs (1.0 for ``[0,1]`` images).
        max_db: cap applied to the result (identical images give exactly ``max_db``).

    Returns:
        float32 tensor ``[B]``.
    """
    check_pair(x, y, "psnr", data_range=data_range)
    # the 8-bit levels of quantize_8bit as float32 (integers, as are their differences and
    # squares up to 255**2: exact), the reference's once when it is expanded over the batch
    # (detached: a score, not a loss; the int64 levels before cut the graph too)
    qx = _levels((x[:1] if shared_reference(x) else x).detach(), data_range)
    qy = _levels(y.detach(), data_range)
    n = qy[0].numel()
    # summed in float64: integers below 2**53, so the exact sum of squared errors
    sse = (qx - qy).square().flatten(1).sum(1, dtype=torch.float64)
    mse = sse.cpu() / n  # float64 on CPU: exact and backend-independent
    val = 10.0 * torch.log10(255.0**2 / mse)  # +inf where mse == 0
    return val.clamp(max=max_db).to(device=x.device, dtype=torch.float32)
