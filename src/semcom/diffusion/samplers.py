"""Step-matched samplers: DDIM and paper A's DDM reverse process on level grids
(docs/math.md §1, §2 Alg. 2); the fast-fading sampler is :mod:`semcom.diffusion.fading`, the
receiver around them :mod:`semcom.diffusion.receiver`.

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

from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_count
from .schedules import DDMSchedule, DDPMSchedule, SigmoidSchedule

__all__ = [
    "Denoiser",
    "continuous_grid",
    "ddim_continuous",
    "ddim_discrete",
    "ddim_sample",
    "ddim_update",
    "ddm_grid",
    "ddm_sample",
    "ddpm_grid",
    "quantile_grid",
]

#: ``denoise(x_t [B, ...], level [B]) -> x0_hat [B, ...]`` (VP form, training units).
Denoiser = Callable[[Tensor, Tensor], Tensor]


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


#: names that lived here before the receiver and the fast-fading sampler got modules of
#: their own (2026-12-01): name -> its module now
_MOVED = {
    "DiffusionReceiver": "receiver",
    "ReceiveResult": "receiver",
    "diffusion_receive": "receiver",
    "check_receiver_options": "receiver",
    "RULES": "receiver",
    "FADING_GRIDS": "receiver",
    "FADING_VARIANTS": "receiver",
    "fast_fading_sample": "fading",
    "inject_noise": "fading",
    "waterfill_sample": "fading",
}


def __getattr__(name: str) -> object:
    """A name of :data:`_MOVED` from its new module, with a ``DeprecationWarning`` naming it
    (``from semcom.diffusion.samplers import DiffusionReceiver`` keeps working)."""
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    import warnings

    package = importlib.import_module(__package__)
    also = f" (also semcom.diffusion.{name})" if name in package.__all__ else ""
    warnings.warn(
        f"semcom.diffusion.samplers.{name} moved to semcom.diffusion.{module}.{name}{also}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(f".{module}", __package__), name)
