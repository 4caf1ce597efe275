"""SSIM and MS-SSIM in plain PyTorch.

Both follow the reference implementations (scikit-image ``structural_similarity`` with
``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` and ``pytorch_msssim``):

* Gaussian window of 11 taps, sigma 1.5 (separable, normalised to sum 1);
* ``K1 = 0.01``, ``K2 = 0.03``, constants ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2`` with
  ``L = data_range``;
* "valid" filtering: only window positions fully inside the image are used (this equals
  scikit-image's filtered map cropped by 5 pixels on each side);
* statistics per channel; the per-channel means are averaged over channels -> one value per image.

MS-SSIM: weights ``[0.0448, 0.2856, 0.3001, 0.2363, 0.1333]``; between scales both images are
average-pooled 2x2 (stride 2, with one pixel of zero padding on a side of odd length, as in
``pytorch_msssim``); the contrast-structure term ``cs`` is used at every scale but the last and the
full SSIM at the last; negative ``cs``/SSIM values are clamped to 0 (ReLU) before the power; the
product is taken per channel and then averaged over channels.

Small-image rule (deterministic, depends only on ``min(H, W)``):
    The window stays 11 taps / sigma 1.5 at every scale. The number of scales is

        L = max{ l in 1..5 : min(H, W) > 10 * 2**(l - 1) }

    i.e. the reference condition ``min(H, W) > (11 - 1) * 2**4`` with ``4`` replaced by the number
    of downsamplings actually done, which guarantees that the coarsest scale is still at least
    11 pixels wide. The first ``L`` standard weights are used, renormalised to sum to 1 (cs at the
    first ``L - 1`` scales, SSIM at scale ``L``). So ``min(H, W) > 160`` (e.g. 768x512 Kodak or
    256x256) gives exactly the reference 5-scale MS-SSIM; 81..160 -> 4 scales, 41..80 -> 3 scales,
    21..40 -> 2 scales (32x32 CIFAR-10: weights ``[0.1356, 0.8644]``), 11..20 -> 1 scale
    (= SSIM, clamped at 0). Images with a side under 11 pixels raise ``ValueError`` (as does
    :func:`ssim`). Values obtained with different ``L`` are not comparable with each other; use
    :func:`ms_ssim_levels` to report which one was used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._check import check_pair, shared_reference

WIN_SIZE = 11
WIN_SIGMA = 1.5
K1 = 0.01
K2 = 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def _blur_valid(x: Tensor, win: Tensor) -> Tensor:
    """Separable depthwise Gaussian filter without padding ("valid"): ``[B, C, H, W]`` ->
    ``[B, C, H - k + 1, W - k + 1]``, channels-last (depthwise convolutions run ~3x faster so on
    a CPU; the same values to float rounding)."""
    c = x.shape[1]
    k = win.numel()
    x = x.contiguous(memory_format=torch.channels_last)
    x = F.conv2d(x, win.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, win.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def _ssim_cs(
    x: Tensor, y: Tensor, win: Tensor, data_range: float, full: bool = True
) -> tuple[Tensor | None, Tensor]:
    """Per-channel mean SSIM and contrast-structure term, each ``[B, C]`` (SSIM None unless
    ``full``: MS-SSIM's middle scales need only ``cs``)."""
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    c = x.shape[1]
    if shared_reference(x):  # one reference for the batch: its statistics once, broadcast
        x = x[:1]
        mu_x, e_xx = _blur_valid(torch.cat([x, x * x], dim=1), win).split(c, dim=1)
        mu_y, e_yy, e_xy = _blur_valid(torch.cat([y, y * y, x * y], dim=1), win).split(c, dim=1)
    else:  # one grouped convolution for the five local statistics
        stats = _blur_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), win)
        mu_x, mu_y, e_xx, e_yy, e_xy = stats.split(c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = e_xx - mu_xx
    var_y = e_yy - mu_yy
    cov = e_xy - mu_xy
    cs_map = (2.0 * cov + c2) / (var_x + var_y + c2)
    cs = cs_map.mean(dim=(2, 3))
    if not full:
        return None, cs
    ssim_map = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map.mean(dim=(2, 3)), cs


def _prepare(x: Tensor, y: Tensor, name: str, data_range: float) -> tuple[Tensor, Tensor]:
    check_pair(x, y, name, data_range=data_range)
    if min(x.shape[-2:]) < WIN_SIZE:
        raise ValueError(
            f"{name}: images must be at least {WIN_SIZE}x{WIN_SIZE} pixels "
            f"(Gaussian window), got shape {tuple(x.shape)}"
        )
    if x.dtype not in (torch.float32, torch.float64):  # half precision is too coarse for variances
        x, y = x.float(), y.float()
    return x, y


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM per image (11-tap Gaussian window, sigma 1.5, valid positions only).

    Args:
        x, y: float images ``[B,C,H,W]`` (normally ``[B,3,H,W]``) in ``[0, data_range]``,
            ``H, W >= 11``.
        data_range: dynamic range of the inputs (1.0 for ``[0,1]`` images).

    Returns:
        tensor ``[B]`` (channel average of the per-channel mean SSIM; may be negative), in
        the inputs' dtype (float32 for half precision).
    """
    x, y = _prepare(x, y, "ssim", data_range)
    win = _gaussian_window(WIN_SIZE, WIN_SIGMA, x.dtype, x.device)
    s, _ = _ssim_cs(x, y, win, data_range)
    assert s is not None
    return s.mean(1)


def ms_ssim_levels(height: int, width: int) -> int:
    """Number of MS-SSIM scales used for an ``height x width`` image (see module docstring)."""
    side = min(height, width)
    if side < WIN_SIZE:
        raise ValueError(f"ms_ssim: images must be at least {WIN_SIZE} pixels wide, got {side}")
    levels = 1
    while levels < len(MS_SSIM_WEIGHTS) and side > (WIN_SIZE - 1) * 2**levels:
        levels += 1
    return levels


def ms_ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Multi-scale SSIM per image (5 scales for ``min(H, W) > 160``, fewer below; see module doc).

    Args:
        x, y: float images ``[B,C,H,W]`` (normally ``[B,3,H,W]``) in ``[0, data_range]``,
            ``H, W >= 11``.
        data_range: dynamic range of the inputs (1.0 for ``[0,1]`` images).

    Returns:
        tensor ``[B]`` in ``[0, 1]``, in the inputs' dtype (float32 for half precision).
    """
    return ssim_and_ms_ssim(x, y, data_range)[1]


def ssim_and_ms_ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> tuple[Tensor, Tensor]:
    """:func:`ssim` and :func:`ms_ssim` per image, ``([B], [B])``, in one pass: SSIM is
    MS-SSIM's first scale, computed once for both (same arguments as :func:`ms_ssim`)."""
    x, y = _prepare(x, y, "ms_ssim", data_range)
    levels = ms_ssim_levels(*x.shape[-2:])
    w = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=x.dtype, device=x.device)
    if levels < len(MS_SSIM_WEIGHTS):  # fewer scales: renormalised (the five sum to 1.0001)
        w = w / w.sum()
    win = _gaussian_window(WIN_SIZE, WIN_SIGMA, x.dtype, x.device)
    terms = []
    first = None
    for i in range(levels):
        s, cs = _ssim_cs(x, y, win, data_range, full=i in (0, levels - 1))
        if i == 0:
            assert s is not None
            first = s.mean(1)
        if i < levels - 1:
            terms.append(torch.relu(cs))
            pad = [d % 2 for d in x.shape[-2:]]
            if shared_reference(x):  # the reference pooled once, still shared
                x = F.avg_pool2d(x[:1], kernel_size=2, padding=pad).expand(x.shape[0], -1, -1, -1)
            else:
                x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
        else:
            assert s is not None
            terms.append(torch.relu(s))
    stacked = torch.stack(terms, dim=0)  # [L, B, C]
    assert first is not None  # levels >= 1: set at the first scale
    return first, torch.prod(stacked ** w.view(-1, 1, 1), dim=0).mean(1)
