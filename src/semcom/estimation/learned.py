"""Learned pilot-free SNR estimator (paper B eq. 21, docs/math.md §4).

A small residual CNN ``zeta_P`` looks at the normalised received latent
``f_tilde = sqrt(a) f + sqrt(1 - a) n`` (``a = 1 - d``, f the unit-power clean latent) and
outputs ``zeta in (0, 1)``, the estimate of ``a``. After RMS normalisation the power carries no
SNR information; the network uses the prior (clean latents are spatially structured, the
noise is white).

Conventions (identical in training and inference; the reference code squares its output, we
do not, docs/math.md B13):

* the network's last layer is a logit ``l`` and ``zeta = sigmoid(l)``. Because
  ``a = gamma / (1 + gamma) = sigmoid(ln gamma)``, the logit *is* the estimate of
  ``ln gamma`` (gamma the linear equivalent SNR), so ``gamma_hat = exp(l)`` and
  ``d_hat = 1 - zeta = 1 / (1 + gamma_hat)``;
* the training loss is the MSE of ``l`` against ``ln gamma`` (the SNR error in log units), not
  the MSE on ``a`` of the paper: an MSE on ``a`` cannot tell 20 dB (a = 0.990) from 30 dB
  (a = 0.999), and we want the error bounded in dB over the whole range;
* estimates outside the trained SNR range are clamped to it (and counted).

Calibration on whole latents (``semcom train snr-estimator --calibrate RUN``): the CNN is
trained on small random crops (cheap), but a receiver pools its features over a whole latent,
where they are far less noisy; a head fitted to crop-level features is then off (regression
dilution: on bsds500-val ADJSCC latents 1.6 / 1.0 dB RMSE at -10 / -5 dB). The calibration
stage keeps the CNN and fits a new head (``head_depth`` hidden layers, inputs standardised
with the features' mean and standard deviation on the training set, stored as buffers) on
features of whole training latents at random SNRs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

DB_PER_NEPER = 10.0 / math.log(10.0)  # 10*log10(x) = DB_PER_NEPER * ln(x)
#: block sizes (latent pixels) of :func:`scale_stats`
SCALES = (2, 4, 8, 16)


def scale_stats(f_tilde: Tensor, scales: tuple[int, ...] = SCALES) -> Tensor:
    """Log power ratios ``[B, len(scales)]``: power of the latent averaged over s x s blocks
    over its power, averaged over channels, for each block size s.

    White noise keeps exactly ``1/s^2`` of its power, a spatially correlated latent much more,
    so the ratios read the signal share from longer-range structure than a small CNN sees.
    The blocks are exactly s x s whatever the latent's size (the rows and columns past the last
    whole block are left out), so that the noise floor does not depend on the image size; a
    latent smaller than s uses the block of its own size. ``f_tilde``: ``[B, C, h, w]``.
    """
    x = f_tilde.float()
    p = x.pow(2).mean(dim=(2, 3)).clamp_min(1e-12)  # [B, C]
    out = []
    for s in scales:
        q = nn.functional.avg_pool2d(x, (min(s, x.shape[2]), min(s, x.shape[3])))
        out.append(torch.log(q.pow(2).mean(dim=(2, 3)) / p + 1e-6).mean(dim=1))
    return torch.stack(out, dim=1)


@dataclass
class SNREstimatorConfig:
    """Architecture of :class:`SNREstimator` (stored in checkpoints).

    Attributes:
        channels: latent channels ``C`` of the codec whose latents it reads.
        width: feature maps of the CNN; blocks: its residual blocks.
        snr_range: the trained range of the equivalent SNR, ``(low, high)`` in dB: estimates
            are clamped to it (:meth:`SNREstimator.estimate`).
    """

    channels: int = 16
    width: int = 32
    blocks: int = 3
    snr_range: tuple[float, float] = (-20.0, 40.0)
    #: hidden layers of the head (1: the head of the crop-trained CNN)
    head_depth: int = 1
    #: their width (0: ``width``)
    head_width: int = 0
    #: standardise the pooled features before the head (buffers ``feat_mean``, ``feat_std``)
    feature_norm: bool = False
    #: also feed the head the multi-scale power ratios of :func:`scale_stats` (longer-range
    #: structure than the CNN's 15x15 receptive field; none in older checkpoints)
    scale_stats: bool = False

    def __post_init__(self) -> None:
        if self.head_depth < 1 or self.head_width < 0:
            raise ValueError(
                f"SNR estimator head: depth >= 1 and width >= 0 needed, got "
                f"{self.head_depth} and {self.head_width}"
            )

    @property
    def n_features(self) -> int:
        """Length of the pooled feature vector the head reads."""
        return 2 * self.width + (len(SCALES) if self.scale_stats else 0)

    def to_dict(self) -> dict:
        """The fields as a JSON-able dict (what checkpoints store)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SNREstimatorConfig:
        """Inverse of :meth:`to_dict` (``snr_range`` from a JSON list back to a tuple)."""
        d = dict(d)
        d["snr_range"] = tuple(d.get("snr_range", (-20.0, 40.0)))
        return cls(**d)


class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(width, width, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SNREstimator(nn.Module):
    """``zeta_P``: normalised received latent ``[B, C, h, w]`` -> logit ``[B]`` (= ln gamma_hat).

    Fully convolutional with global average pooling, so any latent size works. The input is
    RMS-normalised per image first (the network never sees the received power).
    """

    #: buffers of a ``feature_norm`` estimator ([n_features] each)
    feat_mean: Tensor
    feat_std: Tensor

    def __init__(self, config: SNREstimatorConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.stem = nn.Conv2d(config.channels, w, 3, padding=1)
        self.blocks = nn.Sequential(*[_ResBlock(w) for _ in range(config.blocks)])
        # mean and log standard deviation of each feature over the image -> logit (the log
        # makes the SNR, a ratio of energies, a linear function of the features)
        n, hw = config.n_features, config.head_width or w
        layers: list[nn.Module] = []
        for _ in range(config.head_depth):
            layers += [nn.Linear(n, hw), nn.LeakyReLU(0.1)]
            n = hw
        self.head = nn.Sequential(*layers, nn.Linear(n, 1))
        if config.feature_norm:
            self.register_buffer("feat_mean", torch.zeros(config.n_features))
            self.register_buffer("feat_std", torch.ones(config.n_features))

    def forward(self, f_tilde: Tensor | None = None, *, feats: Tensor | None = None) -> Tensor:
        """Logit ``[B]`` (= ln gamma_hat) of latents ``f_tilde`` ``[B, C, h, w]``, or of their
        pooled features ``feats`` ``[B, n_features]`` (:meth:`features`; the calibration stage
        trains the head on a bank of them)."""
        if feats is None:
            if f_tilde is None:
                raise ValueError("SNR estimator: give latents or feats")
            feats = self.features(f_tilde)
        if self.config.feature_norm:
            feats = (feats - self.feat_mean) / self.feat_std
        return self.head(feats).squeeze(1)

    def features(self, f_tilde: Tensor) -> Tensor:
        """Pooled features ``[B, n_features]``: mean and log standard deviation over the latent
        of each CNN feature map (the input is RMS-normalised first), then the
        :func:`scale_stats` if configured. The network runs in its own dtype (the input's
        RMS in float32 at least), the features come back in it."""
        if f_tilde.dim() != 4 or f_tilde.shape[1] != self.config.channels:
            raise ValueError(
                f"SNR estimator expects latents [B, {self.config.channels}, h, w], "
                f"got {tuple(f_tilde.shape)}"
            )
        net = self.stem.weight.dtype
        x = f_tilde.to(torch.promote_types(net, torch.float32))
        rms = x.pow(2).mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12).sqrt()
        h = self.blocks(torch.nn.functional.leaky_relu(self.stem((x / rms).to(net)), 0.1))
        std = h.pow(2).mean(dim=(2, 3)) - h.mean(dim=(2, 3)).pow(2)
        feats = [h.mean(dim=(2, 3)), 0.5 * torch.log(std.clamp_min(0) + 1e-6)]
        if self.config.scale_stats:
            feats.append(scale_stats(x).to(net))
        return torch.cat(feats, dim=1)

    @torch.no_grad()
    def estimate(self, f_tilde: Tensor) -> tuple[Tensor, Tensor]:
        """Linear SNR estimate ``gamma_hat`` [B] float64 (clamped to the trained range
        ``config.snr_range``, dB) and the clamp mask, bool [B], of latents ``f_tilde``
        [B, C, h, w].

        ``d_hat = 1 / (1 + gamma_hat)`` is the noise level the receiver then uses.
        """
        lo, hi = self.config.snr_range
        snr_db = DB_PER_NEPER * self(f_tilde)
        clamped = (snr_db < lo) | (snr_db > hi) | ~torch.isfinite(snr_db)
        snr_db = torch.nan_to_num(snr_db, nan=lo).clamp(lo, hi)
        return torch.pow(10.0, snr_db.double() / 10.0), clamped


def load_snr_estimator(
    path: str | Path,
    codec: str | None = None,
    latent_channels: int | None = None,
    device: str | torch.device = "cpu",
) -> SNREstimator:
    """Load an estimator checkpoint (zoo name, run folder or ``.safetensors``) on ``device``,
    in eval mode, float32, refusing (``ValueError``) one trained on another ``codec``'s latents
    or for another number of ``latent_channels``."""
    from ..diffusion.checkpoint import load_latent_model

    return load_latent_model(
        path, "snr-estimator", "estimator_config", SNREstimatorConfig, SNREstimator,
        "SNR estimator", codec, None, latent_channels, device,
    )  # fmt: skip


__all__ = [
    "DB_PER_NEPER",
    "SCALES",
    "SNREstimator",
    "SNREstimatorConfig",
    "load_snr_estimator",
    "scale_stats",
]
