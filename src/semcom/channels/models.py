"""Channel models on Sionna PHY blocks: AWGN, slow (block) and fast (per-symbol) Rayleigh.

Conventions (README "Conventions"): inputs are complex symbols ``z`` [B, M] with ``E|z|^2 = 1``;
the SNR is Es/N0 in dB, one value per image ([B] tensor), noise ``CN(0, N0)`` with
``N0 = 10^(-SNR_dB/10)`` as Sionna's ``AWGN()(x, no)``. Under fading ``y = h z + n`` with
``h ~ CN(0, 1)``, so the *equivalent* SNR is ``|h|^2 / N0``.

Sampling the channel (:meth:`Channel.sample`) is separate from applying it
(:meth:`Channel.apply`), as in Sionna; ``__call__`` does both. Every stochastic call takes
a ``torch.Generator`` so results are reproducible.

Sionna (which pulls in SciPy, Matplotlib and ``torch._dynamo``, ~2 s) is imported when a
channel first sends something, not with this module: ``semcom --help`` and option errors
stay fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import torch
from torch import Tensor

from .._checks import check_count, real_tensor
from ..names import CHANNELS, CSI_MODES, SNR_LIMIT_DB


class _SeededMixin:
    """Make a Sionna block draw from an explicit ``torch.Generator`` (ours, per call)."""

    _generator: torch.Generator | None = None

    @property
    def torch_rng(self) -> torch.Generator:  # overrides sionna.phy.Object.torch_rng
        """The generator set for this call (``RuntimeError`` when none is)."""
        if self._generator is None:
            raise RuntimeError("internal: generator not set before calling the Sionna block")
        return self._generator


@cache
def import_sionna() -> None:
    """Import ``sionna.phy`` (once per process) without touching torch's global random state:
    Sionna's configuration reseeds torch's default CPU and CUDA generators at random when it
    is imported, which undid a ``torch.manual_seed`` of the caller (a training run's saved RNG
    state differed from run to run). Call before importing any Sionna module."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):  # restores every state on the way out
        import sionna.phy  # noqa: F401


@cache
def _sionna_classes() -> tuple[type, type, type]:
    """Sionna's AWGN and flat-fading generator drawing from our generator (seeded
    subclasses), and its flat-fading apply block; imported on first use."""
    import_sionna()
    from sionna.phy.channel import AWGN, ApplyFlatFadingChannel, GenerateFlatFadingChannel

    seeded_awgn = type("_AWGN", (_SeededMixin, AWGN), {"__module__": __name__})
    seeded_gen = type(
        "_GenerateFading", (_SeededMixin, GenerateFlatFadingChannel), {"__module__": __name__}
    )
    return seeded_awgn, seeded_gen, ApplyFlatFadingChannel


def snr_to_no(snr_db: Tensor | float) -> Tensor:
    """Es/N0 in dB (tensor or number) -> noise power ``N0 = 10^(-snr_db/10)`` per complex
    symbol (linear, float64, same shape), for Es = 1. +inf -> 0. ``ValueError`` for bools or
    complex numbers, ``TypeError`` for what is not numbers (as :func:`as_snr_tensor`)."""
    return torch.pow(10.0, -real_tensor(snr_db, "snr_db", "numbers of dB") / 10.0)


def as_snr_tensor(snr_db: float | Tensor | list[float], batch: int, device=None) -> Tensor:
    """Broadcast an SNR (scalar, list or [B] tensor, dB) to a float64 [B] tensor.

    ``ValueError`` for NaN, -inf, values below ``-SNR_LIMIT_DB``, bools or complex numbers
    (a Python number, a list, an array or a tensor alike) or a length other than ``batch``;
    ``TypeError`` for what is not numbers (e.g. the string ``"0"``, None)."""
    t = real_tensor(
        snr_db, "snr_db", "numbers of dB", "a float, a list or a [B] tensor", device=device
    ).reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"snr_db has {t.numel()} values for a batch of {batch} images")
    if torch.isnan(t).any() or (t == -math.inf).any():
        raise ValueError("snr_db must be a number or +inf (noiseless), not NaN or -inf")
    if (t < -SNR_LIMIT_DB).any():
        raise ValueError(
            f"snr_db {float(t.min()):g} dB is below -{SNR_LIMIT_DB:g} dB, the lowest a channel "
            "takes (the noise power overflows float32 near -385 dB)"
        )
    return t.clone()


@dataclass(frozen=True)
class ChannelState:
    """One channel realisation for a batch.

    Attributes:
        h: true complex gain per data symbol, [B, 1] (AWGN, slow) or [B, M] (fast).
        no: noise power N0 per complex symbol, [B] (linear, in ``z``'s real dtype).
        h_hat: the receiver's channel knowledge, same shape as ``h`` (= ``h`` for perfect CSI).
        pilot_symbols: channel uses per image spent on pilots (0 for perfect CSI).
        h_err: variance of the receiver's channel-estimation error ``h - h_hat`` per symbol,
            [B] (linear); ``None`` for perfect CSI. The equaliser adds it to N0 (the error
            times the unit-power symbol acts as extra noise).
    """

    h: Tensor
    no: Tensor
    h_hat: Tensor
    pilot_symbols: int = 0
    h_err: Tensor | None = None

    @property
    def snr_eq_db(self) -> Tensor:
        """Equivalent SNR ``|h|^2/N0`` in dB, per symbol ([B, 1] or [B, M])."""
        return 10.0 * torch.log10(self.h.abs().pow(2) / self.no.unsqueeze(-1))


class Channel:
    """A SISO channel with one of :data:`CHANNELS` fading models and a CSI mode.

    ``channel(z, snr_db, generator) -> (y, state)``: ``z`` complex symbols [B, M] with
    **unit average power per image** (``E|z|^2 = 1``, :func:`semcom.channels.mapping.pack`
    normalises latents so), ``snr_db`` the Es/N0 in dB (scalar or [B]): the noise power per
    complex symbol is ``N0 = 10^(-snr_db/10)`` whatever the input's power, so unnormalised
    symbols get another SNR than asked. ``y = h z + n`` [B, M]; ``state`` the realisation.

    Args:
        name: ``"awgn"``, ``"rayleigh-slow"`` (one ``h`` per image) or ``"rayleigh-fast"``
            (i.i.d. ``h`` per block of ``coherence`` symbols; 1 = per symbol).
        csi: ``"perfect"`` (receiver knows ``h``) or ``"estimated"`` (from ``pilots``
            unit-energy pilot symbols per coherence block: least squares on AWGN, LMMSE under
            fading with the gain's prior of :meth:`gain_prior`, Rayleigh's by default; the
            pilots are counted as channel uses, see :meth:`pilot_symbols`).
        pilots: pilot symbols per coherence block for ``csi="estimated"``; default 16 for
            AWGN and slow fading (one block per image), 1 for fast fading (every block).
            ``ValueError`` with perfect CSI (it would change nothing).
        coherence: symbols per independent fading block for ``rayleigh-fast`` (``ValueError``
            for another value than 1 on the other channels).

    A channel of your own (Rician, phase noise, ...) subclasses it: ``super().__init__`` with
    the built-in model whose block structure and CSI estimation it keeps (:attr:`model`),
    :meth:`sample` overridden to return its :class:`ChannelState` (``h`` per image [B, 1] or
    per symbol [B, M], ``h_hat`` what the receiver knows; per symbol with estimated CSI needs
    ``"rayleigh-fast"``, whose pilots are charged per block), :meth:`gain_prior` overridden
    when its gains are not ``CN(0, 1)`` (the pilot estimate's prior: with Rayleigh's, a
    Rician gain's estimate is biased towards 0 and ``d`` misses the noise level), and
    ``self.name`` set to a label naming its parameters (``"rician-k4"``), which results
    record and merging compares. README "Your own pieces" has a Rician example.
    """

    def __init__(
        self,
        name: str = "awgn",
        csi: str = "perfect",
        pilots: int | None = None,
        coherence: int = 1,
    ) -> None:
        if name not in CHANNELS:
            raise ValueError(f"unknown channel {name!r}; choose from {', '.join(CHANNELS)}")
        if csi not in CSI_MODES:
            raise ValueError(f"unknown CSI mode {csi!r}; choose from {', '.join(CSI_MODES)}")
        # an option that would change nothing is refused (a slip: as get_scheme does)
        if pilots is not None and csi != "estimated":
            raise ValueError(
                f"pilots={pilots!r} applies to csi='estimated' (pilots estimate the channel)"
            )
        if coherence != 1 and name != "rayleigh-fast":
            raise ValueError(
                f"coherence={coherence!r} applies to 'rayleigh-fast' ({name!r} has one gain "
                "per image)"
            )
        if pilots is None:
            pilots = 1 if name == "rayleigh-fast" else 16
        pilots, coherence = check_count(pilots, "pilots"), check_count(coherence, "coherence")
        self.name, self.csi, self.pilots, self.coherence = name, csi, pilots, coherence
        #: the built-in model (one of :data:`CHANNELS`) run: ``name`` unless a subclass
        #: relabels itself; its fading blocks, pilots and CSI estimation follow it
        self.model = name
        # (device, precision) -> Sionna's (seeded AWGN, seeded fading generator, apply block)
        self._blocks: dict[tuple[str, str], tuple[Any, Any, Any]]
        self._blocks = {}

    def __getstate__(self) -> dict:
        # Sionna's blocks are rebuilt on first use (pickling for workers, deepcopy)
        return {**self.__dict__, "_blocks": {}}

    def __repr__(self) -> str:
        extra = f", pilots={self.pilots}" if self.csi == "estimated" else ""
        if self.model == "rayleigh-fast" and self.coherence > 1:
            extra += f", coherence={self.coherence}"
        return f"Channel({self.name!r}, csi={self.csi!r}{extra})"

    def _sionna(self, device: torch.device, precision: str):
        key = (str(device), precision)
        if key not in self._blocks:
            dev = "cpu" if device.type == "cpu" else str(device)
            seeded_awgn, seeded_gen, apply_fading = _sionna_classes()
            awgn = seeded_awgn(precision=precision, device=dev)
            apply = apply_fading(precision=precision, device=dev)
            apply._awgn = awgn  # its noise must come from our generator too
            gen = seeded_gen(1, 1, precision=precision, device=dev)
            self._blocks[key] = (awgn, gen, apply)
        return self._blocks[key]

    # ------------------------------------------------------------------ sizes
    def n_blocks(self, n_symbols: int) -> int:
        """Independent fading blocks per image for ``n_symbols`` data symbols."""
        if self.model == "rayleigh-fast":
            return math.ceil(n_symbols / self.coherence)
        return 1

    def pilot_symbols(self, n_symbols: int) -> int:
        """Pilot channel uses per image for ``n_symbols`` data symbols (0 for perfect CSI, and
        when no data is sent: a budget too small for the pilots sends nothing)."""
        if self.csi == "perfect" or n_symbols <= 0:
            return 0
        return self.pilots * self.n_blocks(n_symbols)

    # --------------------------------------------------------------- sampling
    def sample(
        self, z: Tensor, snr_db: float | Tensor, generator: torch.Generator | None = None
    ) -> ChannelState:
        """Draw the fading gains for symbols ``z`` [B, M] at ``snr_db`` (scalar or [B], dB):
        a :class:`ChannelState` with ``h`` [B, 1] or [B, M] and ``N0`` [B] (no noise yet, no
        CSI yet: ``h_hat = h``)."""
        b, m = z.shape
        precision = "double" if z.dtype == torch.complex128 else "single"
        _, gen, _ = self._sionna(z.device, precision)
        gen._generator = _generator_for(generator, z.device)
        snr = as_snr_tensor(snr_db, b, device=z.device)
        no = snr_to_no(snr).to(z.real.dtype)
        if self.model == "awgn":
            h = torch.ones(b, 1, dtype=z.dtype, device=z.device)
        elif self.model == "rayleigh-slow":
            h = gen(b).reshape(b, 1)
        else:
            nb = self.n_blocks(m)
            h = gen(b * nb).reshape(b, nb)
            h = h.repeat_interleave(self.coherence, dim=1)[:, :m]
        return ChannelState(h=h.to(z.dtype), no=no, h_hat=h.to(z.dtype))

    def apply(
        self, z: Tensor, state: ChannelState, generator: torch.Generator | None = None
    ) -> tuple[Tensor, ChannelState]:
        """Send ``z`` [B, M] (complex) through the sampled channel: ``y = h z + n`` [B, M],
        ``n ~ CN(0, N0)`` per symbol.

        With ``csi="estimated"`` also sends the pilot block through the same gains and
        replaces ``state.h_hat`` by the channel estimate (:meth:`_estimate`) and sets
        ``state.h_err``. Returns ``(y, state)``.
        """
        precision = "double" if z.dtype == torch.complex128 else "single"
        awgn, _, apply = self._sionna(z.device, precision)
        awgn._generator = _generator_for(generator, z.device)
        # Sionna's flat-fading block multiplies h [.., 1, 1] @ x [.., 1]: one SISO link
        # per symbol; the noise power broadcasts per image.
        no = state.no.to(z.real.dtype)
        y = apply(z.unsqueeze(-1), state.h.unsqueeze(-1).unsqueeze(-1), no.reshape(-1, 1, 1))
        y = y.squeeze(-1)
        if self.csi == "estimated":
            if state.h.shape[-1] != 1 and self.model != "rayleigh-fast":
                # pilots are charged once per image here: a gain per symbol needs a block each
                raise ValueError(
                    f"{self.name!r}: a gain per symbol with csi='estimated' needs the "
                    f"'rayleigh-fast' model (pilots per coherence block), not {self.model!r}"
                )
            h_hat, h_err = self._estimate(state, awgn)
            state = replace(
                state, h_hat=h_hat, h_err=h_err, pilot_symbols=self.pilot_symbols(z.shape[1])
            )
        return y, state

    def __call__(
        self, z: Tensor, snr_db: float | Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, ChannelState]:
        """Sample and apply the channel. ``z`` [B, M] complex, ``snr_db`` scalar or [B] dB,
        ``generator`` on ``z``'s device (None: torch's default generator, which
        ``torch.manual_seed`` seeds). Differentiable in ``z`` (end-to-end JSCC training
        backpropagates through it)."""
        if not z.is_complex() or z.dim() != 2:
            raise ValueError(f"channel input must be complex [B, M], got {z.dtype} {z.shape}")
        state = self.sample(z, snr_db, generator)
        return self.apply(z, state, generator)

    def gain_prior(self) -> tuple[complex, float] | None:
        """The prior of the fading gain ``h`` that the pilot estimate (``csi="estimated"``)
        shrinks towards: ``(m, v)``, its mean ``E h`` (complex) and variance ``E|h - m|^2``,
        or ``None`` for no prior (the least-squares estimate).

        Default: Rayleigh's ``CN(0, 1)``, ``(0, 1)``, under fading; ``None`` on AWGN (the
        gain is the constant 1, there is nothing to average over). A channel of your own
        whose gains are drawn otherwise overrides it (Rician with K-factor ``K`` and line of
        sight along the real axis: ``(sqrt(K/(K+1)), 1/(K+1))``); with Rayleigh's prior
        its estimate would be biased towards 0 and the equaliser's ``d`` miss the noise level.
        The estimate is the LMMSE one for these two moments (:meth:`_estimate`), the
        posterior mean when ``h`` is Gaussian.
        """
        return None if self.model == "awgn" else (0j, 1.0)

    def _checked_prior(self) -> tuple[complex, float] | None:
        """:meth:`gain_prior` as ``(complex, float)``; ``ValueError`` for a mean that is not
        finite or a variance that is not a finite number > 0."""
        prior = self.gain_prior()
        if prior is None:
            return None
        try:
            m, v = prior
            m, v = complex(m), float(v)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{type(self).__name__}.gain_prior() must return (mean, variance) numbers or "
                f"None, got {prior!r}"
            ) from e
        if not (math.isfinite(m.real) and math.isfinite(m.imag)) or not 0 < v < math.inf:
            raise ValueError(
                f"{type(self).__name__}.gain_prior() must return a finite mean and a finite "
                f"variance > 0, got mean {m!r}, variance {v!r}"
            )
        return m, v

    def _estimate(self, state: ChannelState, awgn: Any) -> tuple[Tensor, Tensor]:
        """Channel estimate and its error variance [B] from the pilots.

        With ``s2 = N0 / pilots`` the LS error variance and ``(m, v)`` the gain's prior
        (:meth:`gain_prior`): the LMMSE estimate ``m + v/(v + s2) (h_ls - m)`` with error
        variance ``v s2/(v + s2)`` (Rayleigh, ``CN(0, 1)``: ``h_ls/(1 + s2)`` and
        ``s2/(1 + s2)``); without a prior (AWGN) the LS estimate with ``s2``.
        """
        h_ls = self._ls_estimate(state, awgn)
        s2 = state.no.to(h_ls.real.dtype) / self.pilots
        prior = self._checked_prior()
        if prior is None:
            return h_ls, s2
        m, v = prior
        shrink = (v / (v + s2)).unsqueeze(-1).to(h_ls.dtype)
        # a zero mean skips the shifts: Rayleigh's numbers stay those of h_ls * shrink
        h_hat = h_ls * shrink if m == 0 else m + (h_ls - m) * shrink
        return h_hat, v * s2 / (v + s2)

    def _ls_estimate(self, state: ChannelState, awgn: Any) -> Tensor:
        """Least-squares gain estimate from ``pilots`` unit pilots per coherence block.

        Pilots ``p = 1`` see the block's gain: ``y_p = h + n_p``; the LS estimate is the mean
        of ``y_p / p`` with error variance ``N0 / pilots``.
        """
        b = state.h.shape[0]
        if state.h.shape[1] == 1:
            h_blocks = state.h
        else:
            h_blocks = state.h[:, :: self.coherence]
        pil = h_blocks.unsqueeze(-1).expand(-1, -1, self.pilots)
        y_p = awgn(pil, state.no.reshape(b, 1, 1))
        h_est = y_p.mean(dim=-1)
        if state.h.shape[1] != 1:
            h_est = h_est.repeat_interleave(self.coherence, dim=1)[:, : state.h.shape[1]]
        return h_est


def _generator_for(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """Use ``generator`` if given, else torch's default generator of ``device`` (CPU or CUDA:
    ``torch.manual_seed`` then decides the draws, as for ``torch.randn``); a fresh randomly
    seeded one on another device type."""
    if generator is not None:
        return generator
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[index]
    g = torch.Generator(device=device)
    g.seed()
    return g
