"""Frozen pretrained TAEF2: the tiny autoencoder for the FLUX.2 latent space.

TAEF2 (madebyollin/taesd) is a distilled, fully convolutional stand-in for the FLUX.2
VAE: images in [0, 1] go to a real latent with 32 channels at 1/8 resolution and back.
We re-implement the architecture from its state-dict keys (plain ``nn.Sequential``
modules, so ``load_state_dict(strict=True)`` works on the upstream ``.pth`` files) and
use it frozen as a semcom :class:`~semcom.codecs.base.Codec`.

Weights: ``taef2/taef2_encoder.pth`` and ``taef2/taef2_decoder.pth`` resolved by
:func:`semcom.paths.weights_path` (``$SEMCOM_WEIGHTS``, the user cache, or a download
from the upstream repository).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from semcom.codecs.base import Codec
from semcom.paths import download_url, register_download, weights_path

ENCODER_REL = "taef2/taef2_encoder.pth"
DECODER_REL = "taef2/taef2_decoder.pth"
_UPSTREAM = "https://github.com/madebyollin/taesd/raw/main/"

LATENT_CHANNELS = 32
WIDTH = 64


def _register_downloads() -> None:
    for rel in (ENCODER_REL, DECODER_REL):
        url = _UPSTREAM + rel.split("/")[-1]

        def fetch(dest: Path, url: str = url) -> None:
            download_url(url, dest)

        register_download(rel, fetch)


_register_downloads()


def _conv(n_in: int, n_out: int, bias: bool = True, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of the latent to (-3, 3): ``tanh(x / 3) * 3``."""

    def forward(self, x: Tensor) -> Tensor:
        """``x`` any shape, float -> ``3 tanh(x / 3)``, same shape, in (-3, 3)."""
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual block ``relu(conv(x) + x)``; with ``pool``, first ``x = x + pool(x)``.

    The ReLUs and the residual sums work in place on the outputs of the layers before them (a
    convolution or GroupNorm, whose gradients do not need those outputs): the same values,
    without a new full-size tensor per step (~1.1x faster decoding on a CPU)."""

    def __init__(self, n: int = WIDTH, pool: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv(n, n), nn.ReLU(inplace=True), _conv(n, n), nn.ReLU(inplace=True), _conv(n, n)
        )
        self.pool = (
            nn.Sequential(
                nn.Conv2d(n, 4 * n, 1, bias=False),
                nn.GroupNorm(4, 4 * n),
                nn.ReLU(inplace=True),
                nn.Conv2d(4 * n, n, 1, bias=False),
            )
            if pool
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, n, h, w] -> ``relu(conv(x) + x)`` [B, n, h, w] (after ``x + pool(x)``
        with ``pool``)."""
        if self.pool is not None:
            x = self.pool(x).add_(x)  # x + pool(x)
        return torch.relu_(self.conv(x).add_(x))  # relu(conv(x) + x)


def build_encoder() -> nn.Sequential:
    """TAEF2 encoder: RGB in [0, 1] [B, 3, H, W] -> latent [B, 32, H/8, W/8]."""
    n = WIDTH
    return nn.Sequential(
        _conv(3, n),  # 0
        Block(n),  # 1
        _conv(n, n, bias=False, stride=2),  # 2
        Block(n),
        Block(n),
        Block(n),  # 3-5
        _conv(n, n, bias=False, stride=2),  # 6
        Block(n),
        Block(n),
        Block(n),  # 7-9
        _conv(n, n, bias=False, stride=2),  # 10
        Block(n, pool=True),
        Block(n, pool=True),
        Block(n, pool=True),  # 11-13
        _conv(n, LATENT_CHANNELS),  # 14
    )


def build_decoder() -> nn.Sequential:
    """TAEF2 decoder: latent [B, 32, h, w] -> RGB [B, 3, 8h, 8w] (≈ [0, 1], unclamped)."""
    n = WIDTH
    return nn.Sequential(
        Clamp(),  # 0
        _conv(LATENT_CHANNELS, n),  # 1
        nn.ReLU(inplace=True),  # 2
        Block(n, pool=True),
        Block(n, pool=True),
        Block(n, pool=True),  # 3-5
        nn.Upsample(scale_factor=2),  # 6
        _conv(n, n, bias=False),  # 7
        Block(n),
        Block(n),
        Block(n),  # 8-10
        nn.Upsample(scale_factor=2),  # 11
        _conv(n, n, bias=False),  # 12
        Block(n),
        Block(n),
        Block(n),  # 13-15
        nn.Upsample(scale_factor=2),  # 16
        _conv(n, n, bias=False),  # 17
        Block(n),  # 18
        _conv(n, 3),  # 19
    )


def load_sequential(module: nn.Sequential, path: Path) -> nn.Sequential:
    """Load an fp16/fp32 state dict from ``path`` strictly into ``module`` (as float32)."""
    try:
        sd = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:
        raise ValueError(f"cannot read TAEF2 weights from {path}: {e}") from e
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(sd).__name__}")
    sd = {k: v.float() for k, v in sd.items()}
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path} does not match the TAEF2 architecture: {e}") from e
    return module


class TAEF2Codec(Codec):
    """Frozen TAEF2 autoencoder: images [B, 3, H, W] in [0, 1] <-> latent [B, 32, H/8, W/8].

    Latents are raw TAEF2 latents (no scaling/shift); the decoder soft-clamps them to
    (-3, 3) first. Sizes that are not multiples of 8 are padded/cropped by :class:`Codec`.
    """

    name = "vae"
    multiple = 8
    #: the frozen decoder needs latents in their own units: the per-image RMS is side info.
    needs_scale = True

    def __init__(
        self,
        encoder_path: str | Path | None = None,
        decoder_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        enc_path = Path(encoder_path) if encoder_path is not None else weights_path(ENCODER_REL)
        dec_path = Path(decoder_path) if decoder_path is not None else weights_path(DECODER_REL)
        self.encoder = load_sequential(build_encoder(), enc_path)
        self.decoder = load_sequential(build_decoder(), dec_path)
        self.eval()
        self.requires_grad_(False)
        self.channels_last()

    def _encode(self, x: Tensor, snr_db: Tensor | None) -> Tensor:
        return self.encoder(x.contiguous(memory_format=self.layout)).contiguous()

    def _decode(self, latent: Tensor, snr_db: Tensor | None) -> Tensor:
        return self.decoder(latent.contiguous(memory_format=self.layout)).contiguous()

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """``(32, ceil(height/8), ceil(width/8))``: the latent of an image of ``height`` x
        ``width`` pixels."""
        return (LATENT_CHANNELS, math.ceil(height / 8), math.ceil(width / 8))


def load_taef2(device: str | torch.device = "cpu") -> TAEF2Codec:
    """Build the frozen TAEF2 codec from the resolved weight files, on ``device`` (ValueError
    for a device this machine lacks, as ``--device`` says)."""
    from ..devices import parse_device

    return TAEF2Codec().to(parse_device(str(device)))
