"""Noise schedules, independent of any network (docs/math.md §1.1, §1.2, §2).

Every schedule here is described in the library's one conditioning unit, the **VP noise
variance** ``v = 1 - abar`` in ``[0, 1]`` (see :mod:`semcom.diffusion`): the forward process
is ``x_v = sqrt(1 - v) x0 + sqrt(v) eps`` with ``eps ~ N(0, I)``; ``v = 0`` is clean data and
``v = 1`` is pure noise.

* :class:`DDPMSchedule` -- discrete DDPM (linear or cosine betas), integer ``t in {0..T}``
  with ``t = 0`` the clean data (``abar_0 = 1``), ``level(t) = 1 - abar_t``.
* :class:`SigmoidSchedule` -- paper B eq. 17, continuous ``t in [0, 1]``,
  ``level(t) = S(t)`` with ``S(0) = 0``, ``S(1) = 1`` and an exact inverse.
* :class:`DDMSchedule` -- paper A's decoupled form ``x_t = (1-t) x0 + sqrt(t) eps``,
  ``t in [0, 1]``; dividing by ``c_t = sqrt((1-t)^2 + t)`` gives VP form with
  ``v = t / ((1-t)^2 + t)`` (inverse ``t = 2v / (1 + v + sqrt((1-v)(1+3v)))``).

All functions are vectorised over tensors of any shape, compute in float64 internally and
return the input's floating dtype (float64 for Python numbers and integer tensors). Inputs
outside the documented domain are **clamped** to it; NaN raises ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from .._checks import check_count, check_real, real_tensor

__all__ = ["DDMSchedule", "DDPMSchedule", "SigmoidSchedule"]


def _as64(x: Tensor | float, name: str) -> tuple[Tensor, torch.dtype]:
    """Input ``name`` (times or noise levels) as a float64 tensor plus the dtype results should
    be returned in. ``ValueError`` for NaN, bools or complex numbers, ``TypeError`` for what is
    not numbers (a string, None); a tensor's dtype is checked without a copy."""
    t = _real_input(x, name, "times or noise levels")
    out = t.dtype if isinstance(x, Tensor) and x.is_floating_point() else torch.float64
    t = t.to(torch.float64)
    if bool(torch.isnan(t).any()):  # clamping keeps NaN: say so here, not as NaN downstream
        raise ValueError(f"schedule input {name} holds NaN (a time or noise level)")
    return t, out


def _real_input(
    x: object, name: str, what: str, dtype: torch.dtype | None = torch.float64
) -> Tensor:
    """``x`` as a tensor: a real tensor as it is (only its dtype is looked at), anything else
    through :func:`real_tensor` (in ``dtype``); ``ValueError`` for bools or complex numbers,
    ``TypeError`` for what is not numbers."""
    if isinstance(x, Tensor) and x.dtype != torch.bool and not x.is_complex():
        return x
    return real_tensor(x, name, what, "a number, a list or a tensor", dtype=dtype)


def check_linear_betas(beta_start: object, beta_end: object) -> tuple[float, float]:
    """``(beta_start, beta_end)`` as floats if ``0 < beta_start <= beta_end < 1`` (a linear
    DDPM schedule; equal betas are a constant one), else ``ValueError`` naming both (NaN, inf,
    a bool or a complex number too); ``TypeError`` for what is not a number."""
    check_real(beta_start, "beta_start")
    check_real(beta_end, "beta_end")
    b0, b1 = float(beta_start), float(beta_end)  # type: ignore[arg-type]
    if not 0 < b0 <= b1 < 1:
        raise ValueError(
            f"linear betas need 0 < beta_start <= beta_end < 1, got beta_start={b0!r}, "
            f"beta_end={b1!r}"
        )
    return b0, b1


def _real_in(x: object, name: str, ok: Callable[[float], bool], allowed: str) -> float:
    """``x`` as a float if it is a real number with ``ok(x)`` (NaN fails every comparison),
    else ``ValueError`` naming ``name`` and the ``allowed`` range (a bool or a complex number
    too); ``TypeError`` for what is not a number."""
    check_real(x, name)
    v = float(x)  # type: ignore[arg-type]
    if not ok(v):
        raise ValueError(f"{name} must be {allowed}, got {v!r}")
    return v


class DDPMSchedule:
    """Discrete DDPM schedule with ``T`` steps (docs/math.md §1.1).

    Args:
        kind: ``"linear"``: ``beta_t = beta_start + (t-1)(beta_end-beta_start)/(T-1)``,
            ``t = 1..T``; ``"cosine"`` (Nichol & Dhariwal 2021):
            ``abar(t) = f(t)/f(0)``, ``f(t) = cos^2(((t/T)+s)/(1+s) * pi/2)``, ``s = 0.008``,
            betas ``1 - abar_t/abar_{t-1}`` clipped to ``max_beta = 0.999`` (then ``abar`` is
            recomputed as the product, so ``abar_T > 0``).
        T: number of diffusion steps (an integer >= 1).
        beta_start, beta_end: linear-schedule endpoints, ``0 < beta_start <= beta_end < 1``
            (equal: a constant schedule; ignored for cosine).
        cosine_s, max_beta: the cosine schedule's offset ``s``, finite and ``>= 0``, and beta
            clip, in ``(0, 1)`` (ignored for linear).

    ``ValueError`` naming the argument and its range for a number outside it (NaN and inf
    too), a bool or a complex number, ``TypeError`` for what is not a number; the numbers a
    kind ignores must still be real numbers.

    Attributes (float64, CPU):
        betas: [T], ``betas[i] = beta_{i+1}``.
        alpha_bars: [T+1], ``alpha_bars[t] = abar_t`` with ``alpha_bars[0] = 1`` (clean).
        levels: [T+1], the VP noise variance ``1 - abar_t`` (``levels[0] = 0``).
        log_snrs: [T+1], ``ln(abar_t / (1-abar_t))`` for a unit-power x0
            (``log_snrs[0] = +inf``); strictly decreasing in t.
    """

    def __init__(
        self,
        kind: Literal["linear", "cosine"] = "linear",
        T: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        cosine_s: float = 0.008,
        max_beta: float = 0.999,
    ):
        self.T: int = check_count(T, "T")
        self.kind: Literal["linear", "cosine"] = kind
        if kind not in ("linear", "cosine"):
            raise ValueError(f"kind must be 'linear' or 'cosine', got {kind!r}")
        # every number is checked to be one; the range only of those the kind uses
        for name, x in (("beta_start", beta_start), ("beta_end", beta_end),
                        ("cosine_s", cosine_s), ("max_beta", max_beta)):  # fmt: skip
            check_real(x, name)
        if kind == "linear":
            b0, b1 = check_linear_betas(beta_start, beta_end)
            if T == 1:
                betas = torch.tensor([b0], dtype=torch.float64)
            else:
                betas = torch.linspace(b0, b1, T, dtype=torch.float64)
        else:
            # s < 0 makes abar rise above 1 at the first steps (betas clipped to 0: levels 0)
            s = _real_in(cosine_s, "cosine_s", lambda v: 0 <= v < math.inf, "a finite number >= 0")
            # max_beta = 1 gives abar_T = 0 (log-SNR -inf), 0 a table of zero levels
            top = _real_in(max_beta, "max_beta", lambda v: 0 < v < 1, "in (0, 1)")
            steps = torch.arange(T + 1, dtype=torch.float64)
            f = torch.cos((steps / T + s) / (1 + s) * math.pi / 2) ** 2
            ab = f / f[0]
            betas = (1 - ab[1:] / ab[:-1]).clamp(0.0, top)
        self.betas: Tensor = betas
        self.alpha_bars: Tensor = torch.cat(
            [torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)]
        )
        self.levels: Tensor = 1.0 - self.alpha_bars
        with torch.no_grad():
            self.log_snrs: Tensor = torch.log(self.alpha_bars) - torch.log(self.levels)

    def __repr__(self) -> str:
        return f"DDPMSchedule(kind={self.kind!r}, T={self.T})"

    def _index(self, t: Tensor | int) -> Tensor:
        t = _real_input(t, "t", "steps", dtype=None)  # a number: torch.as_tensor's dtype
        if t.is_floating_point():
            if bool(torch.isnan(t).any()):  # NaN.long() is no step (it became step 0)
                raise ValueError("schedule input t holds NaN (a step)")
            t = t.round()
        return t.long().clamp(0, self.T)

    def alpha_bar(self, t: Tensor | int) -> Tensor:
        """``abar_t`` for integer ``t`` (clamped to ``[0, T]``; floats are rounded), float64."""
        t = self._index(t)
        return self.alpha_bars.to(t.device)[t]

    def level(self, t: Tensor | int) -> Tensor:
        """VP noise variance ``1 - abar_t`` (the network conditioning unit), float64."""
        t = self._index(t)
        return self.levels.to(t.device)[t]

    def _tables(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """:attr:`levels` and :attr:`log_snrs` (float64, on ``device``) as a float32 level
        holds them (other dtypes: the exact table): the samplers hand a network its level in
        ``x_t``'s dtype, and ``level(t)`` rounded to float32 lies off the float64 table
        (``t = 1`` read as 0 by the nearest rule, about every other ``t`` as ``t + 1`` by
        ``ceil``). Half precision cannot tell hundreds of steps apart, so it keeps the
        float64 table (``v = 1`` -> T)."""
        if dtype != torch.float32:  # float64 exact; half / bfloat16 merge hundreds of steps
            return self.levels.to(device), self.log_snrs.to(device)
        levels = self.levels.to(dtype).to(device, torch.float64)
        with torch.no_grad():
            return levels, torch.log1p(-levels) - torch.log(levels)

    def index_from_level(self, v: Tensor | float, mode: str = "nearest") -> Tensor:
        """Integer step for the noise variance ``v`` (clamped to ``[0, 1]``), long.

        ``mode="nearest"``: nearest in log-SNR (``v = 0`` -> 0, ``v = 1`` -> T), the rule of
        Theorem 1 (VP); ``mode="ceil"``: the smallest ``t`` with ``level(t) >= v`` (T if none).
        Useful for network adapters conditioned on the DDPM index: a float32 ``v`` is read
        against the table rounded to float32, so ``level(t)`` as a network receives it gives
        back ``t``.
        """
        v64, dt = _as64(v, "v")
        v64 = v64.clamp(0.0, 1.0)
        levels, log_snrs = self._tables(dt, v64.device)
        if mode == "ceil":
            idx = torch.searchsorted(levels, v64.reshape(-1).contiguous(), right=False)
            return idx.clamp(0, self.T).reshape(v64.shape)
        if mode != "nearest":
            raise ValueError(f"mode must be 'nearest' or 'ceil', got {mode!r}")
        with torch.no_grad():
            lam = torch.log1p(-v64) - torch.log(v64)  # +inf at v = 0, -inf at v = 1
        return _nearest_log_snr(log_snrs, lam)

    def timestep_from_level(self, v: Tensor | float) -> Tensor:
        """Fractional step ``t in [0, T]`` for the variance ``v``, linear in log-SNR (float64).

        For continuous-time network conditioning (docs/math.md §1.1: "interpolate t linearly in
        lambda"). Between ``t = 0`` (``lambda = inf``) and ``t = 1`` it interpolates in ``v``.
        A float32 ``v`` is read against the table rounded to float32, as in
        :meth:`index_from_level`.
        """
        v64, dt = _as64(v, "v")
        v64 = v64.clamp(0.0, 1.0)
        levels, lam_tab = self._tables(dt, v64.device)
        with torch.no_grad():
            lam = torch.log1p(-v64) - torch.log(v64)
        # flipped table is increasing: lam_tab[T], ..., lam_tab[1]
        inc = lam_tab[1:].flip(0).contiguous()
        pos = torch.searchsorted(inc, lam.reshape(-1).contiguous()).reshape(lam.shape)
        # pos in [0, T]: inc[pos-1] < lam <= inc[pos]; index in the table t = T - pos (+ ...)
        hi_t = (self.T - pos).clamp(1, self.T)  # step with lambda >= lam (or T)
        lo_t = (hi_t + 1).clamp(max=self.T)
        lam_hi = lam_tab[hi_t]
        lam_lo = lam_tab[lo_t]
        den = lam_hi - lam_lo
        frac = torch.where(den > 0, (lam_hi - lam) / torch.where(den > 0, den, 1.0), 0.0)
        t = hi_t.to(torch.float64) + frac.clamp(0.0, 1.0)
        # above lambda_1: interpolate in v between t = 0 (v = 0) and t = 1
        v1 = levels[1].item()
        t = torch.where(lam > lam_tab[1], v64 / v1, t)
        return t.clamp(0.0, float(self.T))


def _nearest_log_snr(table: Tensor, lam: Tensor) -> Tensor:
    """``argmin_{t in 1..T} |table[t] - lam|``, 0 above ``table[1]``, T below ``table[T]``.

    ``table`` [T+1] strictly decreasing (``table[0] = inf``); ``lam`` any shape, float64.
    Ties go to the smaller t. Non-increasing in ``lam``.
    """
    T = table.numel() - 1
    inc = table[1:].flip(0).contiguous()  # increasing: lambda_T .. lambda_1
    flat = lam.reshape(-1).contiguous()
    pos = torch.searchsorted(inc, flat.clamp(inc[0], inc[-1]))  # inc[pos-1] < lam <= inc[pos]
    pos = pos.clamp(0, T - 1)
    upper = inc[pos]  # >= lam, i.e. t = T - pos
    lower = inc[(pos - 1).clamp(min=0)]
    t_upper = T - pos
    t_lower = (t_upper + 1).clamp(max=T)
    fl = flat.clamp(inc[0], inc[-1])
    choose_lower = (fl - lower) < (upper - fl)  # strictly closer to the larger t
    t = torch.where(choose_lower & (pos > 0), t_lower, t_upper)
    t = torch.where(flat > inc[-1], torch.zeros_like(t), t)
    t = torch.where(flat < inc[0], torch.full_like(t, T), t)
    return t.reshape(lam.shape)


def _sig(x: float) -> float:
    try:
        return 1.0 / (1.0 + math.exp(-x))
    except OverflowError:  # x < -709: 1/(1 + e^-x) = e^x to double precision
        return math.exp(x)


class SigmoidSchedule:
    """Paper B's continuous sigmoid schedule (eq. 17, docs/math.md §2).

    ``S(t) = [sig((t(e-g)+g)/tau) - sig(g/tau)] / [sig(e/tau) - sig(g/tau)]`` on
    ``t in [0, 1]``: ``S(0) = 0``, ``S(1) = 1``, strictly increasing; ``S(t)`` is the VP noise
    variance (``beta_bar_t``). Paper and code: ``start = g = 0``, ``end = e = 3``,
    ``tau = 0.7``. No ``[1e-6, 1-1e-6]`` clip is applied here (the matching layer clamps
    the levels instead, see :mod:`semcom.diffusion.matching`).

    Args:
        start: ``g``; end: ``e`` (``end > start``); tau: temperature ``> 0``; all finite
            (``ValueError`` otherwise, also where ``sig(start/tau) = sig(end/tau)`` in float64).

    Times and levels are unitless, any shape; results come in the input tensor's float dtype
    (float64 for numbers and integer tensors), computed in float64. NaN: ``ValueError``.
    """

    def __init__(self, start: float = 0.0, end: float = 3.0, tau: float = 0.7):
        for name, x in (("start", start), ("end", end), ("tau", tau)):
            check_real(x, name)
        self.start, self.end, self.tau = float(start), float(end), float(tau)
        got = f"got start={self.start!r}, end={self.end!r}, tau={self.tau!r}"
        finite = all(map(math.isfinite, (self.start, self.end, self.tau)))
        if not (finite and self.end > self.start and self.tau > 0):  # NaN fails too
            raise ValueError(f"SigmoidSchedule needs finite end > start and tau > 0, {got}")
        self._lo = _sig(self.start / self.tau)
        self._hi = _sig(self.end / self.tau)
        self._hi_c = _sig(-self.end / self.tau)  # 1 - sig(e/tau), exact where sig(e/tau) ~ 1
        if not self._hi > self._lo:  # both ~1 (start/tau > ~37) or both 0 (end/tau < -745)
            raise ValueError(
                f"SigmoidSchedule is flat in float64: sig(start/tau) = sig(end/tau), {got}"
            )

    def __repr__(self) -> str:
        return f"SigmoidSchedule(start={self.start}, end={self.end}, tau={self.tau})"

    def __call__(self, t: Tensor | float) -> Tensor:
        """:meth:`S`: the noise variance ``S(t)`` in ``[0, 1]``."""
        return self.S(t)

    def S(self, t: Tensor | float) -> Tensor:
        """Noise variance ``S(t)`` in ``[0, 1]`` for ``t`` (clamped to ``[0, 1]``)."""
        t64, dt = _as64(t, "t")
        t64 = t64.clamp(0.0, 1.0)
        x = (t64 * (self.end - self.start) + self.start) / self.tau
        den = self._hi - self._lo
        # upper half from the complement, 1 - S = [sig(-x) - sig(-e/tau)] / den: sig(x) near 1
        # keeps only ~1e-16 absolute resolution (it rounds to 1 for x > ~37), which flattened
        # the top of steep schedules (end/tau ~ 35) into equal values
        lower = (torch.sigmoid(x) - self._lo) / den
        upper = 1.0 - (torch.sigmoid(-x) - self._hi_c) / den
        s = torch.where(lower < 0.5, lower, upper)
        s = torch.where(t64 <= 0, 0.0, torch.where(t64 >= 1, 1.0, s))  # exact endpoints
        return s.clamp(0.0, 1.0).to(dt)

    level = S

    def S_inv(self, v: Tensor | float) -> Tensor:
        """Exact inverse ``t = (tau*logit(p) - g)/(e - g)``,
        ``p = v (sig(e/tau) - sig(g/tau)) + sig(g/tau)``; ``v`` clamped to ``[0, 1]``,
        result in ``[0, 1]``."""
        v64, dt = _as64(v, "v")
        v64 = v64.clamp(0.0, 1.0)
        den = self._hi - self._lo
        p = v64 * den + self._lo  # in [sig(g/tau), sig(e/tau)] subset (0, 1)
        q = (1.0 - v64) * den + self._hi_c  # 1 - p, exact where p ~ 1 (the upper half)
        logit = torch.where(v64 < 0.5, torch.logit(p), torch.log1p(-q) - torch.log(q))
        t = (self.tau * logit - self.start) / (self.end - self.start)
        t = torch.where(v64 <= 0, 0.0, torch.where(v64 >= 1, 1.0, t))  # exact endpoints
        return t.clamp(0.0, 1.0).to(dt)

    t_from_level = S_inv


class DDMSchedule:
    """Paper A's decoupled (DDM) form ``x_t = (1-t) x0 + sqrt(t) eps``, ``t in [0, 1]``
    (docs/math.md §1.2).

    Mapping to the VP conditioning unit: ``x_t / c_t`` with ``c_t = sqrt((1-t)^2 + t)`` is
    ``sqrt(1-v) x0 + sqrt(v) eps`` with ``v = t / ((1-t)^2 + t)`` (the coefficients' squares
    sum to 1). The SNR for an x0 of power P0 is ``(1-t)^2 P0 / t = (1-v) P0 / v`` in both
    forms, so matching in either form gives the same ``v`` (``P0/(k+P0)``). Inverse:
    ``v t^2 - (1+v) t + v = 0`` whose root in ``[0, 1]`` is
    ``t = 2v / (1 + v + sqrt((1-v)(1+3v)))``. ``t`` and ``v`` are clamped to ``[0, 1]``; any
    shape, results in the input tensor's float dtype (float64 for numbers).
    """

    def __repr__(self) -> str:
        return "DDMSchedule()"

    def signal_coef(self, t: Tensor | float) -> Tensor:
        """``1 - t``."""
        t64, dt = _as64(t, "t")
        return (1.0 - t64.clamp(0.0, 1.0)).to(dt)

    def noise_std(self, t: Tensor | float) -> Tensor:
        """``sqrt(t)``."""
        t64, dt = _as64(t, "t")
        return t64.clamp(0.0, 1.0).sqrt().to(dt)

    def scale(self, t: Tensor | float) -> Tensor:
        """``c_t = sqrt((1-t)^2 + t)`` in ``[sqrt(3)/2, 1]``: ``x_t / c_t`` is VP-form."""
        t64, dt = _as64(t, "t")
        t64 = t64.clamp(0.0, 1.0)
        return ((1.0 - t64) ** 2 + t64).sqrt().to(dt)

    def level(self, t: Tensor | float) -> Tensor:
        """VP noise variance ``v = t / ((1-t)^2 + t)`` in ``[0, 1]``."""
        t64, dt = _as64(t, "t")
        t64 = t64.clamp(0.0, 1.0)
        return (t64 / ((1.0 - t64) ** 2 + t64)).clamp(0.0, 1.0).to(dt)

    def t_from_level(self, v: Tensor | float) -> Tensor:
        """Inverse of :meth:`level`: ``t = 2v / (1 + v + sqrt((1-v)(1+3v)))``."""
        v64, dt = _as64(v, "v")
        v64 = v64.clamp(0.0, 1.0)
        t = 2.0 * v64 / (1.0 + v64 + ((1.0 - v64) * (1.0 + 3.0 * v64)).sqrt())
        return t.clamp(0.0, 1.0).to(dt)
