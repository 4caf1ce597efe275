"""The diffusion receiver (docs/math.md §1): step-matched denoising of the equalised latent
(:func:`diffusion_receive`, :class:`DiffusionReceiver`) with the per-image samplers of
:mod:`semcom.diffusion.samplers` or, for per-element levels, :mod:`semcom.diffusion.fading`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from .._checks import check_count, check_real, real_tensor
from ..names import FADING_GRIDS, FADING_VARIANTS, RULES
from .fading import FadingGrid, FadingVariant, waterfill_sample
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
from .samplers import (
    Denoiser,
    _view,
    continuous_grid,
    ddim_sample,
    ddm_grid,
    ddm_sample,
    ddpm_grid,
    quantile_grid,
)
from .schedules import DDMSchedule, DDPMSchedule, SigmoidSchedule

__all__ = ["DiffusionReceiver", "ReceiveResult", "diffusion_receive"]

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
    if fading_grid != "time" and fading == "naive":  # it would run as naive, labelled quantile
        raise ValueError(
            f"fading_grid={fading_grid!r} (--fading-grid) is the grid of the per-element "
            "samplers: give fading='waterfill' or 'reference' (naive matching runs on the "
            "per-image mean level)"
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
