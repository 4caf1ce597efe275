"""Paper B Algorithm 3 (corrected, docs/math.md §3): the fast-fading sampler for per-element
noise levels, water-filling noise injection then DDIM on a common level grid."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .._checks import check_count
from .samplers import (
    Denoiser,
    _check_steps,
    _per_image,
    _view,
    continuous_grid,
    ddim_sample,
    ddim_update,
)
from .schedules import SigmoidSchedule

__all__ = ["fast_fading_sample", "inject_noise", "waterfill_sample"]

FadingVariant = Literal["waterfill", "reference", "naive"]
#: Level grid of the per-element (fast-fading) path: ``"time"`` uniform in the rule's own
#: time from the largest element level (paper B), ``"quantile"`` through the quantiles of
#: the element levels (:func:`quantile_grid`).
FadingGrid = Literal["time", "quantile"]


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
