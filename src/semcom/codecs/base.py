"""The codec interface: anything image <-> real latent.

A codec's encoder maps images ``[B, 3, H, W]`` in [0, 1] to a real latent
``[B, C, h, w]``; its decoder maps a latent back to images. Power normalisation and the
real->complex mapping are *not* the codec's job: the transmitter (``semcom.link``) does
them per image, so every codec obeys the same channel conventions.
"""

from __future__ import annotations

from typing import Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``x`` [B, C, H, W] on the bottom/right to a multiple of ``multiple``.

    Uses edge replication (valid for any size, even 1x1). Returns the padded tensor and
    the original ``(H, W)`` for :func:`crop_to`.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def crop_to(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """Crop ``x`` [..., H', W'] back to its top-left ``(H, W)``."""
    return x[..., : hw[0], : hw[1]]


class Codec(nn.Module):
    """Base class of image <-> latent codecs.

    Subclasses set ``name`` and ``multiple`` (the spatial size the encoder needs) and
    implement :meth:`_encode` / :meth:`_decode` on padded images and :meth:`latent_shape`
    (the link computes the CBR from it, and refuses a codec whose encoder gives another
    number of values). ``snr_db`` ([B] tensor, dB)
    is passed to SNR-adaptive codecs and ignored by the others. **Set ``needs_scale = True``
    for any decoder not trained on unit-power latents** (a pretrained autoencoder): by
    default the link hands the decoder the power-normalised latent.
    """

    name: str = "codec"
    multiple: int = 1
    snr_adaptive: bool = False
    #: True when the decoder needs the latent in its own units, i.e. the per-image RMS
    #: removed by power normalisation must be sent as side information (e.g. a frozen VAE).
    #: False for JSCC codecs trained on the unit-power latent.
    needs_scale: bool = False
    #: memory format the convolutions' inputs are put in (see :meth:`channels_last`)
    layout: torch.memory_format = torch.contiguous_format

    def channels_last(self) -> Self:
        """Run the convolutions channels-last (weights and inputs, which a subclass's
        ``_encode`` / ``_decode`` put in :attr:`layout`; outputs stay contiguous): on CPU
        1.2-1.6x faster encode / decode (docs/results.md, Speed), results equal to float
        rounding. Returns the codec."""
        # torch types Module.to without its memory_format keyword (it takes it at run time)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.layout = torch.channels_last
        return self

    def _encode(self, x: Tensor, snr_db: Tensor | None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def _decode(self, latent: Tensor, snr_db: Tensor | None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Latent shape ``(C, h, w)`` for an image of ``height`` x ``width`` pixels (before
        padding to :attr:`multiple`: the shape :meth:`encode` returns for it)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement latent_shape(height, width) -> (C, h, w), "
            "the shape its encoder gives for such an image: the CBR is computed from it"
        )

    def encode(self, x: Tensor, snr_db: Tensor | None = None) -> Tensor:
        """Images [B, 3, H, W] in [0, 1] -> real latent [B, C, h, w] (any H, W)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected images [B, 3, H, W], got {tuple(x.shape)}")
        xp, _ = pad_to_multiple(x, self.multiple)
        return self._encode(xp, snr_db)

    def decode(self, latent: Tensor, size: tuple[int, int], snr_db: Tensor | None = None) -> Tensor:
        """Real latent [B, C, h, w] -> images [B, 3, H, W] in [0, 1], cropped to ``size``."""
        return crop_to(self._decode(latent, snr_db), size).clamp(0.0, 1.0)

    @torch.no_grad()
    def roundtrip(self, x: Tensor, snr_db: Tensor | None = None) -> Tensor:
        """Encode then decode without a channel (for sanity checks); ``snr_db`` [B] (dB) is
        what an SNR-adaptive codec is told (required there)."""
        return self.decode(self.encode(x, snr_db), (x.shape[-2], x.shape[-1]), snr_db)
