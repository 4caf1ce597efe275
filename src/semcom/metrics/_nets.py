"""AlexNet / VGG16 feature trunks (torchvision layout) used by LPIPS and DISTS.

Parameters are named ``conv0``, ``conv1``, ... in network order, matching the safetensors files
under ``$SEMCOM_WEIGHTS/lpips/``. Each trunk returns the five ReLU feature maps LPIPS uses.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

# (in, out, kernel, stride, padding) of each convolution.
ALEX_CONVS = (
    (3, 64, 11, 4, 2),
    (64, 192, 5, 1, 2),
    (192, 384, 3, 1, 1),
    (384, 256, 3, 1, 1),
    (256, 256, 3, 1, 1),
)
# VGG16 blocks: number of 3x3 convs per block and their output channels.
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
VGG16_CONVS = tuple(
    (cin, cout, 3, 1, 1)
    for cin, cout in zip(
        [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512],
        [c for n, c in VGG16_BLOCKS for _ in range(n)],
        strict=True,
    )
)
# Index of each conv inside torchvision's ``features`` Sequential.
ALEX_TORCHVISION_IDX = (0, 3, 6, 8, 10)
VGG16_TORCHVISION_IDX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
ALEX_CHANNELS = (64, 192, 384, 256, 256)
VGG16_CHANNELS = (64, 128, 256, 512, 512)


def _make_convs(module: nn.Module, specs: tuple[tuple[int, int, int, int, int], ...]) -> None:
    for i, (cin, cout, k, s, p) in enumerate(specs):
        setattr(module, f"conv{i}", nn.Conv2d(cin, cout, k, stride=s, padding=p))


class AlexTrunk(nn.Module):
    """AlexNet features; returns relu1..relu5 (64, 192, 384, 256, 256 channels)."""

    channels = ALEX_CHANNELS

    def __init__(self) -> None:
        super().__init__()
        _make_convs(self, ALEX_CONVS)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x`` [B, 3, H, W] (LPIPS-scaled RGB) -> the five ReLU maps: [B, 64, H1, W1],
        [B, 192, H2, W2], then [B, 384 | 256 | 256, H3, W3], with ``H1 = (H - 7) // 4 + 1``
        (the stride-4 conv), ``H2 = (H1 - 3) // 2 + 1`` and ``H3 = (H2 - 3) // 2 + 1`` (3x3
        max-pools of stride 2), the same for the widths."""
        feats = []
        h = x
        for i in range(5):
            if i in (1, 2):
                h = F.max_pool2d(h, kernel_size=3, stride=2)
            h = F.relu(getattr(self, f"conv{i}")(h))
            feats.append(h)
        return feats


class VGG16Trunk(nn.Module):
    """VGG16 features; returns relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.

    ``pool`` downsamples the features between blocks (default, as in torchvision/LPIPS: 2x2
    max-pool, stride 2; DISTS passes its L2 pooling). It must hold no persistent state.
    """

    channels = VGG16_CHANNELS

    def __init__(self, pool: nn.Module | None = None) -> None:
        super().__init__()
        _make_convs(self, VGG16_CONVS)
        self.pool = pool if pool is not None else nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x`` [B, 3, H, W] (scaled RGB) -> the five ReLU maps [B, 64, H, W], [B, 128, H/2,
        W/2], [B, 256, H/4, W/4], [B, 512, H/8, W/8], [B, 512, H/16, W/16], each ``pool``
        halving the size (rounded down by the max-pool, up by DISTS' L2 pooling)."""
        feats = []
        h = x
        j = 0
        for b, (n, _) in enumerate(VGG16_BLOCKS):
            if b > 0:
                h = self.pool(h)
            for _ in range(n):
                h = F.relu(getattr(self, f"conv{j}")(h))
                j += 1
            feats.append(h)
        return feats
