"""Step-matched samplers and the diffusion receiver (docs/math.md §1, §2 Alg. 2, §3 Alg. 3).

Every sampler takes a ``denoise(x_t, level) -> x0_hat`` callable in the library's
conditioning convention (:mod:`semcom.diffusion`): ``x_t`` [B, ...] is VP-form
``sqrt(1-v) x0 + sqrt(v) eps`` in the **training units** (x0 of power P0 per real element)
and ``level`` is the VP noise variance ``v`` as a [B] tensor in ``x_t``'s dtype. The
network is always given one level per image (water-filling makes the noise level uniform
before every call).

Level grids are [K+1, B] float64 tensors ``levels[j]``, ``j = 0..K``, with ``levels[K]`` the
start and ``levels[0] = 0`` the end; step ``j`` goes from ``levels[j]`` to ``levels[j-1]``.
Spacing: uniform in the schedule's own time -- sigmoid time ``t_j = j m/K`` (paper B
Alg. 2, integer counter), DDPM index ``t_j = round(j t*/K)`` (repeated indices are identity
steps), DDM time ``t_j = j t*/K``. Images whose start level is 0 are left unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from .._checks import check_count, check_real, real_tensor
from ..names import FADING_GRIDS, FADING_VARIANTS, RULES
from .matching import (
    DEFAULT_LEVEL_EPS,
    MatchedStart,
    Rule,
    _alpha_vp,
    check_level_eps,
    check_p0,
    db_to_linear,
    level_from_snr,
    match,
    snr_from_level,
    target_level,
)
from .schedules import DDMSchedule, DDPMSchedule, SigmoidSchedule

__all__ = [
    "Denoiser",
    "DiffusionReceiver",
    "ReceiveResult",
    "continuous_grid",
    "ddim_continuous",
    "ddim_discrete",
    "ddim_sample",
    "ddim_update",
    "ddm_grid",
    "ddm_sample",
    "ddpm_grid",
    "diffusion_receive",
    "fast_fading_sample",
    "inject_noise",
    "quantile_grid",
    "waterfill_sample",
]

#: ``denoise(x_t [B, ...], level [B]) -> x0_hat [B, ...]`` (VP form, training units).
Denoiser = Callable[[Tensor, Tensor], Tensor]
FadingVariant = Literal["waterfill", "reference", "naive"]
#: Level grid of the per-element (fast-fading) path: ``"time"`` uniform in the rule's own
#: time from the largest element level (paper B), ``"quantile"`` through the quantiles of
#: the element levels (:func:`quantile_grid`).
FadingGrid = Literal["time", "quantile"]


def _view(level: Tensor | float, x: Tensor) -> Tensor:
    """float64 level broadcastable to ``x``: scalar, [B] -> [B, 1, ...], or x-shaped."""
    return _bshape(torch.as_tensor(level, dtype=torch.float64, device=x.device), x)


def _bshape(t: Tensor, x: Tensor) -> Tensor:
    """[B] -> [B, 1, ...] to broadcast against ``x``; other shapes unchanged."""
    if t.dim() == 1 and x.dim() > 1 and t.shape[0] == x.shape[0]:
        return t.reshape(-1, *([1] * (x.dim() - 1)))
    return t


def _per_image(level: Tensor, x: Tensor) -> Tensor:
    """[B] level in ``x``'s dtype for the network."""
    return torch.as_tensor(level, device=x.device).reshape(-1).expand(x.shape[0]).to(x.dtype)


# ------------------------------------------------------------------------------ DDIM
def ddim_update(
    x_t: Tensor, x0_hat: Tensor, level_t: Tensor | float, level_s: Tensor | float
) -> Tensor:
    """Deterministic DDIM x0-prediction step (paper B eq. 24 / Alg. 2 line 7, typo B1 fixed).

    ``x_s = sqrt(B_s/B_t) x_t + (sqrt(1-B_s) - sqrt(B_s (1-B_t)/B_t)) x0_hat``, i.e.
    ``eps_hat = (x_t - sqrt(1-B_t) x0_hat)/sqrt(B_t)``,
    ``x_s = sqrt(1-B_s) x0_hat + sqrt(B_s) eps_hat``.

    Args:
        x_t, x0_hat: [B, ...] in the same units.
        level_t, level_s: VP noise variances ``B_t >= B_s`` in [0, 1]; scalars, [B] or
            broadcastable to ``x_t``. Where ``B_t = 0`` the input is returned unchanged.
    """
    bt = _view(level_t, x_t).clamp(0.0, 1.0)
    bs = _view(level_s, x_t).clamp(0.0, 1.0)
    pos = bt > 0
    r = torch.where(pos, (bs / torch.where(pos, bt, 1.0)).clamp_min(0.0).sqrt(), 0.0)
    c0 = (1.0 - bs).sqrt() - r * (1.0 - bt).sqrt()
    out = r.to(x_t.dtype) * x_t + c0.to(x_t.dtype) * x0_hat
    return torch.where(pos, out, x_t)


def ddim_sample(x: Tensor, levels: Tensor, denoise: Denoiser) -> Tensor:
    """Run DDIM over a level grid ``levels`` [K+1] or [K+1, B] (``levels[K]`` = level of
    ``x``). Returns the state at ``levels[0]`` (the x0 estimate when ``levels[0] = 0``).
    One network call per step that lowers a positive level for some image (a repeated level,
    e.g. of a rounded discrete grid with K > t*, is a no-op and costs no call)."""
    lv = torch.as_tensor(levels, dtype=torch.float64, device=x.device)
    if lv.dim() == 1:
        lv = lv[:, None].expand(-1, x.shape[0])
    for j in range(lv.shape[0] - 1, 0, -1):
        lt, ls = lv[j], lv[j - 1]
        if not bool(((lt > 0) & (lt != ls)).any()):
            continue
        x0 = denoise(x, _per_image(lt, x))
        x = ddim_update(x, x0, lt, ls)
    return x


def continuous_grid(
    m: Tensor | float, steps: int, schedule: SigmoidSchedule | None = None, end: float = 0.0
) -> Tensor:
    """Levels ``S(end + j (m - end) / K)``, ``j = 0..K`` -> [K+1, B] float64 (``m`` [B] or
    scalar; ``end = 0``: paper B's ``S(j m / K)`` down to the clean latent)."""
    sched = schedule or SigmoidSchedule()
    m64 = torch.as_tensor(m, dtype=torch.float64).reshape(-1).clamp(0.0, 1.0)
    j = torch.arange(_check_steps(steps) + 1, dtype=torch.float64, device=m64.device)[:, None]
    return sched.S(end + j * (m64[None, :] - end) / steps)


def ddpm_grid(t_star: Tensor | int, steps: int, schedule: DDPMSchedule) -> Tensor:
    """Levels ``1 - abar_{t_j}``, ``t_j = round(j t*/K)`` -> [K+1, B] float64."""
    t64 = torch.as_tensor(t_star).reshape(-1).to(torch.float64).clamp(0, schedule.T)
    j = torch.arange(_check_steps(steps) + 1, dtype=torch.float64, device=t64.device)[:, None]
    idx = torch.round(j * t64[None, :] / steps).long()
    return schedule.level(idx)


def ddm_grid(t_star: Tensor | float, steps: int) -> Tensor:
    """DDM times ``t_j = j t*/K`` -> [K+1, B] float64 (map to levels with
    :meth:`DDMSchedule.level`)."""
    t64 = torch.as_tensor(t_star, dtype=torch.float64).reshape(-1).clamp(0.0, 1.0)
    j = torch.arange(_check_steps(steps) + 1, dtype=torch.float64, device=t64.device)[:, None]
    return j * t64[None, :] / steps


def quantile_grid(v: Tensor, steps: int) -> Tensor:
    """Levels through the element levels: ``levels[j] = quantile_q(v_i)`` at ``q = j/K``,
    ``levels[0] = 0`` -> [K+1, B] float64.

    ``v`` [B, ...] per-element noise variances. Each step takes about ``1/K`` of the elements
    from their own level to the next, so the last step starts at the ``1/K`` quantile (near
    the typical element's level) instead of ``S(m/K)`` of the largest, which under fast
    fading is close to 1 whatever the mean SNR. ``levels[K]`` is the largest level.
    """
    steps = _check_steps(steps)
    flat = torch.as_tensor(v, dtype=torch.float64).reshape(v.shape[0], -1)
    q = torch.arange(steps + 1, dtype=torch.float64, device=flat.device) / steps
    grid = torch.quantile(flat, q, dim=1)  # [K+1, B]
    grid[0] = 0.0
    return torch.cummax(grid, dim=0).values


def _check_steps(steps: int) -> int:
    return check_count(steps, "steps")


#: how far a noise level may stray outside [0, 1] by rounding before it is refused
LEVEL_TOLERANCE = 1e-6


def check_levels(d: Tensor | float, f_tilde: Tensor) -> Tensor:
    """The noise levels ``d`` of ``f_tilde`` [B, C, h, w] as float64 clamped to [0, 1], or
    ``ValueError``: NaN, a value outside [0, 1] (``d`` is the noise's share of the received
    power, not an SNR), or a shape that is neither per image (B values) nor broadcastable to
    ``f_tilde``'s."""
    d64 = real_tensor(d, "d", "noise levels", device=f_tilde.device)
    if bool(torch.isnan(d64).any()):
        raise ValueError("the noise levels d hold NaN")
    if d64.numel() and bool(((d64 < -LEVEL_TOLERANCE) | (d64 > 1 + LEVEL_TOLERANCE)).any()):
        raise ValueError(
            f"noise levels d must be in [0, 1] (the noise's share of the received power), got "
            f"{float(d64.min()):g} to {float(d64.max()):g}: from a linear SNR k, d = 1/(1+k) "
            "(semcom.diffusion.level_from_snr)"
        )
    b = f_tilde.shape[0]
    if d64.numel() != b:
        try:
            torch.broadcast_shapes(d64.shape, f_tilde.shape)
        except RuntimeError:
            raise ValueError(
                f"noise levels d of shape {tuple(d64.shape)} fit neither one per image ({b}) "
                f"nor the received latent {tuple(f_tilde.shape)}"
            ) from None
    return d64.clamp(0.0, 1.0)


def check_receiver_options(
    rule: str, steps: int, fading: str, fading_grid: str, fading_samples: int
) -> None:
    """``ValueError`` naming the first receiver option that is not allowed."""
    for name, value, allowed in (
        ("rule", rule, RULES),
        ("fading", fading, FADING_VARIANTS),
        ("fading_grid", fading_grid, FADING_GRIDS),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    check_count(steps, "steps")
    check_count(fading_samples, "fading_samples")
    if fading_samples > 1 and fading == "naive":  # one deterministic run: nothing to average
        raise ValueError(
            f"fading_samples={fading_samples} averages runs of the per-element samplers: give "
            "fading='waterfill' or 'reference' (naive matching runs once)"
        )


def check_scalar_options(
    p0: float,
    t_factor: float,
    alpha_factor: float,
    level_eps: float,
    stop_snr_db: float | None = None,
    skip_snr_db: float | None = None,
) -> None:
    """``ValueError`` naming the first of the receiver's number options that is not a real
    number in its range (``p0 > 0``, ``t_factor >= 0``, ``alpha_factor > 0``, ``level_eps``
    in [0, 0.5), a dB value not NaN; a bool or a complex number), ``TypeError`` for one that
    is not a number (a string, None where a number goes)."""
    check_p0(p0)
    check_real(t_factor, "t_factor")
    if not t_factor >= 0:
        raise ValueError(f"t_factor must be >= 0, got {t_factor}")
    check_real(alpha_factor, "alpha_factor")
    if not alpha_factor > 0:
        raise ValueError(f"alpha_factor must be > 0, got {alpha_factor}")
    check_level_eps(level_eps)
    for name, value in (("stop_snr_db", stop_snr_db), ("skip_snr_db", skip_snr_db)):
        if value is not None:
            check_real(value, name)
            if math.isnan(value):
                raise ValueError(f"{name} must be a number of dB or None, got NaN")


def ddim_continuous(
    x: Tensor,
    m: Tensor | float,
    denoise: Denoiser,
    steps: int = 1,
    schedule: SigmoidSchedule | None = None,
) -> Tensor:
    """Paper B Algorithm 2 (corrected): DDIM from sigmoid time ``m`` [B] to 0 in ``steps``
    steps, ``t = j m/K``. ``x`` [B, ...] must be VP-form at level ``S(m)``."""
    return ddim_sample(x, continuous_grid(m, _check_steps(steps), schedule).to(x.device), denoise)


def ddim_discrete(
    x: Tensor,
    t_star: Tensor | int,
    denoise: Denoiser,
    schedule: DDPMSchedule,
    steps: int = 1,
) -> Tensor:
    """DDIM on a DDPM table from integer step ``t*`` [B] to 0 (paper A, VP form). ``x`` must
    be VP-form at level ``1 - abar_{t*}``; the network gets ``1 - abar_t`` (use
    :meth:`DDPMSchedule.index_from_level` in an adapter for index-conditioned nets)."""
    return ddim_sample(x, ddpm_grid(t_star, _check_steps(steps), schedule).to(x.device), denoise)


def ddm_sample(
    x: Tensor,
    t_star: Tensor | float,
    denoise: Denoiser,
    steps: int = 1,
    stochastic: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Paper A's DDM reverse process (docs/math.md §1.2 eq. 16) from DDM time ``t*`` [B] to 0.

    ``x`` [B, ...] is DDM-form ``(1-t) x0 + sqrt(t) eps`` at ``t = t*``. The network is
    called in the VP convention: ``denoise(x_t / c_t, v_t)`` with ``c_t = sqrt((1-t)^2+t)``,
    ``v_t = t/((1-t)^2+t)``. Update, ``s = t - Delta``:

    * deterministic: ``x_s = (1-s) x0_hat + sqrt(s/t) (x_t - (1-t) x0_hat)``;
    * stochastic: ``x_s = x_t + Delta x0_hat - (Delta/sqrt t) eps_hat + sqrt(Delta s / t) xi``,
      ``eps_hat = (x_t - (1-t) x0_hat)/sqrt(t)``, ``xi ~ N(0, I)`` from ``generator``.

    Both end at ``x0_hat`` at ``s = 0``. Returns the x0 estimate [B, ...].
    """
    steps = _check_steps(steps)
    ddm = DDMSchedule()
    grid = ddm_grid(t_star, steps).to(x.device)
    if grid.shape[1] == 1 and x.shape[0] != 1:
        grid = grid.expand(-1, x.shape[0])
    for j in range(steps, 0, -1):
        t64, s64 = grid[j], grid[j - 1]
        pos = t64 > 0
        if not bool(pos.any()):
            continue
        c, v = ddm.scale(t64), ddm.level(t64)
        x0 = denoise(x / _view(c, x).to(x.dtype), _per_image(v, x))
        t, s = _view(t64, x), _view(s64, x)
        t_safe = torch.where(t > 0, t, 1.0)
        if stochastic:
            delta = t - s
            eps_hat = (x - (1.0 - t).to(x.dtype) * x0) / t_safe.sqrt().to(x.dtype)
            xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            new = (
                x
                + delta.to(x.dtype) * x0
                - (delta / t_safe.sqrt()).to(x.dtype) * eps_hat
                + (delta * s / t_safe).clamp_min(0.0).sqrt().to(x.dtype) * xi
            )
        else:
            new = (1.0 - s).to(x.dtype) * x0 + (s / t_safe).sqrt().to(x.dtype) * (
                x - (1.0 - t).to(x.dtype) * x0
            )
        x = torch.where(_bshape(pos, x), new, x)
    return x


# ------------------------------------------------------------------ fast fading (Alg. 3)
def inject_noise(
    x: Tensor, b: Tensor, level_t: Tensor | float, generator: torch.Generator | None = None
) -> Tensor:
    """Water-filling noise injection (paper B eq. 23, docs/math.md §3 step 1).

    For elements with ``b_i < B_t``:
    ``g_i = sqrt((1-B_t)/(1-b_i)) x_i + sqrt((B_t - b_i)/(1-b_i)) eps_i``, fresh
    ``eps ~ N(0, 1)``; elsewhere ``g_i = x_i``. If ``x_i = sqrt(1-b_i) x0_i + sqrt(b_i) nu_i``
    then ``g_i = sqrt(1-B_t) x0_i + (noise of variance B_t)``.

    Args:
        x: [B, ...] VP-form values; b: per-element levels, broadcastable to ``x``, in [0, 1];
        level_t: ``B_t`` [B] or scalar. A full-size ``eps`` is always drawn (reproducible).
    """
    bt = _view(level_t, x).clamp(0.0, 1.0)
    b64 = torch.as_tensor(b, dtype=torch.float64, device=x.device).clamp(0.0, 1.0)
    need = b64 < bt
    one_m_b = (1.0 - b64).clamp_min(1e-300)
    a = ((1.0 - bt) / one_m_b).clamp(0.0, 1.0).sqrt()
    c = ((bt - b64).clamp_min(0.0) / one_m_b).clamp(0.0, 1.0).sqrt()
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return torch.where(need, a.to(x.dtype) * x + c.to(x.dtype) * eps, x)


def waterfill_sample(
    x: Tensor,
    b: Tensor,
    levels: Tensor,
    denoise: Denoiser,
    generator: torch.Generator | None = None,
    variant: Literal["waterfill", "reference"] = "waterfill",
    samples: int = 1,
) -> Tensor:
    """Paper B Algorithm 3 (corrected, docs/math.md §3) on a level grid.

    Args:
        x: [B, ...] with ``x_i = sqrt(1-b_i) x0_i + sqrt(b_i) nu_i`` (training units).
        b: per-element VP noise variances, broadcastable to ``x``.
        levels: [K+1, B] (or [K+1]) grid with ``levels[K] >= max_i b_i`` per image (else the
            elements above it are treated as being at ``levels[K]``) and ``levels[0] = 0``.
        variant: ``"waterfill"``: step 3 applies DDIM to the water-filled ``g``;
            ``"reference"`` (authors' code): DDIM from each element's own value and level
            ``b_i``. Both feed the network the water-filled ``g`` (eq. 23; the code's linear
            std addition is not used) and update only where ``b_i >= B_s`` (typo B2 fixed),
            keeping the invariant ``b_i = min(d_i, S(t))``.
        samples: average of this many independent runs (fresh injected noise each; ``K x
            samples`` network calls). One run is a posterior *sample* of x0 given the
            received latent: its error carries the injected noise's variance on top of the
            estimation error. The average tends to the posterior mean (the MSE-optimal
            estimate), which is what PSNR rewards; an oracle run is exact for any count.
    Returns the x0 estimate [B, ...].
    """
    if variant not in ("waterfill", "reference"):
        raise ValueError(f"variant must be 'waterfill' or 'reference', got {variant!r}")
    check_count(samples, "samples")
    lv = torch.as_tensor(levels, dtype=torch.float64, device=x.device)
    if lv.dim() == 1:
        lv = lv[:, None].expand(-1, x.shape[0])
    bb = torch.as_tensor(b, dtype=torch.float64, device=x.device).clamp(0.0, 1.0)
    bb = bb.expand(x.shape)
    out = _waterfill_once(x, bb, lv, denoise, generator, variant)
    for _ in range(samples - 1):
        out = out + _waterfill_once(x, bb, lv, denoise, generator, variant)
    return out / samples if samples > 1 else out


def _waterfill_once(
    x: Tensor,
    bb: Tensor,
    lv: Tensor,
    denoise: Denoiser,
    generator: torch.Generator | None,
    variant: str,
) -> Tensor:
    """One run of :func:`waterfill_sample` (``bb``: element levels [B, ...]; ``lv``: grid
    [K+1, B]); neither input is modified.

    Elements at level 1 carry no signal; the equaliser sets them to 0 (its LMMSE estimate,
    e.g. for |h| = 0), but the sampler's model wants ``x_i = nu_i`` there: they get fresh
    N(0, 1) noise (drawn only when there are any, so other runs' noise is unchanged)."""
    dead = bb >= 1.0
    if bool(dead.any()):
        nu = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = torch.where(dead, nu, x)
    for j in range(lv.shape[0] - 1, 0, -1):
        lt, ls = lv[j], lv[j - 1]
        if not bool(((lt > 0) & (lt != ls)).any()):
            # at 0 or a repeated level (a quantile grid of few distinct levels, a VP grid
            # finer than the schedule): every element there is at B_t already, g = x and
            # DDIM from B_t to B_t keeps it, so the step is skipped with no call and no draw
            continue
        bt, bs = _view(lt, x), _view(ls, x)
        g = inject_noise(x, bb, lt, generator)
        x0 = denoise(g, _per_image(lt, x))
        if variant == "waterfill":
            new = ddim_update(g, x0, lt, ls)
        else:
            new = ddim_update(x, x0, torch.minimum(bb, bt.expand_as(bb)), ls)
        upd = (bb >= bs) & (bt > 0)
        x = torch.where(upd, new, x)
        bb = torch.where(upd, bs.expand_as(bb), bb)
    return x


def fast_fading_sample(
    x: Tensor,
    b: Tensor,
    denoise: Denoiser,
    steps: int = 1,
    schedule: SigmoidSchedule | None = None,
    generator: torch.Generator | None = None,
    variant: FadingVariant = "waterfill",
    samples: int = 1,
) -> Tensor:
    """Algorithm 3 on the sigmoid schedule: ``m = S^-1(max_i b_i)`` per image, grid
    ``S(j m/K)``. ``variant="naive"`` ignores the per-element levels: it runs Algorithm 2
    (DDIM) from ``m = S^-1(mean_i b_i)`` on ``x`` as is (no noise injection; deterministic,
    so ``samples`` does not apply). ``samples``: see :func:`waterfill_sample`."""
    steps = _check_steps(steps)
    sched = schedule or SigmoidSchedule()
    bb = torch.as_tensor(b, dtype=torch.float64, device=x.device).clamp(0.0, 1.0).expand(x.shape)
    flat = bb.reshape(x.shape[0], -1)
    if variant == "naive":
        m = sched.S_inv(flat.mean(1))
        return ddim_sample(x, continuous_grid(m, steps, sched), denoise)
    m = sched.S_inv(flat.amax(1))
    grid = continuous_grid(m, steps, sched)
    grid[-1] = torch.maximum(grid[-1], flat.amax(1))  # S(S^-1(v)) may round below v
    return waterfill_sample(x, bb, grid, denoise, generator, variant, samples)


# ------------------------------------------------------------------------ the receiver
@dataclass
class ReceiveResult:
    """Output of :func:`diffusion_receive`.

    Attributes:
        f_hat: estimate of the unit-power latent f, same shape/dtype as ``f_tilde``.
        start: the matched start per image [B] (for per-element levels: the start of the
            common grid, matched to the largest element level).
        per_element: whether the fast-fading (per-element) path ran.
        info: counters for verbose reports (``n_skip``, ``n_start_from_noise``,
            ``n_clamped``, ``network_calls``) and what ran (``rule``, ``per_element``).
    """

    f_hat: Tensor
    start: MatchedStart
    per_element: bool
    info: dict[str, object] = field(default_factory=dict)


def _count_calls(denoise: Denoiser, counter: list[int]) -> Denoiser:
    def wrapped(x: Tensor, level: Tensor) -> Tensor:
        counter[0] += 1
        return denoise(x, level)

    return wrapped


def diffusion_receive(
    f_tilde: Tensor,
    d: Tensor | float,
    denoise: Denoiser,
    *,
    p0: float = 1.0,
    rule: Rule = "continuous",
    steps: int = 1,
    schedule: DDPMSchedule | SigmoidSchedule | None = None,
    fading: FadingVariant = "naive",
    generator: torch.Generator | None = None,
    level_eps: float = DEFAULT_LEVEL_EPS,
    t_factor: float = 1.0,
    alpha_factor: float = 1.0,
    fading_grid: FadingGrid = "time",
    stop_snr_db: float | None = None,
    fading_samples: int = 1,
) -> ReceiveResult:
    """Step-matched diffusion denoising of the equalised latent (the receiver side).

    Units. Input ``f_tilde = sqrt(1-d) f + sqrt(d) n`` [B, C, h, w] with f the unit-power
    latent, ``n ~ N(0, I)``; ``d`` (noise variance per real element, in [0, 1]) is
    per image ([B], [B, 1] or [B, 1, 1, 1]) or per element (f_tilde's shape). The SNR is
    ``k = (1-d)/d``; the received power is taken as its expectation ``P_y = 1``. The
    denoiser was trained on ``x0 = sqrt(P0) f`` (latents of power ``p0`` per element), so the
    matched level is ``v = P0 d/(1 - d + P0 d)`` and ``alpha = sqrt((1-v) P0 + v)`` maps
    ``f_tilde`` into the training distribution: ``alpha f_tilde = sqrt(1-v) sqrt(P0) f +
    sqrt(v) n``. The result is ``x0_hat / sqrt(P0)``. Skipped images (``t* = 0``) return
    ``alpha f_tilde / sqrt(P0)`` (= ``f_tilde`` at ``d = 0``).

    Dtypes, as :class:`DiffusionReceiver`: the estimate comes back in ``f_tilde``'s dtype; a
    network denoiser (an ``nn.Module``) runs in its own dtype, the sampler's arithmetic in
    the input's (float64 stays float64 around a float32 network; half / bfloat16 input is
    computed in float32); ``ValueError`` for an input that is not floating point.

    Args:
        denoise: VP x0-predictor ``denoise(x_t, level [B]) -> x0_hat`` (training units).
        p0: training-latent power per real element.
        rule: ``"continuous"`` (paper B, :class:`SigmoidSchedule`, grid ``S(j m/K)``),
            ``"vp"`` (paper A VP form on a :class:`DDPMSchedule`, nearest-log-SNR step,
            energy-matched alpha, integer grid), ``"ddm"`` (paper A DDM form, ``t*`` closed
            form, DDM deterministic reverse step on ``t_j = j t*/K``).
        steps: number K of reverse steps (K = 1: one-step denoising): at most K network calls
            (a step that lowers no image's level costs none; ``K x fading_samples`` on the
            averaged per-element path).
        fading: for per-element ``d`` that varies within an image: ``"waterfill"``
            (Alg. 3 corrected), ``"reference"`` (DDIM from each element's own level), or
            ``"naive"`` (replace d by its per-image mean, then the per-image path; the
            default: per-element variants need ``fading_grid="quantile"`` and many steps to
            pay, and with ``steps=1`` they start from noise: docs/results.md, "Fast Rayleigh
            fading"). The per-element path maps each element exactly to VP form (``v_i``,
            ``alpha_i`` as above) and runs on the rule's grid from the largest ``v_i``
            (``"vp"``: the smallest table step with level ``>= max v_i``; ``"ddm"``: the DDM
            grid mapped to VP levels, which is equivalent by the scaling ``c_t``).
        generator: noise for water-filling.
        t_factor, alpha_factor: multiply the matched start time ``t*`` (clamped to the
            schedule's range) and the scaling ``alpha`` by these factors: the mismatch study
            of paper A §V-D (``semcom experiment perturb``). Per-image levels only.
        fading_grid: per-element path only: ``"time"`` (the rule's grid from the start
            level, paper B) or ``"quantile"`` (:func:`quantile_grid`, steps through the
            quantiles of the element levels; ``waterfill``/``reference`` only).
        fading_samples: per-element path, ``waterfill``/``reference``: average of this many
            independent sampler runs (:func:`waterfill_sample`; ``steps x fading_samples``
            network calls). 1 = paper B.
        stop_snr_db: stop the reverse process at this SNR instead of at the clean latent
            (``"continuous"`` rule, per-image levels): DDIM from the matched start to the
            level ``v_s`` of SNR ``k_s``, then the LMMSE estimate ``sqrt(1-d_s) f_tilde_s``
            of that state, exactly what a JSCC decoder trained at ``k_s`` saw in training.
            Images already at or above ``k_s`` (within 1e-6 dB: an SNR of exactly the stop
            that rounding puts a hair below it) get the plain LMMSE estimate, with no
            network call. For codecs whose decoder was trained end-to-end at one SNR
            (DeepJSCC): a clean latent is outside its training distribution. Per-element
            levels (fast fading) ignore it and run the per-element sampler to the clean
            latent.
    """
    check_receiver_options(rule, steps, fading, fading_grid, fading_samples)
    x = _computing_dtype(f_tilde)
    check_scalar_options(p0, t_factor, alpha_factor, level_eps, stop_snr_db)
    res = _receive_checked(
        x, d, denoise, p0, rule, steps, schedule, fading, generator, level_eps, t_factor,
        alpha_factor, fading_grid, stop_snr_db, fading_samples,
    )  # fmt: skip
    if res.f_hat.dtype != f_tilde.dtype:
        res = replace(res, f_hat=res.f_hat.to(f_tilde.dtype))
    return res


def _computing_dtype(f_tilde: Tensor) -> Tensor:
    """The received latent in the dtype the receiver computes in: half / bfloat16 as float32,
    float32 / float64 as it is; ``ValueError`` for a latent that is not floating point."""
    if not f_tilde.is_floating_point():
        raise ValueError(f"the diffusion receiver takes a floating latent, got {f_tilde.dtype}")
    if f_tilde.dtype in (torch.float16, torch.bfloat16):
        return f_tilde.float()
    return f_tilde


def _receive_checked(
    f_tilde: Tensor,
    d: Tensor | float,
    denoise: Denoiser,
    p0: float,
    rule: Rule,
    steps: int,
    schedule: DDPMSchedule | SigmoidSchedule | None,
    fading: FadingVariant,
    generator: torch.Generator | None,
    level_eps: float,
    t_factor: float,
    alpha_factor: float,
    fading_grid: FadingGrid,
    stop_snr_db: float | None,
    fading_samples: int,
) -> ReceiveResult:
    """:func:`diffusion_receive` with checked options on a float32 / float64 ``f_tilde``; the
    estimate comes back in ``f_tilde``'s dtype."""
    denoise = _in_network_dtype(denoise)
    B = f_tilde.shape[0]
    d64 = check_levels(d, f_tilde)
    if d64.numel() == B:
        d_img, d_el = d64.reshape(B), None
    else:
        d_el = d64.expand(f_tilde.shape)
        flat = d_el.reshape(B, -1)
        if fading == "naive":
            d_img, d_el = flat.mean(1), None
        elif bool((flat.amax(1) == flat.amin(1)).all()):
            d_img, d_el = flat[:, 0], None
        else:
            d_img = flat.amax(1)
    if stop_snr_db is not None and d_el is None:
        if rule != "continuous":
            raise ValueError(f"stop_snr_db needs the 'continuous' rule, got {rule!r}")
        sched = _sched(schedule, SigmoidSchedule)
        return _receive_to_snr(
            f_tilde, d_img, denoise, p0, steps, sched, float(stop_snr_db), level_eps
        )
    calls = [0]
    net = _count_calls(denoise, calls)
    sqrt_p0 = math.sqrt(p0)
    start = match(snr_from_level(d_img), rule, schedule, p0=p0, p_y=1.0, level_eps=level_eps)
    if t_factor != 1.0 or alpha_factor != 1.0:
        if d_el is not None:
            raise ValueError("t_factor/alpha_factor apply to per-image noise levels only")
        t = start.t.to(torch.float64) * t_factor
        if rule == "vp":
            table = _sched(schedule, DDPMSchedule)
            t = t.round().clamp(0, table.T).long()
            level, top = table.level(t), t == table.T
        else:
            t = t.clamp(0.0, 1.0)
            level = (DDMSchedule().level(t) if rule == "ddm"
                     else _sched(schedule, SigmoidSchedule).S(t))  # fmt: skip
            top = t == 1.0
        # the reported level, skip and start from noise follow the perturbed start
        start = replace(start, t=t, level=level, skip=t == 0, start_from_noise=top,
                        alpha=start.alpha * alpha_factor)  # fmt: skip
    if d_el is None:
        x = _view(start.alpha, f_tilde).to(f_tilde.dtype) * f_tilde
        if bool(start.skip.all()):
            out = x
        elif rule == "ddm":
            out = ddm_sample(x, start.t, net, steps)
        elif rule == "vp":
            out = ddim_sample(x, ddpm_grid(start.t, steps, _sched(schedule, DDPMSchedule)), net)
        else:
            grid = continuous_grid(start.t, steps, _sched(schedule, SigmoidSchedule))
            out = ddim_sample(x, grid, net)
    else:
        v = target_level(snr_from_level(d_el), p0)
        x = _alpha_vp(v, p0, 1.0).to(f_tilde.dtype) * f_tilde
        vmax = v.reshape(B, -1).amax(1)
        if fading_grid == "quantile":
            grid = quantile_grid(v, steps)
        elif rule == "vp":
            sched = _sched(schedule, DDPMSchedule)
            t_top = sched.index_from_level(vmax, mode="ceil")
            start = replace(start, t=t_top, level=sched.level(t_top), skip=t_top == 0,
                            start_from_noise=t_top == sched.T)  # fmt: skip
            grid = ddpm_grid(t_top, steps, sched)
        elif rule == "ddm":
            grid = DDMSchedule().level(ddm_grid(start.t, steps))
        else:
            grid = continuous_grid(start.t, steps, _sched(schedule, SigmoidSchedule))
        grid = grid.to(f_tilde.device)
        live = grid[-1] > 0
        grid[-1] = torch.where(live, torch.maximum(grid[-1], vmax), grid[-1])
        out = waterfill_sample(x, v, grid, net, generator, fading, fading_samples)  # type: ignore[arg-type]
    f_hat = (out / sqrt_p0).to(f_tilde.dtype)
    return _result(f_hat, start, rule, d_el is not None, int(start.skip.sum()), calls[0])


def _result(
    f_hat: Tensor, start: MatchedStart, rule: str, per_element: bool, n_skip: int, calls: int
) -> ReceiveResult:
    info: dict[str, object] = {
        "rule": rule,
        "per_element": per_element,
        "n_skip": n_skip,
        "n_start_from_noise": int(start.start_from_noise.sum()),
        "n_clamped": start.n_clamped,
        "network_calls": calls,
    }
    return ReceiveResult(f_hat=f_hat, start=start, per_element=per_element, info=info)


def _receive_to_snr(
    f_tilde: Tensor,
    d: Tensor,
    denoise: Denoiser,
    p0: float,
    steps: int,
    sched: SigmoidSchedule,
    stop_snr_db: float,
    level_eps: float,
) -> ReceiveResult:
    """:func:`diffusion_receive` with ``stop_snr_db`` (per-image ``d`` [B], float64)."""
    calls = [0]
    net = _count_calls(denoise, calls)
    start = match(snr_from_level(d), "continuous", sched, p0=p0, p_y=1.0, level_eps=level_eps)
    k_s = 10.0 ** (stop_snr_db / 10.0)
    d_s = 1.0 / (1.0 + k_s)
    v_s = float(target_level(k_s, p0))
    m_s = float(sched.S_inv(torch.tensor(v_s, dtype=torch.float64)))
    # [B]: noisier than the stop level; decided on d with 1e-6 dB of slack, as skip_snr_db: an
    # image at exactly the stop SNR may reach here 1 ulp below it (d from the SNR and back),
    # and its matched time, through S_inv, a hair above m_s: it would run the sampler
    d_stop = float(level_from_snr(db_to_linear(stop_snr_db - 1e-6)))
    run = (d > d_stop) & (start.t > m_s)
    out = _view((1.0 - d).sqrt(), f_tilde).to(f_tilde.dtype) * f_tilde
    if bool(run.any()):
        idx = run.nonzero().squeeze(1)
        x = _view(start.alpha[idx], f_tilde[idx]).to(f_tilde.dtype) * f_tilde[idx]
        grid = continuous_grid(start.t[idx], steps, sched, end=m_s).to(x.device)
        grid[0] = v_s  # exactly, whatever S(S^-1(v_s)) rounds to
        x_s = ddim_sample(x, grid, net)  # VP form at level v_s: alpha_s * f_tilde_s
        alpha_s = float(_alpha_vp(torch.tensor(v_s, dtype=torch.float64), p0, 1.0))
        out[idx] = (math.sqrt(1.0 - d_s) / alpha_s) * x_s
    return _result(out, start, "continuous", False, int((~run).sum()), calls[0])


def _module_dtype(denoise: Denoiser) -> torch.dtype | None:
    """The floating dtype of a network denoiser's weights (None: a plain function)."""
    if isinstance(denoise, torch.nn.Module):
        for p in denoise.parameters():
            if p.is_floating_point():
                return p.dtype
    return None


def _in_network_dtype(denoise: Denoiser) -> Denoiser:
    """``denoise`` called in its network's dtype and answering in its input's (a plain
    function, or a network without floating weights, as it is)."""
    net = _module_dtype(denoise)
    if net is None:
        return denoise

    def in_net_dtype(x: Tensor, level: Tensor) -> Tensor:
        if x.dtype == net:
            return denoise(x, level)
        return denoise(x.to(net), level).to(x.dtype)

    return in_net_dtype


def _sched(schedule, cls):
    if schedule is None:
        return cls()
    if not isinstance(schedule, cls):
        raise TypeError(f"this rule needs a {cls.__name__}, got {type(schedule).__name__}")
    return schedule


class DiffusionReceiver:
    """:class:`semcom.link.Receiver` around :func:`diffusion_receive`.

    ``__call__(f_tilde [B, C, h, w], d [B, 1, 1, 1] or [B, C, h, w], generator)`` returns the
    estimate of the unit-power latent f; the last :class:`ReceiveResult` is kept in
    ``self.last`` (matched steps, clamping counters). ``skip_snr_db``: images whose
    (per-image) SNR is at or above it skip the network and get the LMMSE estimate
    ``sqrt(1-d) f_tilde`` (``info["n_skip_snr"]`` counts them; ``last`` is None when every
    image skips, and ``info`` says so): for a decoder trained behind the receiver, whose gain
    there is nil, and for a receiver stopped at ``stop_snr_db``, whose output there is that
    estimate anyway, this keeps the receiver as cheap as the codec.

    ``denoise`` and the keyword options are those of :func:`diffusion_receive` (``p0`` the
    training latents' power per real element, ``stop_snr_db`` / ``skip_snr_db`` in dB);
    ``name`` labels the receiver.
    """

    def __init__(
        self,
        denoise: Denoiser,
        *,
        p0: float = 1.0,
        rule: Rule = "continuous",
        steps: int = 1,
        schedule: DDPMSchedule | SigmoidSchedule | None = None,
        fading: FadingVariant = "naive",
        level_eps: float = DEFAULT_LEVEL_EPS,
        name: str = "diffusion",
        t_factor: float = 1.0,
        alpha_factor: float = 1.0,
        fading_grid: FadingGrid = "time",
        stop_snr_db: float | None = None,
        skip_snr_db: float | None = None,
        fading_samples: int = 1,
    ):
        self.denoise = denoise
        self.stop_snr_db = stop_snr_db
        self.skip_snr_db = skip_snr_db
        self.fading_grid, self.fading_samples = fading_grid, fading_samples
        self.t_factor, self.alpha_factor = t_factor, alpha_factor
        self.p0, self.rule, self.steps = p0, rule, steps
        self.schedule, self.fading, self.level_eps = schedule, fading, level_eps
        self._check_options()  # at construction, and again at each call
        self.name = name
        self.last: ReceiveResult | None = None
        #: what the last call did, for every call (``last.info``; when every image skipped:
        #: ``network_calls`` 0 and ``n_skip_snr``)
        self.info: dict[str, object] = {}
        #: per image of the last call, int64 [B]: ``step_clamped_high`` (the SNR lay above
        #: the schedule's range: t* = 0, the denoiser skipped) and ``step_clamped_low`` (below
        #: it: t* = T, started from noise), for verbose reports
        self.counts: dict[str, Tensor] = {}

    def _check_options(self) -> None:
        """Check the options again at each call (microseconds): one reassigned or changed in
        place since (``eval.experiments.perturb`` sets ``t_factor``) gets the error of
        :func:`diffusion_receive` at the call, not a bare one from deep in the sampler."""
        check_receiver_options(
            self.rule, self.steps, self.fading, self.fading_grid, self.fading_samples
        )
        check_scalar_options(
            self.p0, self.t_factor, self.alpha_factor, self.level_eps, self.stop_snr_db,
            self.skip_snr_db,
        )  # fmt: skip

    def __call__(
        self, f_tilde: Tensor, d: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """The estimate of f, in ``f_tilde``'s dtype. A network denoiser runs in its own
        dtype (the sampler's arithmetic in the input's: float64 stays float64 around a float32
        network; half / bfloat16 input is computed in float32); ValueError for an input that
        is not floating point."""
        x = _computing_dtype(f_tilde)
        self._check_options()
        return self._call(x, d, generator).to(f_tilde.dtype)

    def _call(self, f_tilde: Tensor, d: Tensor, generator: torch.Generator | None) -> Tensor:
        d = torch.as_tensor(d, device=f_tilde.device)
        n = f_tilde.shape[0]
        if self.skip_snr_db is not None and d.numel() == n:
            # SNR (1-d)/d >= skip  <=>  d <= level_from_snr(skip): one comparison, in float64
            # (an SNR given as 10 dB may come back 9.99..: 1e-6 dB of slack)
            d_skip = float(level_from_snr(db_to_linear(self.skip_snr_db - 1e-6)))
            high = d.reshape(-1).double() <= d_skip
            n_high = int(high.sum())
            if n_high:
                keep = _view((1.0 - d.reshape(-1)).clamp_min(0.0).sqrt(), f_tilde)
                out = keep.to(f_tilde.dtype) * f_tilde  # d [B] or [B, 1, 1, 1]
                self.last, self.info = None, {"network_calls": 0, "n_skip_snr": n_high}
                low = torch.arange(0)
                if n_high < n:
                    low = (~high).nonzero().squeeze(1)
                    res = self._receive(f_tilde[low], d[low], generator)
                    out[low] = res.f_hat
                    res.info["n_skip_snr"] = n_high
                    self.info = res.info
                self.counts = self._clamp_counts(n, low)
                return out
        res = self._receive(f_tilde, d, generator)
        self.info = res.info
        self.counts = self._clamp_counts(n, torch.arange(n))
        return res.f_hat

    def _clamp_counts(self, n: int, rows: Tensor) -> dict[str, Tensor]:
        """:attr:`counts` of a call on ``n`` images, the receiver run on ``rows`` of them."""
        high = torch.zeros(n, dtype=torch.long)
        low = torch.zeros(n, dtype=torch.long)
        if self.last is not None:
            start = self.last.start
            m = start.clamped.shape[0]  # per image, or per element under fast fading
            clamped = start.clamped.reshape(m, -1).any(1).cpu()
            noise = start.start_from_noise.reshape(m, -1).any(1).cpu()
            high[rows.cpu()] = (clamped & ~noise).long()
            low[rows.cpu()] = (clamped & noise).long()
        return {"step_clamped_high": high, "step_clamped_low": low}

    def _receive(
        self, f_tilde: Tensor, d: Tensor, generator: torch.Generator | None
    ) -> ReceiveResult:
        """:func:`diffusion_receive` on these images (float32 / float64; input and options
        checked by :meth:`__call__`), kept in :attr:`last`."""
        self.last = _receive_checked(
            f_tilde,
            d,
            self.denoise,  # run in the network's dtype by _receive_checked
            self.p0,
            self.rule,
            self.steps,
            self.schedule,
            self.fading,
            generator,
            self.level_eps,
            self.t_factor,
            self.alpha_factor,
            self.fading_grid,
            self.stop_snr_db,
            self.fading_samples,
        )
        return self.last
