"""A link composes transmitter -> channel -> receiver, the way the physical link flows.

``AnalogLink`` is the JSCC/VAE chain::

    image -> codec.encode -> pack (per-image power, real->complex) -> Channel
          -> equalize (f_tilde, d) -> Receiver (plain LMMSE, or a diffusion denoiser)
          -> unpack -> codec.decode -> image

Separation baselines (digital chains) implement :class:`Scheme` directly. Every scheme
returns a :class:`Transmission` with the reconstructions, the CBR actually used and the
time spent in each stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from .channels import (
    DECODER_SNR_RANGE_DB,
    SCALAR_SIDE_SYMBOLS,
    CBRReport,
    Channel,
    Equalized,
    PackedLatent,
    as_snr_tensor,
    cbr_report,
    decoder_snr_db,
    equalize,
    pack,
    unpad_like,
)
from .codecs.base import Codec
from .fingerprint import codec_fingerprint
from .metrics._check import check_value_range


@dataclass
class Transmission:
    """Result of sending a batch of images.

    Attributes:
        images: reconstructions [B, 3, H, W] in [0, 1], float32 whatever the input's dtype.
        cbr: channel-use budget per image (complex channel uses per real source value).
        seconds: wall time per stage for the whole batch, in seconds (``encode``,
            ``channel``, ``denoise``, ``decode``).
        info: scheme-specific counters (e.g. deep fades, clamped SNRs, fallbacks).
        snr_error_db: when the receiver estimated the SNR (``snr_source`` moment/learned) on
            a channel with one equivalent SNR per image (AWGN, slow fading): estimate minus
            the true equivalent SNR, dB, float64 [B] (estimates clamped to +-100 dB); else
            None.
        counts: what the receiver clamped, per image (int64 [B] each, on the CPU):
            ``deep_fades`` (symbols with |h|^2 below the equaliser's floor, treated as lost),
            ``snr_clamped`` (1: the SNR estimate lay outside the estimator's range; with an
            estimated SNR), ``step_clamped_high`` / ``step_clamped_low`` (1: the SNR lay
            above / below the diffusion schedule's range: the denoiser skipped / started
            from noise; diffusion receivers), ``fallback`` (1: a separation baseline
            showed its fallback image). :func:`describe_counts` words them.
    """

    images: Tensor
    cbr: CBRReport
    seconds: dict[str, float] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)
    snr_error_db: Tensor | None = None
    counts: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.images = self.images.to(torch.float32)  # one dtype from every scheme


class Scheme(Protocol):
    """Anything that sends images over a channel and reconstructs them."""

    name: str

    def cbr(self, height: int, width: int, channel: Channel) -> CBRReport:
        """The channel-use budget of one ``height x width`` image over ``channel`` (its
        pilots included)."""
        ...

    def transmit(
        self,
        images: Tensor,
        channel: Channel,
        snr_db: float | Tensor,
        generator: torch.Generator | None = None,
    ) -> Transmission:
        """Send ``images`` [B, 3, H, W] (float, in [0, 1]) over ``channel`` at ``snr_db``
        (Es/N0 in dB, scalar or [B]), drawing the channel from ``generator``; the
        reconstructions come back float32 [B, 3, H, W] in [0, 1]."""
        ...


class Receiver(Protocol):
    """Maps the equalised latent to an estimate of the unit-power latent.

    Inputs are in the codec's latent layout: ``f_tilde`` [B, C, h, w] with
    ``f_tilde = sqrt(1-d) f + sqrt(d) n`` and ``d`` [B, 1, 1, 1] (per image) or
    [B, C, h, w] (per element). Returns the estimate of ``f`` [B, C, h, w].
    """

    name: str

    def __call__(
        self, f_tilde: Tensor, d: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """The estimate of the unit-power latent ``f`` [B, C, h, w] from ``f_tilde`` and its
        noise level ``d`` (variance per real element, in [0, 1])."""
        ...


class LMMSEReceiver:
    """The plain receiver: the LMMSE estimate ``sqrt(1-d) f_tilde`` (= MMSE equaliser)."""

    name = "lmmse"

    def __call__(
        self, f_tilde: Tensor, d: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """``sqrt(1-d) f_tilde``, ``f_tilde``'s shape (``d`` broadcast: per image or per
        element; ``generator`` unused)."""
        return (1.0 - d).sqrt() * f_tilde


def check_images(images: Tensor) -> None:
    """Refuse what no scheme can send, with a message that says which: not a float tensor
    ``[B, 3, H, W]`` with ``B >= 1``, NaN / inf values, or values outside [0, 1] by more than
    0.01 (e.g. 8-bit images not divided by 255)."""
    if not isinstance(images, Tensor):
        raise TypeError(f"expected images as a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"no images to send (shape {tuple(images.shape)})")
    if not torch.is_floating_point(images):
        raise ValueError(
            f"expected float images in [0, 1], got {images.dtype} (8-bit images: "
            "images.float() / 255)"
        )
    check_value_range(images, "the image batch", 1.0, tolerance=0.01)


def check_send(images: Tensor, channel: object, generator: object) -> None:
    """What every ``transmit`` checks first: the images (:func:`check_images`), a
    :class:`~semcom.channels.Channel` (not its name) and a ``torch.Generator`` or None."""
    check_images(images)
    if not isinstance(channel, Channel):
        raise TypeError(
            f"expected a semcom.channels.Channel, got {type(channel).__name__} "
            f"(e.g. Channel({channel!r}) for a name)"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"expected a torch.Generator or None, got {type(generator).__name__} "
            "(e.g. torch.Generator().manual_seed(0))"
        )


@contextmanager
def _timed(seconds: dict[str, float], key: str, device: torch.device) -> Iterator[None]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0


class AnalogLink:
    """Codec + channel + receiver (README "What it does").

    Args:
        codec: image <-> latent codec. If ``codec.needs_scale`` the per-image latent RMS
            is sent as side information (charged ``SCALAR_SIDE_SYMBOLS`` channel uses).
        receiver: maps ``(f_tilde, d)`` to a latent estimate (default: LMMSE).
        name: scheme name shown in results (default: the codec's name).
        fixed_cbr: the scheme has a single CBR (results are not labelled with it).
        snr_source: where the receiver's noise level ``d`` comes from: ``"known"`` (the
            true equivalent SNR), ``"moment"`` (estimated from the received power with known
            N0, per image) or ``"learned"`` (pilot-free, from the received latent by
            ``estimator``); see :mod:`semcom.estimation`. The equaliser still uses the CSI. An
            SNR-adaptive decoder (ADJSCC) is told the estimate, not the true SNR. The
            estimates are per image: a channel with a noise level per symbol (fast fading)
            needs ``"known"`` (ValueError otherwise).
        estimator: a :class:`~semcom.estimation.learned.SNREstimator` (``snr_source="learned"``).
    """

    def __init__(
        self,
        codec: Codec,
        receiver: Receiver | None = None,
        name: str | None = None,
        fixed_cbr: bool = True,
        snr_source: str = "known",
        estimator=None,
    ):
        from .estimation import SNR_SOURCES

        if snr_source not in SNR_SOURCES:
            raise ValueError(
                f"snr_source must be one of {', '.join(SNR_SOURCES)}, got {snr_source!r}"
            )
        if snr_source == "learned" and estimator is None:
            raise ValueError("snr_source='learned' needs an SNR estimator")
        self.snr_source = snr_source
        self.estimator = estimator
        self.codec = codec
        self.receiver = receiver or LMMSEReceiver()
        self.name = name or codec.name
        #: False when the scheme comes in several CBR variants (results are labelled by CBR).
        self.fixed_cbr = fixed_cbr

    def weights(self) -> dict[str, str]:
        """The networks this scheme runs, each named by the fingerprint of its weights (12 hex
        digits of their SHA-256, as ``fingerprint`` in zoo cards): ``codec``, and ``denoiser``
        / ``snr_estimator`` when present. Results record them, so a curve names its weights."""
        nets = {
            "codec": self.codec,
            "denoiser": getattr(self.receiver, "denoise", None),
            "snr_estimator": self.estimator,
        }
        return {k: codec_fingerprint(m) for k, m in nets.items() if isinstance(m, torch.nn.Module)}

    @property
    def side_symbols(self) -> int:
        """Complex channel uses per image for side information: :data:`SCALAR_SIDE_SYMBOLS`
        for the latent RMS of a ``needs_scale`` codec, else 0."""
        return SCALAR_SIDE_SYMBOLS if self.codec.needs_scale else 0

    def cbr(self, height: int, width: int, channel: Channel) -> CBRReport:
        """The budget of one ``height x width`` image: ``ceil(L/2)`` data symbols for the
        codec's ``L`` latent values (:meth:`~semcom.codecs.base.Codec.latent_shape`), the
        channel's pilots for them and :attr:`side_symbols`."""
        shape = self.codec.latent_shape(height, width)
        data = cbr_report(shape, (height, width))
        return cbr_report(
            shape,
            (height, width),
            pilot_symbols=channel.pilot_symbols(data.data_symbols),
            side_symbols=self.side_symbols,
        )

    def _check_latent_shape(self, packed: PackedLatent, height: int, width: int) -> None:
        """ValueError when the codec's :meth:`~semcom.codecs.base.Codec.latent_shape`, which
        the CBR is computed from, counts another number of values than its encoder gave."""
        shape = tuple(self.codec.latent_shape(height, width))
        if math.prod(shape) != packed.n_real:
            raise ValueError(
                f"{self.codec.name}: latent_shape({height}, {width}) = {shape} holds "
                f"{math.prod(shape)} values, but its encoder gave {packed.shape} "
                f"({packed.n_real}): the CBR is computed from latent_shape, so it must "
                "give the encoder's output shape (padding to the codec's multiple included)"
            )

    @torch.no_grad()
    def transmit(
        self,
        images: Tensor,
        channel: Channel,
        snr_db: float | Tensor,
        generator: torch.Generator | None = None,
    ) -> Transmission:
        """Send ``images`` [B, 3, H, W] in [0, 1] (any float dtype; computed in float32) at
        ``snr_db`` (scalar or [B], dB). No gradients flow (``Transmission.images`` are plain
        float32 tensors); train through :meth:`semcom.codecs.jscc.DeepJSCC.forward`."""
        check_send(images, channel, generator)
        if images.dtype != torch.float32:
            images = images.float()
        dev = images.device
        b, _, h, w = images.shape
        snr = as_snr_tensor(snr_db, b, device=dev)
        secs: dict[str, float] = {}
        with _timed(secs, "encode", dev):
            if b > 1 and images.stride(0) == 0 and not self.codec.snr_adaptive:
                # one image expanded over an SNR batch (as in sweeps): encode it once
                one = self.codec.encode(images[:1], snr[:1].float())
                latent = one.expand(b, *one.shape[1:])
            else:
                latent = self.codec.encode(images, snr.float())
            packed = pack(latent)
        self._check_latent_shape(packed, h, w)
        with _timed(secs, "channel", dev):
            y, state = channel(packed.z, snr, generator)
            eq: Equalized = equalize(y, state)
        info: dict[str, object] = {"deep_fades": int(eq.deep_fades.sum())}
        counts = {"deep_fades": eq.deep_fades.reshape(b).long().cpu()}
        # the SNR an SNR-adaptive decoder is told: of the equalised latent (|h|^2 SNR)
        dec_snr = decoder_snr_db(snr, state).float()
        snr_error = None
        with _timed(secs, "denoise", dev):
            f_tilde = unpad_like(eq.f_tilde, packed)
            if self.snr_source == "known":
                d = unpad_like(eq.d, packed)
            elif eq.d.shape[-1] != 1:
                raise ValueError(
                    f"snr_source={self.snr_source!r} gives one SNR per image, but this channel "
                    "has a noise level per symbol (fast fading): use snr_source='known' "
                    "(levels from the CSI and N0)"
                )
            else:
                from .estimation import level_from_gamma, moment_snr

                if self.snr_source == "moment":
                    gamma = moment_snr(y, state.no)  # estimates |h|^2 / N0
                    seen = gamma
                    if state.h_err is not None:
                        # the latent was equalised with the pilot estimate of h: its error
                        # counts as noise, as in equalize (N0 + h_err)
                        no = state.no.double().reshape(b)
                        seen = gamma * no / (no + state.h_err.double().reshape(b))
                else:
                    # estimated from the equalised latent itself: its noise level as it is
                    gamma, clamped = self.estimator.estimate(f_tilde)
                    seen = gamma
                    info["snr_clamped"] = int(clamped.sum())
                    counts["snr_clamped"] = clamped.reshape(b).long().cpu()
                d = level_from_gamma(seen).to(eq.d).reshape(b, *([1] * (f_tilde.dim() - 1)))

                def clamped_db(snr_lin: Tensor) -> Tensor:  # [B] dB on the decoder's scale
                    return (
                        (10.0 * torch.log10(snr_lin.double()))
                        .reshape(b)
                        .clamp(*DECODER_SNR_RANGE_DB)
                    )

                # the receiver does not know the SNR: its decoder is told the estimate too
                dec_snr = clamped_db(seen).float()
                # score the estimate against the true |h|^2/N0 (not the equaliser's d, which
                # holds a pilot estimate of h with --csi estimated), on the same +-100 dB scale:
                # a noiseless link scores 0
                true_db = state.snr_eq_db.double().reshape(b).clamp(*DECODER_SNR_RANGE_DB)
                snr_error = clamped_db(gamma) - true_db
            f_hat = self.receiver(f_tilde, d, generator)
        with _timed(secs, "decode", dev):
            if self.codec.needs_scale:
                lat_hat = f_hat * packed.rms.to(f_hat).reshape(b, *([1] * (f_hat.dim() - 1)))
            else:
                lat_hat = f_hat
            if getattr(self.codec, "dm_side", False):  # decoder trained behind this receiver
                lmmse = LMMSEReceiver()(f_tilde, d)
                # such a decoder takes the receiver's output too (DeepJSCC.decode's ``side``)
                decode_side: Callable[..., Tensor] = self.codec.decode
                out = decode_side(lmmse, (h, w), dec_snr, side=lat_hat)
            else:
                out = self.codec.decode(lat_hat, (h, w), dec_snr)
        # diffusion receivers: skipped / clamped steps, network calls
        rx_info = getattr(self.receiver, "info", {})
        info.update({k: v for k, v in rx_info.items() if isinstance(v, int | float)})
        counts.update(getattr(self.receiver, "counts", {}))
        return Transmission(
            images=out,
            cbr=self.cbr(h, w, channel),
            seconds=secs,
            info=info,
            snr_error_db=snr_error,
            counts=counts,
        )


#: what each :attr:`Transmission.counts` key counts, for verbose reports
COUNT_WORDS = {
    "deep_fades": "symbols in deep fades (|h|^2 below the equaliser's floor: erased)",
    "snr_clamped": "SNR estimate outside the estimator's range, clamped to it",
    "step_clamped_high": "SNR above the diffusion schedule: t* = 0, denoiser skipped",
    "step_clamped_low": "SNR below the diffusion schedule: t* = T, started from noise",
    "fallback": "nothing decodable arrived (no file fit, or every MCS failed): the data set's "
    "mean image shown instead",
}


def describe_counts(counts: dict[str, int], of: int = 1) -> str:
    """The non-zero ``counts`` (sums of :attr:`Transmission.counts` over ``of`` images) in
    words, ``"; "``-separated, e.g. ``"SNR estimate outside the estimator's range, clamped to
    it (2 of 24)"``; ``""`` when all are 0."""
    parts = []
    for key, words in COUNT_WORDS.items():
        n = int(counts.get(key, 0))
        if n and key == "deep_fades":
            parts.append(f"{n} {words}")
        elif n:
            parts.append(words + (f" ({n} of {of})" if of != 1 else ""))
    return "; ".join(parts)


__all__ = [
    "COUNT_WORDS",
    "AnalogLink",
    "LMMSEReceiver",
    "Receiver",
    "Scheme",
    "Transmission",
    "check_images",
    "describe_counts",
]
