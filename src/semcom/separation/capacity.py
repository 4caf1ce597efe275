"""Image codec + an ideal capacity-achieving channel code (``jpeg+capacity``, ...).

Per image the channel delivers ``floor(sum_k log2(1 + |h_k|^2 SNR))`` bits error-free over
its ``n_data`` data symbols (bits per image; SNR = Es/N0 linear, README "Conventions"):

* AWGN: ``n_data * log2(1 + SNR)``;
* slow Rayleigh: ``n_data * log2(1 + |h|^2 SNR)`` with the image's realised gain ``h``;
* fast Rayleigh: the instantaneous capacity summed over the image's realised per-symbol
  gains (i.e. ``n_data`` times its average over the realised fading of that image).

The fading is drawn from the :class:`~semcom.channels.Channel` with the caller's generator
exactly as an analog scheme with ``n_data`` symbols draws it (``sample`` then ``apply`` on
a dummy block, so the generator ends in the same state too): in a sweep every scheme sees
the same fades. With ``csi="estimated"`` the pilots are charged (fewer data symbols) but
the capacity uses the true gains (an optimistic bound). The image is then coded with the
largest quality whose file fits (:func:`.source.encode_to_budget`); if no file fits, the
fallback image is output and counted.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ..channels import CBRReport, Channel, ChannelState, as_snr_tensor
from ..link import Transmission, check_send
from .common import DEFAULT_CBR, budget_report, fallback_for
from .source import EncoderCache, decode_tensor, get_format, to_uint8_hwc


def sample_fading(
    channel: Channel,
    batch: int,
    n_data: int,
    snr_db: Tensor,
    generator: torch.Generator | None,
    device: torch.device,
) -> ChannelState:
    """Draw the channel realisation for ``n_data`` symbols per image as an analog scheme would.

    Returns the :class:`~semcom.channels.ChannelState` (``h`` [B, 1] or [B, n_data]).
    The dummy ``apply`` advances ``generator`` exactly as a real transmission does.
    """
    z = torch.zeros(batch, max(n_data, 1), dtype=torch.complex64, device=device)
    state = channel.sample(z, snr_db, generator)
    if generator is not None:
        channel.apply(z, state, generator)
    return state


def capacity_bits(state: ChannelState, n_data: int) -> Tensor:
    """Bits per image deliverable at capacity: ``sum_k log2(1 + |h_k|^2 / N0)``, [B] float64.

    ``N0 = 0`` (SNR = +inf) gives ``inf``.
    """
    g = state.h.abs().double().pow(2)  # [B, 1] or [B, n]
    no = state.no.double().unsqueeze(-1)
    per_symbol = torch.log2(1.0 + g / no)  # g / 0 = inf -> inf
    return per_symbol.mean(dim=-1) * n_data


class CapacityScheme:
    """``<fmt>+capacity``: Pillow codec at the largest quality fitting the channel capacity.

    Args:
        fmt: ``"jpeg"``, ``"webp"`` or ``"avif"``.
        cbr: complex channel uses per real source value (None: 1/16); any positive value.
        fallback_image: output when no file fits (None: mid-grey 0.5; a float; or a
            ``[3, h, w]`` tensor such as the data set's mean image).
        name: scheme name (default ``"<fmt>+capacity"``).
    """

    #: Results are labelled with the CBR (the scheme accepts any CBR).
    fixed_cbr = False

    def __init__(
        self,
        fmt: str = "jpeg",
        cbr: float | None = None,
        fallback_image: Tensor | float | None = None,
        name: str | None = None,
    ) -> None:
        self.format = get_format(fmt).name
        self.cbr_value = DEFAULT_CBR if cbr is None else float(cbr)
        if not self.cbr_value > 0:
            raise ValueError(f"CBR must be positive, got {cbr}")
        self.name = name or f"{self.format}+capacity"
        self.fallback_image = fallback_image
        self._encoders = EncoderCache()

    def __repr__(self) -> str:
        return f"CapacityScheme({self.format!r}, cbr={self.cbr_value:.5g})"

    def cbr(self, height: int, width: int, channel: Channel) -> CBRReport:
        """Channel uses per image: ``round(cbr * 3HW)`` (pilots included)."""
        return budget_report(height, width, self.cbr_value, channel)

    @torch.no_grad()
    def transmit(
        self,
        images: Tensor,
        channel: Channel,
        snr_db: float | Tensor,
        generator: torch.Generator | None = None,
    ) -> Transmission:
        """Send ``images`` [B, 3, H, W] in [0, 1] at ``snr_db`` (scalar or [B], dB).

        ``info``: ``fallbacks`` (int), per image ``budget_bits``, ``file_bits`` and
        ``quality`` (None for a fallback). ``seconds``: ``channel`` (fading draw and
        capacity), ``encode`` (quality search), ``decode`` (source decoding), wall seconds.
        """
        check_send(images, channel, generator)
        b, _, h, w = images.shape
        dev = images.device
        snr = as_snr_tensor(snr_db, b, device=dev)
        report = self.cbr(h, w, channel)
        secs: dict[str, float] = {}
        t0 = time.perf_counter()
        state = sample_fading(channel, b, report.data_symbols, snr, generator, dev)
        budget = capacity_bits(state, report.data_symbols).floor().cpu()
        secs["channel"] = time.perf_counter() - t0
        fallback = fallback_for(self.fallback_image, h, w)
        out: list[Tensor] = []
        qualities: list[int | None] = []  # None: the fallback image
        file_bits: list[int] = []
        t_enc = t_dec = 0.0
        for i in range(b):
            t0 = time.perf_counter()
            enc = self._encoders.get(to_uint8_hwc(images[i]), self.format)
            res = enc.fit(float(budget[i]))
            t_enc += time.perf_counter() - t0
            t0 = time.perf_counter()
            if res is None:
                out.append(fallback)
                qualities.append(None)
                file_bits.append(0)
            else:
                data, q = res
                out.append(decode_tensor(data))
                qualities.append(q)
                file_bits.append(8 * len(data))
            t_dec += time.perf_counter() - t0
        secs["encode"], secs["decode"] = t_enc, t_dec
        fell = torch.tensor([q is None for q in qualities], dtype=torch.int64)
        info: dict[str, object] = {
            "fallbacks": int(fell.sum()),
            "budget_bits": [float(x) for x in budget],
            "file_bits": file_bits,
            "quality": qualities,
        }
        return Transmission(
            images=torch.stack(out).to(device=dev, dtype=images.dtype),
            cbr=report,
            seconds=secs,
            info=info,
            counts={"fallback": fell},
        )


__all__ = ["CapacityScheme", "capacity_bits", "sample_fading"]
