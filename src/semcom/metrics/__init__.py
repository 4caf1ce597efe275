"""Image quality metrics in plain PyTorch (no torchvision).

Every metric takes float images ``x, y``: ``[B,3,H,W]`` in ``[0,1]`` and returns one value per
image, ``[B]``. Data-set figures are the mean of the per-image values (README "Conventions").

=============  ==========================================================  ==============
name           definition                                                  better
=============  ==========================================================  ==============
``psnr``       PSNR in dB on the 8-bit quantised images, capped at 100 dB  higher
``ssim``       SSIM (Gaussian 11x11, sigma 1.5), channel mean              higher
``ms_ssim``    MS-SSIM, 5 scales (fewer for small images, see ``ssim``)    higher
``lpips``      LPIPS v0.1, AlexNet (inputs mapped to [-1,1] internally)    lower
``lpips_vgg``  LPIPS v0.1, VGG16                                           lower
``dists``      DISTS (Ding et al. 2020)                                    lower
=============  ==========================================================  ==============
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import torch
from torch import Tensor

from ..names import HIGHER_IS_BETTER, METRICS, in_db
from ._check import check_pair, check_value_range
from .psnr import PSNR_MAX_DB, psnr, quantize_8bit
from .ssim import ms_ssim, ms_ssim_levels, ssim, ssim_and_ms_ssim


@cache
def _network(name: str, device: str) -> torch.nn.Module:
    """Frozen metric network ``name`` on ``device``, built once per process."""
    if name == "lpips":
        from .lpips import LPIPS

        return LPIPS("alex").to(device)
    if name == "lpips_vgg":
        from .lpips import LPIPS

        return LPIPS("vgg").to(device)
    if name == "dists":
        from .dists import DISTS

        return DISTS().to(device)
    raise KeyError(name)


def get_metric(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The metric function ``(x, y) -> [B]`` called ``name`` (see :data:`METRICS`)."""
    if name == "psnr":
        return psnr
    if name == "ssim":
        return ssim
    if name == "ms_ssim":
        return ms_ssim
    if name in ("lpips", "lpips_vgg", "dists"):

        def fn(x: Tensor, y: Tensor) -> Tensor:
            with torch.no_grad():
                return _network(name, str(x.device))(x, y)

        return fn
    raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")


#: how far outside [0, 1] :func:`compute_metrics` lets a reconstruction stray before clamping it
RECONSTRUCTION_SLACK = 0.5


def compute_metrics(
    x: Tensor, y: Tensor, names: Sequence[str] | str = ("psnr",)
) -> dict[str, Tensor]:
    """Compute several metrics between references ``x`` and reconstructions ``y``.

    Args:
        x, y: float images ``[B,3,H,W]`` in ``[0,1]`` (``y`` is clamped to ``[0,1]`` first,
            after a check that it strays at most :data:`RECONSTRUCTION_SLACK` outside: 0..255
            or [-1, 1] images raise ``ValueError``, as does any NaN).
        names: metric names from :data:`METRICS` (or one name).

    Returns:
        ``{name: tensor [B]}`` on the CPU, float64.
    """
    if isinstance(names, str):  # one name, not its letters
        names = [names]
    fns = {n: get_metric(n) for n in names}  # validate all names before computing anything
    # a decoder's overshoot is clamped, but 0..255 or [-1, 1] images are refused first (the
    # clamp would hide them): a reconstruction may stray RECONSTRUCTION_SLACK outside [0, 1]
    if isinstance(y, Tensor):
        check_value_range(y, "compute_metrics: y", 1.0, RECONSTRUCTION_SLACK)
    y = y.clamp(0.0, 1.0) if isinstance(y, Tensor) and y.is_floating_point() else y
    check_pair(x, y, "compute_metrics")
    out = {}
    if "ssim" in fns and "ms_ssim" in fns:  # SSIM is MS-SSIM's first scale: computed once
        out["ssim"], out["ms_ssim"] = ssim_and_ms_ssim(x, y)
    out.update({n: fn(x, y) for n, fn in fns.items() if n not in out})
    return {n: out[n].detach().to("cpu", torch.float64) for n in fns}


__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "PSNR_MAX_DB",
    "compute_metrics",
    "get_metric",
    "in_db",
    "ms_ssim",
    "ms_ssim_levels",
    "psnr",
    "quantize_8bit",
    "ssim",
]
