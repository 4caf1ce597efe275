"""MMSE equalisation + normalisation (paper B eqs. 5-9, docs/math.md §4).

For ``y = h z + n`` with ``E|z|^2 = 1`` and ``n ~ CN(0, N0)`` the per-symbol gain
``w = conj(h) / (|h| sqrt(|h|^2 + N0))`` (the LMMSE filter followed by normalisation)
gives ``w y = sqrt(1-d) z + sqrt(d) n'`` with ``n' ~ CN(0, 1)`` and
``d = N0 / (|h|^2 + N0) = 1 / (1 + SNR_eq)``. In the real unit-power domain of
:mod:`semcom.channels.mapping` this is exactly

    f_tilde = sqrt(1 - d) * f + sqrt(d) * n,   n ~ N(0, I),

which is what the diffusion receiver expects. ``d`` is per image ([B, 1]) for AWGN and
slow fading and per element ([B, L]) for fast fading.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .mapping import symbols_to_unit_real
from .models import ChannelState

#: |h|^2 below this is treated as a deep fade (the element carries no signal, d = 1).
DEEP_FADE = 1e-12


@dataclass(frozen=True)
class Equalized:
    """Receiver-side view after equalise + normalise.

    Attributes:
        f_tilde: ``sqrt(1-d) f + sqrt(d) n``, real [B, L] (``L = 2M`` for M symbols), unit
            power per element on average.
        d: noise level (variance per real element) in [0, 1], [B, 1] or [B, L];
            ``1 / (1 + SNR_eq)`` with ``SNR_eq`` linear (0 for a noiseless link, SNR +inf; 1
            for a deep fade).
        deep_fades: number of symbols treated as deep fades (|h_hat|^2 < DEEP_FADE), int64
            [B].
    """

    f_tilde: Tensor
    d: Tensor
    deep_fades: Tensor

    @property
    def snr_db(self) -> Tensor:
        """Equivalent SNR per element in dB implied by ``d`` ([B, 1] or [B, L])."""
        return 10.0 * torch.log10((1.0 - self.d) / self.d)

    def lmmse(self) -> Tensor:
        """LMMSE estimate of the unit-power signal f: ``sqrt(1-d) f_tilde`` [B, L]."""
        return (1.0 - self.d).sqrt() * self.f_tilde


#: the SNR an SNR-adaptive decoder is told is kept within this range (dB): a deep fade
#: (|h_hat| = 0, -inf dB) or a noiseless link (+inf dB) reaches the decoder as its bound
DECODER_SNR_RANGE_DB = (-100.0, 100.0)


def decoder_snr_db(snr_db: Tensor, state: ChannelState) -> Tensor:
    """The SNR (dB, float64 [B]) the receiver tells an SNR-adaptive decoder (ADJSCC).

    With one gain per image (AWGN, slow fading) it is the equalised SNR of the latent the
    decoder reads, as the receiver's CSI implies it: ``|h_hat|^2 / (N0 + h_err)`` in dB,
    i.e. ``snr_db + 10 log10 |h_hat|^2`` without an estimation error, so exactly ``snr_db``
    for AWGN with perfect CSI (``h_hat = 1``) and ``snr_db + 10 log10 |h|^2`` for slow
    fading with perfect CSI. With a gain per symbol (fast fading) one number cannot describe
    the latent: the nominal ``snr_db`` (the mean SNR; the per-element levels reach the
    diffusion receiver). A deep fade (``|h_hat|^2 <`` :data:`DEEP_FADE`, which the
    equaliser zeroes) gives the lower bound. ``snr_db``: Es/N0 [B] in dB. Clamped to
    :data:`DECODER_SNR_RANGE_DB`.
    """
    snr = snr_db.double().reshape(-1)
    lo, hi = DECODER_SNR_RANGE_DB
    if state.h_hat.shape[-1] != 1:
        return snr.clamp(lo, hi)
    g = state.h_hat[:, 0].abs().double().pow(2)
    fade = g < DEEP_FADE
    g_safe = torch.where(fade, torch.ones_like(g), g)
    out = snr + 10.0 * torch.log10(g_safe)
    if state.h_err is not None:  # the estimation error counts as noise, as in equalize
        noise = state.no.double().reshape(-1) + state.h_err.double().reshape(-1)
        out = torch.where(noise > 0, 10.0 * torch.log10(g_safe / noise.clamp_min(1e-300)), out)
    return torch.where(fade, torch.full_like(out, lo), out).clamp(lo, hi)


def equalize(y: Tensor, state: ChannelState) -> Equalized:
    """MMSE-equalise and normalise received symbols ``y`` [B, M] (complex) with the receiver's
    CSI: an :class:`Equalized` with ``f_tilde`` real [B, 2M] and ``d`` [B, 1] (one gain per
    image) or [B, 2M] (fast fading).

    Uses ``state.h_hat`` (the true ``h`` for perfect CSI) and ``state.no``; with estimated
    CSI the estimation-error variance ``state.h_err`` counts as noise (``N0 + h_err``: with
    ``y = h_hat z + (n + (h - h_hat) z)`` the second term is uncorrelated with ``h_hat`` for
    an LMMSE estimate), so ``d`` is the noise level of ``f_tilde`` on average over the
    estimation error (for one image it is off by that image's error; with AWGN's LS estimate
    the error is also correlated with the estimate). Never produces NaN:
    ``N0 = 0`` gives ``d = 0`` (zero-forcing), a deep fade gives ``d = 1`` and a zero output
    for that symbol (counted in ``deep_fades``).
    """
    if not y.is_complex() or y.dim() != 2:
        raise ValueError(f"equalize expects complex symbols [B, M], got {y.dtype} {tuple(y.shape)}")
    h = state.h_hat
    no = state.no.to(y.real.dtype)
    if state.h_err is not None:
        no = no + state.h_err.to(no.dtype)
    no = no.unsqueeze(-1)  # [B, 1]
    g = h.abs().pow(2)  # [B, 1] or [B, M]
    fade = g < DEEP_FADE
    g_safe = torch.where(fade, torch.ones_like(g), g)
    w = h.conj() / (g_safe.sqrt() * (g_safe + no).sqrt())
    w = torch.where(fade, torch.zeros_like(w), w)
    d = torch.where(fade, torch.ones_like(g), no / (g_safe + no))
    # no = inf cannot happen (SNR = -inf is refused); no = 0 gives d = 0 exactly.
    f_tilde = symbols_to_unit_real(w * y)
    if d.shape[-1] != 1:
        d = torch.cat([d, d], dim=-1)  # element k and k + L/2 share symbol k
    deep = fade.sum(dim=-1) if fade.shape[-1] != 1 else fade[:, 0].long() * y.shape[-1]
    return Equalized(f_tilde=f_tilde, d=d, deep_fades=deep)
