"""SNR estimation at the receiver (docs/math.md §4).

* ``known``: the receiver is told the SNR (the default everywhere).
* ``moment``: noise power known, signal power unknown: with ``E|z|^2 = 1`` and
  ``y = h z + n``, ``n ~ CN(0, N0)``, the per-image estimate of the equivalent SNR
  ``|h|^2/N0`` is ``gamma_hat = max(mean_k |y_k|^2 / N0 - 1, 0)`` (docs/math.md §4 in our units: the
  paper's ``2 sigma^2`` is our ``N0``). Valid when one gain covers the image (AWGN, slow
  fading); under fast fading it estimates the mean SNR.

* ``learned``: pilot-free, paper B eq. 21: :class:`~semcom.estimation.learned.SNREstimator`
  reads the SNR off the normalised received latent (``semcom train snr-estimator``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..names import SNR_SOURCES


def moment_snr(y: Tensor, no: Tensor) -> Tensor:
    """Moment estimate of the linear SNR per image.

    Args:
        y: received symbols, complex ``[B, M]`` (transmitted with ``E|z|^2 = 1``).
        no: noise power per complex symbol ``N0``, ``[B]`` or one number (linear; 0 allowed).

    Returns:
        ``gamma_hat`` ``[B]`` float64 (linear, >= 0; ``+inf`` where ``N0 = 0``).
    """
    if y.dim() != 2 or not torch.is_complex(y):
        raise ValueError(f"moment_snr: expected complex symbols [B, M], got {tuple(y.shape)}")
    p = y.abs().pow(2).mean(dim=-1).to(torch.float64)
    no = torch.as_tensor(no, dtype=torch.float64, device=p.device).reshape(-1)
    if no.numel() == 1:
        no = no.expand(p.shape[0])
    if no.numel() != p.shape[0] or bool((no < 0).any()) or bool(torch.isnan(no).any()):
        raise ValueError(f"moment_snr: need N0 >= 0, one per image ({p.shape[0]}) or one for all")
    gamma = torch.where(no > 0, p / no.clamp_min(1e-300) - 1.0, torch.full_like(p, float("inf")))
    return gamma.clamp_min(0.0)


def level_from_gamma(gamma: Tensor | float) -> Tensor:
    """Noise level ``d = 1 / (1 + gamma)`` in (0, 1] of a linear SNR estimate ``gamma``
    (``+inf`` gives 0; ``gamma < 0`` or NaN, which no estimator returns, count as 0: d = 1)."""
    from ..diffusion.matching import level_from_snr

    return level_from_snr(gamma)


__all__ = ["SNR_SOURCES", "level_from_gamma", "moment_snr"]
