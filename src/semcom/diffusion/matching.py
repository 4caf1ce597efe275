"""SNR -> diffusion step matching and input scaling (docs/math.md §1, §2 eq. 19).

Units. ``snr`` is always the **linear** signal-to-noise ratio ``k = P_s / sigma^2`` of the
received signal per real element (never dB; use :func:`db_to_linear`). ``p0`` is the power
per real element of the denoiser's training latents (``E||x0||^2 / dim``), ``p_y`` the
power per real element of the received signal that is scaled (1 for the unit-power
receiver input ``f_tilde = sqrt(1-d) f + sqrt(d) n``, whose SNR is ``(1-d)/d``, see
:func:`snr_from_level`).

Principle (docs/math.md §1): pick the step whose SNR equals k, then the scalar alpha with
``E||alpha y||^2 = E||x_t||^2``. In the library's VP unit the matched noise variance is

    v* = P0 / (k + P0)          (Theorem 1 VP: abar* = k/(k+P0); paper B eq. 19: S(m) = v*)

and the DDM time ``t* = 2/(2 + u + sqrt(u^2 + 4u))``, ``u = k/P0`` has the same v*.
Scaling (Theorem 2): VP ``alpha = sqrt(((1-v) P0 + v) / P_y)``; DDM
``alpha = sqrt(((1-t)^2 P0 + t) / P_y)``. At exact matching and ``P_y = P_s + sigma^2``,
``alpha y = sqrt(1-v) x0~ + sqrt(v) n~`` with ``x0~ = sqrt(P0/P_s) * signal`` (VP), resp.
``(1-t) x0~ + sqrt(t) n~`` (DDM).

Clamping. Targets with ``v* < level_eps`` (k/P0 above ~ +50 dB for the default 1e-5) are
set to ``v = 0`` and flagged ``skip`` (no denoiser call); targets with
``v* > 1 - level_eps`` (k/P0 below ~ -50 dB) are set to the top of the schedule and flagged
``start_from_noise``. For the discrete DDPM table the limits are the table's own ends
(``t* = 0`` above ``lambda_1``, ``t* = T`` below ``lambda_T``). ``clamped`` records both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .._checks import check_count, check_real, real_tensor
from .schedules import (
    DDMSchedule,
    DDPMSchedule,
    SigmoidSchedule,
    _nearest_log_snr,
    check_linear_betas,
)

__all__ = [
    "DEFAULT_LEVEL_EPS",
    "MatchedStart",
    "db_to_linear",
    "ddm_t_from_noise_ratio",
    "ddm_t_from_snr",
    "level_from_snr",
    "match",
    "match_continuous",
    "match_ddm",
    "match_vp",
    "snr_from_level",
    "target_level",
    "vp_closed_form_t",
]

#: Matched levels below this skip the denoiser; above ``1 - DEFAULT_LEVEL_EPS`` start from noise.
DEFAULT_LEVEL_EPS = 1e-5

Rule = Literal["vp", "ddm", "continuous"]


@dataclass(frozen=True)
class MatchedStart:
    """Where the reverse process starts, per image (all fields [B] or the input's shape).

    Attributes:
        t: matched schedule time: integer DDPM index in ``{0..T}`` (rule ``"vp"``, long),
            DDM time in ``[0, 1]`` (``"ddm"``), sigmoid-schedule time ``m in [0, 1]``
            (``"continuous"``), float64.
        level: VP noise variance at ``t`` (the network conditioning unit), float64.
        alpha: input scaling (Theorem 2), float64: ``alpha * y`` is the start state
            (VP form for ``"vp"``/``"continuous"``, DDM form for ``"ddm"``).
        skip: bool, ``t == 0``: the denoiser is not called, the output is ``alpha * y``.
        start_from_noise: bool, ``t`` is the top of the schedule (input ~ pure noise).
        clamped: bool, the exact target ``target_level`` lay outside the schedule's range.
        target_level: exact continuous target ``v* = P0 / (k + P0)``, float64.
        rule: the rule used.
    """

    t: Tensor
    level: Tensor
    alpha: Tensor
    skip: Tensor
    start_from_noise: Tensor
    clamped: Tensor
    target_level: Tensor
    rule: str

    @property
    def n_clamped(self) -> int:
        """Number of images whose target was clamped (for verbose reports)."""
        return int(self.clamped.sum())


def db_to_linear(snr_db: Tensor | float) -> Tensor:
    """``10^(snr_db/10)`` as float64 (``-inf`` dB -> 0, ``+inf`` -> inf, NaN -> NaN), any
    shape. ``ValueError`` for bools or complex numbers, ``TypeError`` for what is not numbers
    (as :func:`semcom.channels.as_snr_tensor`)."""
    x = real_tensor(snr_db, "snr_db", "numbers of dB")
    return torch.pow(10.0, x / 10.0)


def snr_from_level(d: Tensor | float) -> Tensor:
    """Equivalent linear SNR ``(1-d)/d`` of the receiver input ``sqrt(1-d) f + sqrt(d) n``.

    ``d`` (noise variance per real element, any shape) is clamped to ``[0, 1]``;
    ``d = 0`` -> ``inf``, ``d = 1`` -> ``0``. float64. ``ValueError`` for bools or complex
    numbers, ``TypeError`` for what is not numbers.
    """
    d64 = real_tensor(d, "d", "noise levels").clamp(0.0, 1.0)
    return torch.where(d64 > 0, (1.0 - d64) / d64.clamp_min(1e-300), math.inf)


def level_from_snr(snr: Tensor | float) -> Tensor:
    """Inverse of :func:`snr_from_level`: ``d = 1/(1+k)`` (k linear, clamped ``>= 0``, NaN as
    0; ``+inf`` gives exactly 0). ``ValueError`` for bools or complex numbers, ``TypeError``
    for what is not numbers."""
    k = real_tensor(snr, "snr", "linear SNRs").nan_to_num(nan=0.0, posinf=math.inf)
    k = k.clamp_min(0.0)
    return 1.0 / (1.0 + k)


def check_linear_snr(snr: Tensor | float) -> Tensor:
    """``snr`` as a float64 tensor, or ``ValueError`` if it holds NaN, a negative value (a
    linear SNR is >= 0; a negative one is most likely in dB), bools or complex numbers;
    ``TypeError`` for what is not numbers (a string, None)."""
    k = real_tensor(snr, "snr", "linear SNRs")
    if bool(torch.isnan(k).any()):
        raise ValueError("snr holds NaN: a linear SNR is a number >= 0 or +inf")
    if bool((k < 0).any()):
        raise ValueError(
            f"a linear SNR must be >= 0, got {float(k.min()):g}: if it is in dB, convert it "
            "with 10 ** (snr_db / 10)"
        )
    return k


def check_p0(p0: float) -> None:
    """``ValueError`` unless the training-latent power ``p0`` is a finite real number > 0
    (NaN, inf, a bool, a complex number), ``TypeError`` for what is not a number."""
    check_real(p0, "p0")
    if not (p0 > 0 and math.isfinite(p0)):
        raise ValueError(f"p0 must be > 0 and finite, got {p0}")


def check_p_y(p_y: Tensor | float, device: torch.device) -> Tensor:
    """The received power ``p_y`` (a number or a tensor, e.g. [B]) as a float64 tensor on
    ``device``, or ``ValueError`` naming it for NaN, a negative value, bools or complex
    numbers; ``TypeError`` for what is not numbers."""
    return _nonnegative(p_y, "p_y", "received powers per real element", device)


def _nonnegative(x: object, name: str, what: str, device: torch.device | None = None) -> Tensor:
    """``x`` (numbers >= 0 or +inf, called ``name``, its values ``what``) as a float64 tensor
    on ``device``, or ``ValueError`` naming it for NaN, a negative value, bools or complex
    numbers; ``TypeError`` for what is not numbers. A Python float is checked without tensor
    operations (the default ``p_y = 1.0`` at every match), an int (which may not fit a float)
    or a tensor with one reduction."""
    if type(x) is float:
        v = x
        if not v >= 0:
            nan = math.isnan(v)
            raise ValueError(f"{name} holds NaN: {what} are numbers >= 0" if nan
                             else f"{name} must be >= 0 ({what}), got {v:g}")  # fmt: skip
        return torch.as_tensor(x, dtype=torch.float64, device=device)
    t = real_tensor(x, name, what, device=device)
    if bool((~(t >= 0)).any()):  # NaN or negative
        if bool(torch.isnan(t).any()):
            raise ValueError(f"{name} holds NaN: {what} are numbers >= 0")
        raise ValueError(f"{name} must be >= 0 ({what}), got {float(t.min()):g}")
    return t


def check_level_eps(level_eps: float) -> None:
    """``ValueError`` unless ``level_eps`` is a real number in [0, 0.5) (at 0.5 or more every
    level would both skip and start from noise; NaN clamped nothing), ``TypeError`` for what
    is not a number."""
    check_real(level_eps, "level_eps")
    if not 0 <= level_eps < 0.5:
        raise ValueError(f"level_eps must be in [0, 0.5), got {level_eps}")


def target_level(snr: Tensor | float, p0: float = 1.0) -> Tensor:
    """Exact matched VP noise variance ``v* = P0 / (k + P0)`` in ``[0, 1]`` (float64).
    ``snr``: linear SNR k >= 0, any shape (NaN or negative: ``ValueError``, see
    :func:`check_linear_snr`); ``+inf`` gives 0."""
    check_p0(p0)
    return _target_level(check_linear_snr(snr), p0)


def _target_level(k: Tensor, p0: float) -> Tensor:
    """:func:`target_level` of a checked SNR ``k`` and ``p0``."""
    return (p0 / (k + p0)).clamp(0.0, 1.0)


def _alpha_vp(level: Tensor, p0: float, p_y: Tensor | float) -> Tensor:
    p_y = torch.as_tensor(p_y, dtype=torch.float64, device=level.device).clamp_min(1e-300)
    return (((1.0 - level) * p0 + level) / p_y).sqrt()


def match_vp(
    snr: Tensor | float,
    schedule: DDPMSchedule,
    p0: float = 1.0,
    p_y: Tensor | float = 1.0,
) -> MatchedStart:
    """Theorem 1 + 2, VP/DDPM form (docs/math.md §1.1) on a discrete schedule.

    ``t* = argmin_{t in 1..T} |lambda_t - ln(k/P0)|`` with ``lambda_t = ln(abar_t/(1-abar_t))``;
    ``t* = 0`` (skip) if ``ln(k/P0) > lambda_1``, ``t* = T`` (start from noise) if below
    ``lambda_T``. Non-increasing in k. ``alpha = sqrt((abar P0 + 1 - abar)/P_y)`` (energy
    matching with the integer step).

    Args:
        snr: linear SNR k, any shape (e.g. [B]).
        schedule: the DDPM table.
        p0: training-latent power per real element.
        p_y: received power per real element (1 for the normalised receiver input).
    """
    target = target_level(snr, p0)  # refuses NaN and negative SNRs
    k = torch.as_tensor(snr, dtype=torch.float64)
    p_y = check_p_y(p_y, target.device)
    with torch.no_grad():
        lam = torch.log(k) - math.log(p0)  # -inf at k = 0, +inf at k = inf
    t = _nearest_log_snr(schedule.log_snrs.to(lam.device), lam)
    level = schedule.level(t)
    clamped = (lam > schedule.log_snrs[1].item()) | (lam < schedule.log_snrs[-1].item())
    return MatchedStart(
        t=t,
        level=level,
        alpha=_alpha_vp(level, p0, p_y),
        skip=t == 0,
        start_from_noise=t == schedule.T,
        clamped=clamped,
        target_level=target,
        rule="vp",
    )


def vp_closed_form_t(
    snr: Tensor | float,
    p0: float = 1.0,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    T: int = 1000,
) -> Tensor:
    """Closed-form approximation of the VP step for a **linear** schedule (docs/math.md §1.1).

    First order ``-ln abar_t ~ sum beta_s`` gives
    ``t* ~ [-(beta_1 - D/2) + sqrt((beta_1 - D/2)^2 + 2 D L)] / D`` with
    ``D = (beta_T - beta_1)/(T-1)``, ``L = ln(1 + P0/k)``. Continuous (float64), clamped to
    ``[0, T]``; k linear. Over -30..35 dB within 2.31 steps of the exact step (interpolated in
    log-SNR) and 2.8 of the table's integer step; prefer :func:`match_vp`.
    A constant schedule (``beta_end = beta_start``, or ``T = 1``) gives ``t* ~ L / beta_1``.
    ``ValueError`` for a NaN or negative SNR (as :func:`match_vp`), and for ``p0``, the betas
    or ``T`` outside :class:`DDPMSchedule`'s ranges.
    """
    check_p0(p0)
    beta_start, beta_end = check_linear_betas(beta_start, beta_end)
    T = check_count(T, "T")
    k = check_linear_snr(snr)
    L = torch.log1p(p0 / k.clamp_min(1e-300))
    D = (beta_end - beta_start) / (T - 1) if T > 1 else 0.0
    if D == 0.0:  # constant beta (or one step): sum_s beta_s = beta_1 t
        return (L / beta_start).clamp(0.0, float(T))
    a = beta_start - D / 2
    t = (-a + (a * a + 2 * D * L).sqrt()) / D
    return t.clamp(0.0, float(T))


def ddm_t_from_snr(snr: Tensor | float, p0: float = 1.0) -> Tensor:
    """Paper A Theorem 1 (DDM form, docs/math.md §1.2, eq. 19/25): the root in ``[0, 1]`` of
    ``P0 (1-t)^2 = k t``, ``t* = 2 / (2 + u + sqrt(u^2 + 4u))`` with ``u = k/P0``.

    Cancellation-free; ``k = 0`` -> 1, ``k = inf`` -> 0; strictly decreasing. float64.
    ``ValueError`` for a NaN or negative SNR (as :func:`match_ddm`).
    """
    check_p0(p0)
    return _ddm_t(check_linear_snr(snr), p0)


def _ddm_t(k: Tensor, p0: float) -> Tensor:
    """:func:`ddm_t_from_snr` of a checked SNR ``k`` (>= 0, no NaN) and ``p0``."""
    u = k / p0
    # sqrt(u^2 + 4u) = sqrt(u) sqrt(u + 4) avoids overflow of u^2 for huge u
    t = 2.0 / (2.0 + u + u.sqrt() * (u + 4.0).sqrt())
    return torch.where(torch.isinf(u), torch.zeros_like(t), t).clamp(0.0, 1.0)


def ddm_t_from_noise_ratio(s2: Tensor | float) -> Tensor:
    """Remark 2 (docs/math.md §1.2 eq. 30): ``t* = 2 s^2 / (2 s^2 + 1 + sqrt(1 + 4 s^2))`` with
    ``s^2 = sigma^2 / P_s`` (received signal normalised to the training power), ``s^2 = inf``
    (no signal) -> 1. float64. ``ValueError`` for NaN or a negative ratio (as the SNR of
    :func:`ddm_t_from_snr`)."""
    s2 = _nonnegative(s2, "s2", "noise-to-signal power ratios")
    t = 2.0 * s2 / (2.0 * s2 + 1.0 + (1.0 + 4.0 * s2).sqrt())
    return torch.where(torch.isinf(s2), torch.ones_like(t), t)


def _clamp_level(target: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    check_level_eps(eps)
    skip = target < eps
    noise = target > 1.0 - eps
    level = torch.where(skip, 0.0, torch.where(noise, 1.0, target))
    return level, skip, noise


def match_ddm(
    snr: Tensor | float,
    p0: float = 1.0,
    p_y: Tensor | float = 1.0,
    level_eps: float = DEFAULT_LEVEL_EPS,
) -> MatchedStart:
    """Paper A Theorem 1 + 2 in DDM form (docs/math.md §1.2).

    ``t* = 2/(2 + u + sqrt(u^2 + 4u))``, ``u = k/P0``;
    ``alpha = sqrt(((1-t*)^2 P0 + t*) / P_y)``; the start state ``alpha y`` is in DDM units
    ``(1-t) x0 + sqrt(t) eps``. ``level = t/((1-t)^2 + t) = P0/(k+P0)``. Clamped with
    ``level_eps`` (module docstring): skip -> ``t = 0``, start_from_noise -> ``t = 1``.
    """
    check_p0(p0)
    k = check_linear_snr(snr)
    p_y = check_p_y(p_y, k.device).clamp_min(1e-300)
    target = _target_level(k, p0)
    _, skip, noise = _clamp_level(target, level_eps)
    t = _ddm_t(k, p0)
    t = torch.where(skip, 0.0, torch.where(noise, 1.0, t))
    alpha = (((1.0 - t) ** 2 * p0 + t) / p_y).sqrt()
    return MatchedStart(
        t=t,
        level=DDMSchedule().level(t),
        alpha=alpha,
        skip=skip,
        start_from_noise=noise,
        clamped=skip | noise,
        target_level=target,
        rule="ddm",
    )


def match_continuous(
    snr: Tensor | float,
    schedule: SigmoidSchedule | None = None,
    p0: float = 1.0,
    p_y: Tensor | float = 1.0,
    level_eps: float = DEFAULT_LEVEL_EPS,
) -> MatchedStart:
    """Paper B eq. 19 with general P0 (docs/math.md §2): ``m = S^-1(P0/(k+P0))``.

    (P0 = 1: ``S^-1(1/(1+gamma))``.) ``level = S(m)``; ``alpha = sqrt(((1-v) P0 + v)/P_y)``,
    which for the normalised receiver input (``P_y = 1``) is ``sqrt(P0/(1 - d + P0 d))`` and
    makes ``alpha f_tilde = sqrt(1-v) sqrt(P0) f + sqrt(v) n`` coefficient-exact.
    Clamped with ``level_eps``: skip -> ``m = 0``, start_from_noise -> ``m = 1``.
    """
    sched = schedule or SigmoidSchedule()
    target = target_level(snr, p0)
    p_y = check_p_y(p_y, target.device)
    level, skip, noise = _clamp_level(target, level_eps)
    m = sched.S_inv(level)
    m = torch.where(skip, 0.0, torch.where(noise, 1.0, m))
    level = torch.where(skip | noise, level, target)
    return MatchedStart(
        t=m,
        level=level,
        alpha=_alpha_vp(level, p0, p_y),
        skip=skip,
        start_from_noise=noise,
        clamped=skip | noise,
        target_level=target,
        rule="continuous",
    )


def match(
    snr: Tensor | float,
    rule: Rule,
    schedule: DDPMSchedule | SigmoidSchedule | None = None,
    p0: float = 1.0,
    p_y: Tensor | float = 1.0,
    level_eps: float = DEFAULT_LEVEL_EPS,
) -> MatchedStart:
    """The diffusion step that matches a channel SNR, and the input scaling (papers A and B).

    Args:
        snr: equivalent SNR ``k`` per image, **linear** (not dB; ``semcom.diffusion.
            db_to_linear``), per real latent element of the receiver input, [B] or a number.
        rule: ``"vp"`` (paper A Theorem 1/2, VP/DDPM form; needs a :class:`DDPMSchedule`,
            default linear T=1000), ``"ddm"`` (paper A, DDM form; ``schedule`` ignored) or
            ``"continuous"`` (paper B eq. 19; a :class:`SigmoidSchedule`, the default one).
        schedule: the schedule (None: the rule's default).
        p0: power per element of the training latents (stored with the denoiser).
        p_y: power per element of the receiver input ``y`` (1 for the normalised input).
        level_eps: noise levels closer than this to 0 / 1 clamp to skip / start from noise.

    Returns:
        :class:`MatchedStart` (``t``, ``level``, ``alpha``, flags), each ``snr``'s shape.
    """
    if rule == "vp":
        return match_vp(snr, _check(schedule, DDPMSchedule), p0, p_y)
    if rule == "ddm":
        return match_ddm(snr, p0, p_y, level_eps)
    if rule == "continuous":
        return match_continuous(snr, _check(schedule, SigmoidSchedule), p0, p_y, level_eps)
    raise ValueError(f"rule must be 'vp', 'ddm' or 'continuous', got {rule!r}")


def _check(schedule, cls):
    if schedule is None:
        return cls()
    if not isinstance(schedule, cls):
        raise TypeError(f"this rule needs a {cls.__name__}, got {type(schedule).__name__}")
    return schedule
