"""DISTS (Ding, Ma, Wang, Simoncelli 2020, "Image Quality Assessment: Unifying Structure and
Texture Similarity") in plain PyTorch.

Pipeline, following the authors' PyTorch reference (``DISTS_pytorch/DISTS_pt.py``):

* inputs ``[B,3,H,W]`` in ``[0,1]`` are normalised with the ImageNet mean/std and fed to a frozen
  ImageNet VGG16 whose 2x2 max-pools are replaced by *L2 pooling*: square, depthwise 3x3 Hanning
  filter (``hanning(5)[1:-1] = [.5, 1, .5]``, outer product, normalised to sum 1), stride 2,
  zero padding 1, then ``sqrt(. + 1e-12)``;
* six stages are compared: the raw (un-normalised) image (3 channels) and relu1_2, relu2_2,
  relu3_3, relu4_3, relu5_3 (64, 128, 256, 512, 512) -> 1475 channels in all;
* for every channel ``c`` of every stage ``k`` with spatial means ``mu``, variances ``sigma^2``
  and covariance ``sigma_xy`` (population statistics over ``H x W``):
  ``S1 = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)`` (texture / luminance term),
  ``S2 = (2 sigma_xy + c2) / (sigma_x^2 + sigma_y^2 + c2)`` (structure term), ``c1 = c2 = 1e-6``;
* ``DISTS = 1 - sum_k sum_c (alpha_kc S1_kc + beta_kc S2_kc)`` with the learned ``alpha, beta``
  (each ``[1,1475,1,1]``) divided by ``sum(alpha) + sum(beta)``.

Identical images give 0 (up to rounding); larger is more different (range about ``[0, 1]``).

Weights: the VGG16 convolutions are read from ``$SEMCOM_WEIGHTS/lpips/vgg16_lpips_v0.1.safetensors``
(keys ``conv0..conv12``; the same torchvision ImageNet VGG16 that LPIPS-VGG uses) and ``alpha``,
``beta`` from ``$SEMCOM_WEIGHTS/lpips/dists_alpha_beta.pt`` (the official ``weights.pt``, a dict
``{"alpha", "beta"}``, loaded with ``weights_only=True``). Both are resolved through
:func:`semcom.paths.weights_path`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from .. import paths
from ._check import check_pair, shared_reference
from ._nets import VGG16_CHANNELS, VGG16Trunk

VGG_WEIGHTS = "lpips/vgg16_lpips_v0.1.safetensors"
ALPHA_BETA_WEIGHTS = "lpips/dists_alpha_beta.pt"
DISTS_CHANNELS: tuple[int, ...] = (3, *VGG16_CHANNELS)  # raw image + five VGG16 stages = 1475
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
C1 = 1e-6
C2 = 1e-6


def hanning_filter_3x3() -> Tensor:
    """The normalised 3x3 L2-pooling window: outer product of ``hanning(5)[1:-1]``, sum 1."""
    n = 5
    # numpy.hanning(n)[i] = 0.5 - 0.5 cos(2 pi i / (n - 1)); drop the two zero end points.
    a = torch.tensor([0.5 - 0.5 * math.cos(2.0 * math.pi * i / (n - 1)) for i in range(1, n - 1)])
    g = a[:, None] * a[None, :]
    return g / g.sum()


class L2Pool(nn.Module):
    """DISTS L2 pooling: ``sqrt(hann3x3 * x^2 + 1e-12)``, depthwise, stride 2, zero padding 1.

    ``[B,C,H,W] -> [B,C,floor((H-1)/2)+1,floor((W-1)/2)+1]``. Works for any ``C``; the 3x3 window
    is a non-persistent buffer (no entry in the state dict).
    """

    window: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", hanning_filter_3x3().view(1, 1, 3, 3), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)] (see the class docstring), in
        ``x``'s dtype."""
        c = x.shape[1]
        w = self.window.to(x.dtype).expand(c, 1, 3, 3)
        out = F.conv2d(x * x, w, stride=2, padding=1, groups=c)
        return torch.sqrt(out + 1e-12)


def load_alpha_beta(weights: str | os.PathLike[str] | None = None) -> tuple[Tensor, Tensor]:
    """Load DISTS ``alpha, beta`` (each float32 ``[1,1475,1,1]``) from the official file.

    Raises:
        KeyError: ``alpha`` or ``beta`` missing. ValueError: wrong shape.
    """
    path = Path(weights) if weights is not None else paths.weights_path(ALPHA_BETA_WEIGHTS)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    n = sum(DISTS_CHANNELS)
    out = []
    for key in ("alpha", "beta"):
        if key not in sd:
            raise KeyError(f"DISTS: {path} lacks {key!r} (has {sorted(sd)})")
        t = sd[key]
        if tuple(t.shape) != (1, n, 1, 1):
            raise ValueError(f"DISTS {key}: expected shape {(1, n, 1, 1)}, got {tuple(t.shape)}")
        out.append(t.detach().to(torch.float32).contiguous().clone())
    return out[0], out[1]


class DISTS(nn.Module):
    """DISTS distance with a frozen L2-pooled VGG16 (see the module docstring).

    ``forward(x, y)``: float images ``[B,3,H,W]`` in ``[0,1]`` -> distances ``[B]`` (about 0 for
    identical images; larger is more different). Gradients flow to the inputs, never to the
    weights (frozen, eval mode). Images should be at least 16x16 (five L2 poolings leave a
    ``ceil(H/16) x ceil(W/16)`` map at relu5_3).

    Args:
        vgg_weights: safetensors file with ``conv0..conv12`` (default: resolved via
            :func:`semcom.paths.weights_path`). Extra keys (LPIPS heads) are ignored.
        alpha_beta: ``.pt`` file with ``alpha``/``beta`` (default: resolved likewise).
    """

    mean: Tensor
    std: Tensor
    alpha: Tensor
    beta: Tensor

    def __init__(
        self,
        vgg_weights: str | os.PathLike[str] | None = None,
        alpha_beta: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # as LPIPS: the weights replace the init
            self.net = VGG16Trunk(pool=L2Pool())
        vgg_path = Path(vgg_weights) if vgg_weights is not None else paths.weights_path(VGG_WEIGHTS)
        sd = {k: v for k, v in load_file(str(vgg_path)).items() if k.startswith("conv")}
        self.net.load_state_dict(sd)  # strict: all 13 convs must be present
        alpha, beta = load_alpha_beta(alpha_beta)
        total = alpha.sum() + beta.sum()
        # Normalised weights as non-persistent buffers: they follow .to(device) but stay fixed.
        self.register_buffer("alpha", alpha / total, persistent=False)
        self.register_buffer("beta", beta / total, persistent=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()
        self.requires_grad_(False)
        # the VGG convolutions and the depthwise L2 pooling run faster on a CPU channels-last
        # torch types Module.to without its memory_format keyword (it takes it at run time)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def features(self, x: Tensor) -> list[Tensor]:
        """The six compared stages for ``x`` ``[N,3,H,W]`` in ``[0,1]``: raw image + 5 VGG maps."""
        h = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return [x, *self.net(h)]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """DISTS per image; ``x, y``: ``[B,3,H,W]`` in ``[0,1]`` -> ``[B]`` (dtype of the net)."""
        check_pair(x, y, "DISTS", channels=3)
        b = x.shape[0]
        nx = 1 if shared_reference(x) else b  # one reference for the batch: its features once
        dtype = self.mean.dtype
        feats = self.features(torch.cat([x[:nx], y], dim=0).to(dtype))
        alphas = torch.split(self.alpha, list(DISTS_CHANNELS), dim=1)
        betas = torch.split(self.beta, list(DISTS_CHANNELS), dim=1)
        sim = x.new_zeros(b, dtype=dtype)
        for f, a, be in zip(feats, alphas, betas, strict=True):
            fx, fy = f[:nx], f[nx:]
            mx = fx.mean(dim=(2, 3), keepdim=True)
            my = fy.mean(dim=(2, 3), keepdim=True)
            dx, dy = fx - mx, fy - my
            vx = (dx * dx).mean(dim=(2, 3), keepdim=True)
            vy = (dy * dy).mean(dim=(2, 3), keepdim=True)
            cov = (dx * dy).mean(dim=(2, 3), keepdim=True)
            s1 = (2.0 * mx * my + C1) / (mx * mx + my * my + C1)
            s2 = (2.0 * cov + C2) / (vx + vy + C2)
            sim = sim + (a * s1 + be * s2).sum(dim=(1, 2, 3))
        return 1.0 - sim
