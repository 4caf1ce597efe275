"""Diffusion receivers: noise schedules, SNR -> step matching, step-matched samplers.

Conditioning convention (one for the whole library)
---------------------------------------------------
A denoiser is a callable ``denoise(x_t, level) -> x0_hat``:

* ``x_t`` [B, ...] is **VP form**: ``x_t = sqrt(1 - v) x0 + sqrt(v) eps``, ``eps ~ N(0, I)``,
  in the network's **training units** (x0 has power ``P0`` per real element; ``P0 = 1``
  for unit-power latents);
* ``level`` is the **VP noise variance** ``v = 1 - abar`` in ``[0, 1]`` (per real element),
  a [B] tensor in ``x_t``'s dtype (one level per image: the samplers here always hand the
  network a uniform level, water-filling included);
* the output is the estimate of x0 in the same units (an x0-predictor; eps-predictors
  convert with ``x0 = (x_t - sqrt(v) eps)/sqrt(1 - v)``).

The schedules map onto it as follows:

* DDPM (discrete, paper A VP form): ``v = 1 - abar_t``; ``DDPMSchedule.index_from_level``
  /``timestep_from_level`` recover the (integer / fractional) index for index-conditioned
  networks.
* Paper B's sigmoid schedule: ``v = S(t) = beta_bar_t`` (the authors' code conditions on
  ``sqrt(beta_bar_t)``; an adapter takes ``level.sqrt()``).
* Paper A's DDM form ``x_t = (1-t) x0 + sqrt(t) eps``: with ``c_t = sqrt((1-t)^2 + t)``,
  ``x_t / c_t = sqrt(1-v) x0 + sqrt(v) eps`` where ``v = t / ((1-t)^2 + t)`` (squares of the
  coefficients sum to 1; the SNR ``(1-t)^2 P0/t = (1-v) P0/v`` is unchanged, so the DDM
  matched ``t*`` of docs/math.md §1.2 gives exactly the VP target ``v* = P0/(k+P0)`` of §1.1).
  Inverse: ``t = 2v / (1 + v + sqrt((1-v)(1+3v)))``. ``ddm_sample`` calls
  ``denoise(x_t / c_t, v_t)``.

Receiver units: the receiver input is ``f_tilde = sqrt(1-d) f + sqrt(d) n`` with f the
unit-power latent (SNR ``k = (1-d)/d``, :func:`snr_from_level`). ``alpha f_tilde`` with
``alpha = sqrt((1-v) P0 + v)`` at the matched ``v`` is the training variable at level v
for ``x0 = sqrt(P0) f``, and :func:`diffusion_receive` returns ``x0_hat / sqrt(P0)``.
"""

from .fading import fast_fading_sample, inject_noise, waterfill_sample
from .matching import (
    DEFAULT_LEVEL_EPS,
    MatchedStart,
    db_to_linear,
    ddm_t_from_noise_ratio,
    ddm_t_from_snr,
    level_from_snr,
    match,
    match_continuous,
    match_ddm,
    match_vp,
    snr_from_level,
    target_level,
    vp_closed_form_t,
)
from .receiver import DiffusionReceiver, ReceiveResult, diffusion_receive
from .samplers import (
    Denoiser,
    continuous_grid,
    ddim_continuous,
    ddim_discrete,
    ddim_sample,
    ddim_update,
    ddm_grid,
    ddm_sample,
    ddpm_grid,
    quantile_grid,
)
from .schedules import DDMSchedule, DDPMSchedule, SigmoidSchedule

__all__ = [
    "DEFAULT_LEVEL_EPS",
    "DDMSchedule",
    "DDPMSchedule",
    "Denoiser",
    "DiffusionReceiver",
    "MatchedStart",
    "ReceiveResult",
    "SigmoidSchedule",
    "continuous_grid",
    "db_to_linear",
    "ddim_continuous",
    "ddim_discrete",
    "ddim_sample",
    "ddim_update",
    "ddm_grid",
    "ddm_sample",
    "ddm_t_from_noise_ratio",
    "ddm_t_from_snr",
    "ddpm_grid",
    "diffusion_receive",
    "fast_fading_sample",
    "inject_noise",
    "level_from_snr",
    "match",
    "match_continuous",
    "match_ddm",
    "match_vp",
    "quantile_grid",
    "snr_from_level",
    "target_level",
    "vp_closed_form_t",
    "waterfill_sample",
]
